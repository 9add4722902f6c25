"""The small longitudinal RECIST study: six patients x three studies, three readers.

Shared by the RECIST analysis tests, the ``recist_timeline`` panel's browser test and
the audit report's RECIST section. Six patients, three studies each (baseline and two
follow-ups, real DICOM written by ``helpers_dicom``), three readers whose measurements
are imported from a table with ``import_measurements``. The numbers are planted so they
can be checked by hand:

- P1: reader A's targets shrink from 100 mm to 68 mm (-32 %: PR), reader B's to 75 mm
  (-25 %: SD): a discordant patient;
- P5: reader B flags no target, so the rule picks L1, L2 and L3 (A chose L1 and L2):
  target-selection Jaccard 2/3;
- P3: reader C flags an 8 mm lesion as a target: a rule violation;
- reader C measures 8 % larger at every follow-up (x 1.08 at timepoint 1, x 1.16 at
  timepoint 2): the drifting reader.
"""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
from helpers_dicom import make_study

from multireader.core import fields as F
from multireader.ingest.measurements import import_measurements

READERS = ("A", "B", "C")
#: per patient: the truth's change of every lesion at timepoints 1 and 2
TRAJECTORY = {
    "P1": None,  # written out by hand below
    "P2": (0.9, 1.0),
    "P3": (1.3, 1.5),
    "P4": (0.5, 0.4),
    "P5": (1.0, 1.25),
    "P6": (0.2, 0.2),
}
DRIFT = 0.08  # reader C: x (1 + 0.08 t)


def _baseline(p: int) -> dict:
    return {"L1": 30.0 + 2 * p, "L2": 20.0 + p, "L3": 12.0}


SITES = {"L1": "liver", "L2": "lung", "L3": "liver", "L4": "liver"}


def planted_rows() -> list[dict]:
    """Every measurement: patient, timepoint, reader, lesion, mm, target flag, session."""
    rng = np.random.default_rng(7)
    rows = []
    for pn, (patient, traj) in enumerate(TRAJECTORY.items(), start=1):
        for t in range(3):
            for reader in READERS:
                if patient == "P1":
                    by_hand = {
                        "A": [{"L1": 50, "L2": 50, "L3": 12}, {"L1": 34, "L2": 34, "L3": 10},
                              {"L1": 33, "L2": 33, "L3": 10}],
                        "B": [{"L1": 50, "L2": 50, "L3": 12}, {"L1": 41, "L2": 34, "L3": 10},
                              {"L1": 41, "L2": 33, "L3": 10}],
                    }  # fmt: skip
                    base = by_hand["A"][t] if reader == "C" else by_hand[reader][t]
                    mm = {k: float(v) for k, v in base.items()}
                    if reader == "C":
                        mm = {k: v * (1 + DRIFT * t) for k, v in mm.items()}
                else:
                    mult = 1.0 if t == 0 else traj[t - 1]
                    mm = {k: v * mult for k, v in _baseline(pn).items()}
                    noise = 1 + rng.normal(0, 0.005, 3)
                    if reader == "B" and patient == "P2" and t > 0:
                        mm["L1"] /= 1.206  # balances B's larger L1 on P1 (no trend)
                    if reader == "C":
                        mm = {k: v * (1 + DRIFT * t) for k, v in mm.items()}
                    mm = {k: v * n for (k, v), n in zip(mm.items(), noise, strict=True)}
                    if reader == "C" and patient == "P3":
                        mm["L4"] = 8.0 * (1.0 if t == 0 else traj[t - 1]) * (1 + DRIFT * t)
                for lesion, v in mm.items():
                    target = lesion in ("L1", "L2") or (reader == "C" and lesion == "L4")
                    if reader == "B" and patient == "P5":
                        target = False  # B flags none: the rule chooses
                    rows.append(
                        {
                            "patient": patient,
                            "timepoint": t,
                            "reader": reader,
                            "lesion_id": lesion,
                            "long_axis_mm": round(v, 6),
                            "target": target,
                            "site": SITES[lesion],
                            "session": f"s{t + 1}",
                            "timestamp": (
                                dt.datetime(2026, 1, 1) + dt.timedelta(days=30 * t, minutes=pn)
                            ).isoformat(),
                        }
                    )
    return rows


def make_longitudinal(ds, folder) -> tuple[list[dict], dict]:
    """Write the 6 x 3 studies under ``folder`` into ``ds`` and import the planted
    measurements; returns ``(rows, studies)`` (``studies[(patient, t)]``: the study)."""
    from pathlib import Path

    import fiftyone as fo

    tmp = Path(folder)
    studies = {}
    for patient in TRAJECTORY:
        for t in range(3):
            st = make_study(ds, str(tmp / f"{patient}_{t}"), n_slices=2, n_frames=0)
            ds.match(fo.ViewField(F.STUDY_UID) == st.study_uid).set_values(
                F.PATIENT_KEY, [patient] * 2
            )
            studies[(patient, t)] = st
    rows = planted_rows()
    path = tmp / "recist.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "sop_instance_uid", "lesion_id", "long_axis_mm", "target",
                    "site", "timepoint", "session", "timestamp"])  # fmt: skip
        for r in rows:
            st = studies[(r["patient"], r["timepoint"])]
            w.writerow([r["reader"], st.sop_uids[0], r["lesion_id"], r["long_axis_mm"],
                        "true" if r["target"] else "false", r["site"], r["timepoint"],
                        r["session"], r["timestamp"]])  # fmt: skip
    rep = import_measurements(ds, str(path))
    assert not rep.errors, rep.errors[:3]
    return rows, studies
