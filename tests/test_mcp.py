"""The plugin driven by a real MCP client through the open FiftyOne MCP server.

``fiftyone-mcp-server``'s stdio server (``python -m fiftyone_mcp.server``) runs as a
subprocess; the ``mcp`` client SDK (``stdio_client``, ``ClientSession``) talks to it as
an agent would. The server reaches operators only with a dataset name and params: no
App view, no selection, none of our SDK ``__call__`` wrappers. ``stdio_client`` forwards
only HOME, LOGNAME, PATH, SHELL, TERM and USER, so the FiftyOne settings are passed
explicitly. The server and the test share the database (the same embedded service, or
``FIFTYONE_DATABASE_URI``).

One server serves the whole module (it takes ~20 s to start). With
``MULTIREADER_TRANSCRIPT=1`` every tool call and its result is written to
``docs/agent_transcript.json`` (the example in ``docs/agent.md`` is taken from it).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

pytest.importorskip("mcp")
pytest.importorskip("fiftyone_mcp")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = "@multireader/disagreement"
TRANSCRIPT = os.path.join(ROOT, "docs", "agent_transcript.json")
#: no operator result may exceed this (the server itself refuses above 200,000 chars)
MAX_RESULT_CHARS = 40_000
#: nor hold a list longer than this (per-sample rows belong in fields, not results)
MAX_LIST = 200
#: result keys that differ between two runs on the same data by nature
VOLATILE = {"seconds", "images_per_s", "html", "json", "path", "dataset", "duration_s"}


def load(name: str):
    """The dataset as the server left it (this process caches datasets it loaded)."""
    import fiftyone as fo

    ds = fo.load_dataset(name)
    ds.reload()
    return ds


def uri(name: str) -> str:
    return f"{PLUGIN}/{name}"


def server_env(user: str) -> dict:
    """What the server (or a worker) needs to find this plugin and the database."""
    import fiftyone as fo

    env = {k: v for k, v in os.environ.items() if k.startswith("FIFTYONE_")}
    env.update(
        FIFTYONE_PLUGINS_DIR=ROOT,
        FIFTYONE_DATABASE_VALIDATION="false",
        FIFTYONE_DO_NOT_TRACK="true",
        MULTIREADER_AUDIT_USER=user,
        PYTHONUNBUFFERED="1",
    )
    if fo.config.database_uri:
        env["FIFTYONE_DATABASE_URI"] = fo.config.database_uri
    if fo.config.database_name:
        env["FIFTYONE_DATABASE_NAME"] = fo.config.database_name
    return env


class McpClient:
    """An MCP client session on a background event loop; :meth:`call` is synchronous."""

    def __init__(self, errlog):
        self.errlog = errlog
        self.calls: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(180) or self._error:
            raise RuntimeError(f"the MCP server did not start: {self._error!r}")

    def _run(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # reported to the constructor or close()
            self._error = e
            self._ready.set()

    async def _main(self):
        from mcp import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "fiftyone_mcp.server"],
            env=server_env("mcp-agent"),
            cwd=ROOT,
        )
        self._stop = asyncio.Event()
        async with (
            stdio_client(params, errlog=self.errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            self.session = session
            self._ready.set()
            await self._stop.wait()

    def call(self, tool: str, arguments: dict | None = None, timeout: float = 300) -> dict:
        """Call ``tool``; returns its JSON result, after checking it is JSON and bounded."""
        started = time.time()
        future = asyncio.run_coroutine_threadsafe(
            self.session.call_tool(tool, arguments or {}), self._loop
        )
        result = future.result(timeout)
        assert len(result.content) == 1 and result.content[0].type == "text"
        text = result.content[0].text
        data = json.loads(text)  # every result is JSON
        self.calls.append(
            {
                "tool": tool,
                "arguments": arguments or {},
                "result": data,
                "chars": len(text),
                "seconds": round(time.time() - started, 2),
            }
        )
        return data

    def close(self):
        if hasattr(self, "_stop"):
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def mcp(tmp_path_factory):
    with open(tmp_path_factory.mktemp("mcp") / "server.log", "w") as errlog:
        client = McpClient(errlog)
        yield client
        client.close()
    if os.environ.get("MULTIREADER_TRANSCRIPT") == "1":
        write_transcript(client.calls, TRANSCRIPT)


#: results longer than this are abridged in the transcript (the test saw them whole)
TRANSCRIPT_RESULT_CHARS = 3000


def abridged(obj, depth: int = 0):
    """``obj`` with lists cut to 3 items and long strings cut, each cut said so."""
    if isinstance(obj, dict):
        return {k: abridged(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        head = [abridged(v, depth + 1) for v in obj[:3]]
        return head + ([f"... {len(obj) - 3} more"] if len(obj) > 3 else [])
    if isinstance(obj, str) and len(obj) > 600:
        return obj[:300] + f" ... [{len(obj) - 600} characters] ... " + obj[-300:]
    return obj


def write_transcript(calls: list[dict], path: str) -> None:
    """Every call in order; a result over :data:`TRANSCRIPT_RESULT_CHARS` abridged."""
    out = []
    for call in calls:
        call = dict(call)
        if call["chars"] > TRANSCRIPT_RESULT_CHARS:
            call["result"] = abridged(call["result"])
            call["abridged"] = True
        out.append(call)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def _drop(name: str):
    import fiftyone as fo

    from multireader.lineage import audit
    from multireader.lineage import records as lineage

    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        lineage.delete_for_dataset(ds)
        audit.delete_log(ds)
        fo.delete_dataset(name)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small demo study (6 series of 6 slices); the generator's own defaults are sized
    for the full demo."""
    from multireader.io import demo

    return demo.generate_demo_study(
        str(tmp_path_factory.mktemp("study")),
        seed=0,
        n_series=6,
        slices_per_series=6,
        image_size=128,
    )


@pytest.fixture(scope="module")
def names():
    tag = uuid.uuid4().hex[:8]
    out = {"mcp": f"test-mr-mcp-{tag}", "sdk": f"test-mr-mcp-sdk-{tag}"}
    yield out
    for name in out.values():
        _drop(name)


def ok(response: dict) -> dict:
    """The data of a successful response."""
    assert response["success"] is True, response.get("error", response)[-3000:]
    return response["data"]


def run(mcp, name: str, dataset_name: str, params: dict | None = None) -> dict:
    """``execute_operator`` of this plugin's ``name``; returns the operator's result."""
    data = ok(
        mcp.call(
            "execute_operator",
            {"operator_uri": uri(name), "dataset_name": dataset_name, "params": params or {}},
        )
    )
    assert data["delegated"] is False
    result = data["result"]
    assert isinstance(result, dict) and result, (name, result)  # no generator, no None
    text = json.dumps(result)
    assert len(text) < MAX_RESULT_CHARS, (name, len(text))
    _assert_short_lists(result, name)
    return result


def _assert_short_lists(obj, where):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _assert_short_lists(v, f"{where}.{k}")
    elif isinstance(obj, list):
        assert len(obj) <= MAX_LIST, (where, len(obj))
        for v in obj:
            _assert_short_lists(v, where)


def _declared_operators():
    import re

    with open(os.path.join(ROOT, "fiftyone.yml")) as f:
        block = re.search(r"^operators:\s*\n((?:\s+- .*\n)+)", f.read(), re.M)
    return sorted(re.findall(r"- (\w+)", block.group(1)))


# -- listing -----------------------------------------------------------------------


def test_list_operators_shows_every_operator_with_its_description(mcp):
    from operators import OPERATORS

    listed = {o["uri"]: o for o in ok(mcp.call("list_operators"))["operators"]}
    descriptions = {cls().config.name: cls().config.description for cls in OPERATORS}
    for name in _declared_operators():
        assert uri(name) in listed, name
        assert listed[uri(name)]["description"] == descriptions[name], name
        assert len(listed[uri(name)]["description"]) > 20, name
    verbose = {o["uri"]: o for o in ok(mcp.call("list_operators", {"verbose": True}))["operators"]}
    assert verbose[uri("compute_agreement")]["allow_delegated_execution"] is True


def test_unknown_dataset_and_operator_fail_clearly(mcp):
    missing = f"test-mr-missing-{uuid.uuid4().hex[:6]}"
    r = mcp.call(
        "execute_operator",
        {"operator_uri": uri("compute_agreement"), "dataset_name": missing, "params": {}},
    )
    assert r["success"] is False and f"Dataset {missing} not found" in r["error"]
    r = mcp.call(
        "get_operator_schema", {"operator_uri": uri("compute_agreement"), "dataset_name": missing}
    )
    assert r["success"] is False and missing in r["error"]
    r = mcp.call("execute_operator", {"operator_uri": uri("no_such_op"), "dataset_name": missing})
    assert r["success"] is False and "not found" in r["error"]


# -- the workflow ------------------------------------------------------------------

#: the analyses, in order, with small bootstraps and folds for a 36-image study
ANALYSES = [
    ("compute_agreement", {"n_boot": 50}),
    ("compute_consensus", {"kind": "classification", "method": "dawid_skene"}),
    ("compute_quality_metrics", {}),
    ("compute_embeddings", {"model_choice": "radiomics"}),
    ("find_disagreement_clusters", {"embeddings": "embedding_radiomics"}),
    ("fit_label_model", {"embeddings": "embedding_radiomics", "n_folds": 3, "n_repeats": 1}),
    ("compute_mistakenness", {"pred_field": "predictions_label_model"}),
    ("evaluate_model", {"pred_field": "predictions_label_model", "n_boot": 50}),
    ("freeze_training_set", {"name": "v1", "model_name": "label-model", "model_version": "1"}),
    ("verify_training_set", {"name": "v1"}),
]


@pytest.fixture(scope="module")
def workflow(mcp, study, names, tmp_path_factory):
    """The demo workflow through ``execute_operator`` from import to audit report, and
    the same analyses through the SDK on a clone taken right after the import."""
    import fiftyone as fo
    import fiftyone.operators as foo

    name = names["mcp"]
    out_dir = tmp_path_factory.mktemp("reports")
    ok(mcp.call("list_datasets"))
    # a new dataset: import_dicom creates the dataset the request names
    imported = run(mcp, "import_dicom", name, {"inputs": study.dicom_dir})
    assert imported["imported"] == 36 and not imported["skipped"]
    schema = {**study.label_schema, "classes": list(study.label_schema["classes"])}
    run(
        mcp,
        "declare_label_schema",
        name,
        {
            "classes": schema["classes"],
            "ordered": schema["ordered"],
            "score_min": float(schema["score_range"][0]),
            "score_max": float(schema["score_range"][1]),
            "mask_targets": json.dumps({str(k): v for k, v in schema["mask_targets"].items()}),
        },
    )
    results = {"import_reader_labels": []}
    for path in (study.reads_csv, study.masks_csv):
        r = run(mcp, "import_reader_labels", name, {"source": str(path)})
        assert r["n_labels"] > 0 and not r["errors"], r
        results["import_reader_labels"].append(r)

    # the SDK path starts from the same imported data
    clone = fo.load_dataset(name).clone(names["sdk"])

    for op_name, params in ANALYSES:
        results[op_name] = run(mcp, op_name, name, params)
    results["export_audit_report"] = run(
        mcp, "export_audit_report", name, {"path": str(out_dir / "mcp_report.html")}
    )

    sdk = {}
    for op_name, params in ANALYSES:
        operator = foo.get_operator(uri(op_name))
        call = dict(params)
        if op_name == "compute_embeddings":
            call["model"] = call.pop("model_choice")
        if op_name in ("find_disagreement_clusters", "fit_label_model"):
            sdk[op_name] = operator(clone, call.pop("embeddings"), **call)
        elif op_name in ("compute_mistakenness", "evaluate_model"):
            sdk[op_name] = operator(clone, call.pop("pred_field"), **call)
        else:
            sdk[op_name] = operator(clone, **call)
    return {"name": name, "results": results, "sdk": sdk, "clone": clone, "out_dir": out_dir}


def _plain(obj):
    """A value as JSON holds it: what the server sends back, for the SDK's results."""
    from fiftyone_mcp.tools.utils import safe_serialize

    return json.loads(json.dumps(safe_serialize(obj), default=str))


def _same(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (a.keys() | b.keys()) - VOLATILE - {"id", "_id"}
        for k in keys:
            _same(a.get(k), b.get(k), f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or (math.isnan(a) and math.isnan(b)):
            assert a is b or (a is not None and b is not None), where
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


def _stored(dataset, fields):
    import numpy as np

    out = {}
    view = dataset.sort_by("filepath")
    for field in fields:
        values = []
        for v in view.values(field):
            if hasattr(v, "to_dict"):
                v = v.to_dict()
            if isinstance(v, np.ndarray):
                v = v.tolist()
            values.append(v)
        out[field] = _plain(values)
    return out


def test_workflow_stores_the_same_numbers_as_the_sdk(workflow):

    mcp_ds, clone = load(workflow["name"]), workflow["clone"]
    clone.reload()
    mcp_fields = set(mcp_ds.get_field_schema())
    assert mcp_fields == set(clone.get_field_schema())
    before = {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at"}
    analysed = sorted(
        f for f in mcp_fields - before if not f.startswith(("reader_", "dicom", "series"))
    )
    # each analysis wrote its fields, and they hold what the SDK path stored
    for f in ("disagreement", "consensus_dawid_skene", "embedding_radiomics"):
        assert f in analysed
    assert any(f.startswith("quality_") for f in analysed)
    assert "predictions_label_model" in analysed and "label_error_reader" in analysed
    ours, theirs = _stored(mcp_ds, analysed), _stored(clone, analysed)
    for f in analysed:
        if f in ("created_at", "last_modified_at"):
            continue
        _same(ours[f], theirs[f], f)
    assert set(mcp_ds.list_runs()) == set(clone.list_runs())
    assert set(mcp_ds.list_saved_views()) == set(clone.list_saved_views())

    # and the operators returned the same numbers to the agent as to the SDK caller
    for op_name, _ in ANALYSES:
        mcp_result, sdk_result = workflow["results"][op_name], _plain(workflow["sdk"][op_name])
        if op_name in ("freeze_training_set", "verify_training_set"):
            mcp_result = {k: v for k, v in mcp_result.items() if k != "freeze_hash"}
            sdk_result = {k: v for k, v in sdk_result.items() if k != "freeze_hash"}
        _same(mcp_result, sdk_result, op_name)

    r = workflow["results"]
    assert r["verify_training_set"]["ok"] is True
    assert r["freeze_training_set"]["n_samples"] == 36
    assert os.path.isfile(r["export_audit_report"]["html"])


def test_every_operator_schema_resolves_on_the_dataset(mcp, workflow):
    for name in _declared_operators():
        data = ok(
            mcp.call(
                "get_operator_schema", {"operator_uri": uri(name), "dataset_name": workflow["name"]}
            )
        )
        assert data["operator_uri"] == uri(name)
        assert isinstance(data["input_schema"], dict)
    # a dynamic form resolves from partial params, as an agent explores it
    data = ok(
        mcp.call(
            "get_operator_schema",
            {
                "operator_uri": uri("compute_agreement"),
                "dataset_name": workflow["name"],
                "params": {"target": "SAVED_VIEW"},
            },
        )
    )
    props = data["input_schema"]["type"]["properties"]
    assert "saved_view" in props and "label_error_queue" in json.dumps(props["saved_view"])


def test_bad_params_fail_clearly_naming_the_param(mcp, workflow):
    name = workflow["name"]
    cases = [
        ({"saved_view": "no_such_view"}, "parameter saved_view", "label_error_queue"),
        ({"tag": "no_such_tag"}, "parameter tag", "sample tags"),
        ({"n_boot": "many"}, "Path: n_boot", "Invalid value type"),
        ({"target": "SELECTED_SAMPLES"}, "parameter target", "must be one of"),
    ]
    for params, names_it, says in cases:
        r = mcp.call(
            "execute_operator",
            {"operator_uri": uri("compute_agreement"), "dataset_name": name, "params": params},
        )
        assert r["success"] is False, params
        assert names_it in r["error"] and says in r["error"], r["error"][-500:]
    # an App-only action without the App: refused, naming what to pass instead
    r = mcp.call(
        "execute_operator",
        {"operator_uri": uri("flag_for_reread"), "dataset_name": name, "params": {}},
    )
    assert r["success"] is False and "parameter sample_ids" in r["error"]


def test_a_saved_view_target_from_params_alone(mcp, workflow):

    name = workflow["name"]
    queue = load(name).load_saved_view("label_error_queue")
    r = run(
        mcp,
        "compute_agreement",
        name,
        {
            "saved_view": "label_error_queue",
            "kinds": ["classification"],
            "n_boot": 20,
            "run_key": "agreement_queue",
        },
    )
    assert r["run_key"] == "agreement_queue"
    from multireader.core import runs

    assert runs.load(load(name), "agreement_queue") is not None
    entry = _audit(name, "compute_agreement")[-1]
    assert entry["params"]["saved_view"] == "label_error_queue"
    assert len(queue) > 0
    # flag_for_reread from ids, as an agent passes them
    ids = queue.limit(2).values("id")
    flagged = run(mcp, "flag_for_reread", name, {"sample_ids": ids, "reason": "agent triage"})
    assert flagged["n_flagged"] == 2


def _audit(name, action=None):
    from multireader.lineage import audit

    return audit.entries(load(name), action=action)


def test_the_audit_log_records_the_mcp_runs(workflow):
    entries = _audit(workflow["name"])
    mcp_entries = [e for e in entries if e["user"] == "mcp-agent"]
    actions = [e["action"] for e in mcp_entries]
    for op_name, _ in ANALYSES:
        assert op_name in actions, op_name
    assert {"import_dicom", "import_reader_labels", "export_audit_report"} <= set(actions)
    # one entry per operator run (the lineage actions add entries of their own)
    runs = [e for e in mcp_entries if "duration_s" in (e.get("detail") or {})]
    for op_name, _ in ANALYSES:
        ran = [e for e in runs if e["action"] == op_name]
        assert ran and all(e["status"] == "completed" for e in ran), op_name
        assert all(e["detail"]["delegated"] is False for e in ran), op_name
    # the params are the agent's, plus the defaults of required fields the form filled
    agreement = next(e for e in mcp_entries if e["action"] == "compute_agreement")
    assert agreement["params"]["n_boot"] == 50 and agreement["params"]["run_key"] == "agreement"


def test_delegated_run_through_a_separate_worker(mcp, workflow):

    name = workflow["name"]
    data = ok(
        mcp.call(
            "execute_operator",
            {
                "operator_uri": uri("compute_consensus"),
                "dataset_name": name,
                "params": {"kind": "classification", "method": "majority"},
                "delegate": True,
            },
        )
    )
    assert data["delegated"] is True
    op_id = data["operation_id"]
    queued = ok(mcp.call("list_delegated_operations", {"dataset_name": name}))["operations"]
    assert [o["run_state"] for o in queued if o["id"] == op_id] == ["queued"]

    worker = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "fiftyone"), "delegated", "launch"],
        env={**os.environ, **server_env("mcp-worker")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state, deadline = None, time.time() + 240
        while time.time() < deadline:
            ops = ok(mcp.call("list_delegated_operations", {"dataset_name": name}))["operations"]
            state = next(o for o in ops if o["id"] == op_id)
            if state["run_state"] in ("completed", "failed"):
                break
            time.sleep(2)
        assert state["run_state"] == "completed", state
        assert state["completed_at"]
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    assert "consensus_majority" in load(name).get_field_schema()
    entry = _audit(name, "compute_consensus")[-1]
    assert entry["user"] == "mcp-worker" and entry["detail"]["delegated"] is True
    from fiftyone.operators.delegated import DelegatedOperationService

    DelegatedOperationService().delete_operation(op_id)
