"""A tiny real DICOM series with three readers' 3-D outlines of two lesions.

Shared by the lesion analysis tests and the lesion panel's browser test. R1 outlines
both lesions, R2 the same grown by one voxel, R3 only the big one (it misses the small
lesion), so who found which lesion, and every volume, is known from the geometry.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

#: the planted study: 12 slices of 40 x 48 pixels
SHAPE = (12, 40, 48)


def _ball(shape, center, radii):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        ((z - center[0]) / radii[0]) ** 2
        + ((y - center[1]) / radii[1]) ** 2
        + ((x - center[2]) / radii[2]) ** 2
    ) <= 1.0


def make_lesion_study(dataset, folder: str):
    """Write the series into ``folder``, add its samples to ``dataset`` and import the
    readers' masks; returns ``(dataset, study, outlines, shape)``."""
    from helpers_dicom import make_study
    from scipy.ndimage import binary_dilation

    from multireader.ingest import readers

    study = make_study(dataset, folder, n_slices=12, rows=40, columns=48, n_frames=2)
    shape = SHAPE
    big = _ball(shape, (4, 14, 14), (2.2, 6, 7))
    small = _ball(shape, (9, 30, 36), (1.0, 2.5, 3))
    outlines = {
        "R1": big | small,
        "R2": binary_dilation(big | small, iterations=1) & ~np.zeros(shape, bool),
        "R3": big,  # misses the small lesion
    }
    rows = []
    for reader, vol in outlines.items():
        os.makedirs(os.path.join(folder, "masks", reader), exist_ok=True)
        for k in range(shape[0]):
            rel = f"masks/{reader}/{k}.png"
            Image.fromarray(vol[k].astype(np.uint8)).save(os.path.join(folder, rel))
            rows.append({"sop_instance_uid": study.sop_uids[k], "frame": 0, "reader": reader,
                         "mask_path": rel})  # fmt: skip
    manifest = os.path.join(folder, "masks.csv")
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rep = readers.import_reader_labels(dataset, manifest)
    assert not rep.errors, rep.errors
    return dataset, study, outlines, shape


@pytest.fixture
def lesion_study(dataset, tmp_path):
    """``(dataset, study, outlines, shape)``: the study on the test's own dataset."""
    return make_lesion_study(dataset, str(tmp_path))
