"""A reader's per-slice masks of a series, read back as one 3-D label volume.

Pure (numpy, PIL): the lesion analysis runs this in worker processes, one series at a
time, so memory is bounded by one series. Masks are the files the reader-label import
writes or references (PNG or NPY, integer labels, 0 = background).
"""

from __future__ import annotations

import os

import numpy as np

from multireader.errors import MultireaderError


class MaskVolumeError(MultireaderError):
    """A mask file that cannot be read or does not fit its series."""


def read_mask(path: str) -> np.ndarray:
    """A 2-D integer mask from a PNG (8 or 16 bit) or NPY file."""
    if not os.path.exists(path):
        raise MaskVolumeError(f"mask file {path} does not exist")
    if path.lower().endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
    else:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
    if arr.ndim == 3:  # an RGB(A) PNG of a label map: any channel set is foreground
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise MaskVolumeError(f"mask file {path}: expected a 2-D mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise MaskVolumeError(f"mask file {path}: values are not integer labels")
        arr = arr.astype(np.int32)
    return arr


def assemble_volume(
    paths: list[str | None], shape: tuple[int, int, int], threads: int = 1
) -> np.ndarray | None:
    """Stack one reader's per-slice masks (in slice order) into ``shape``.

    ``None`` for a slice means the reader drew nothing there: background, because a
    reader who outlined a series outlined it as a whole. A reader with no mask on any
    slice did not read the series: ``None`` is returned. A mask whose size is not the
    slice's raises :class:`MaskVolumeError` naming the file. ``threads`` > 1 decodes
    files in threads (PNG decoding releases the GIL).
    """
    if len(paths) != shape[0]:
        raise MaskVolumeError(f"{len(paths)} mask paths for a series of {shape[0]} slices")
    todo = [(k, p) for k, p in enumerate(paths) if p is not None]
    if not todo:
        return None
    if threads > 1 and len(todo) > 8:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            masks = list(pool.map(read_mask, [p for _, p in todo]))
    else:
        masks = [read_mask(p) for _, p in todo]
    wide = any(m.dtype.itemsize > 1 or (m.size and m.max() > 255) for m in masks)
    volume = np.zeros(shape, dtype=np.uint16 if wide else np.uint8)
    for (k, path), m in zip(todo, masks, strict=True):
        if m.shape != tuple(shape[1:]):
            raise MaskVolumeError(
                f"mask file {path}: {m.shape[0]} x {m.shape[1]} pixels, but its slice is "
                f"{shape[1]} x {shape[2]}"
            )
        volume[k] = m
    return volume
