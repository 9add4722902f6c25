"""Worker processes for the CPU-bound steps (DICOM decoding, image quality metrics)."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.context import BaseContext

__all__ = ["mp_context"]


def mp_context() -> BaseContext:
    """fork where the OS has it: workers start at once and user scripts need no
    ``if __name__ == "__main__"`` guard. Workers never touch the parent's MongoDB
    client; they only decode files and write images."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")
