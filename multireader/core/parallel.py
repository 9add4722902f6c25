"""Worker processes for the CPU-bound steps (DICOM decoding, image quality metrics)."""

from __future__ import annotations

import atexit
import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext

__all__ = ["BrokenProcessPool", "discard_shared_pool", "mp_context", "shared_pool"]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def mp_context() -> BaseContext:
    """fork where the OS has it: workers start at once and user scripts need no
    ``if __name__ == "__main__"`` guard. Workers never touch the parent's MongoDB
    client; they only decode files and write images."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of the process, shared by every import.

    Starting and stopping a pool of two workers took 90-230 ms on this project's
    2-core machine (fork of a parent that has FiftyOne loaded, then joining the
    workers): a third of a 300-slice import. Workers are stateless (each task carries
    its options), so one pool serves every call; asking for another size replaces
    it. A pool that broke (a worker was killed) is replaced on the next call.
    """
    global _pool, _pool_workers
    with _lock:
        broken = _pool is not None and getattr(_pool, "_broken", False)
        if _pool is None or broken or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context())
            _pool_workers = workers
        return _pool


def discard_shared_pool(wait: bool = True) -> None:
    """Shut the shared pool down (at exit, or after a worker failure)."""
    global _pool, _pool_workers
    with _lock:
        pool, _pool, _pool_workers = _pool, None, 0
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


atexit.register(discard_shared_pool)
