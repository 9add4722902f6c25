"""RECIST measurements (tables and DICOM SR TID 1500) on a real tiny CT study.

The CT study is written with pydicom by ``helpers_dicom`` (row spacing 0.8 mm, column
spacing 0.6 mm, 24 x 32 pixels) and its samples are added directly; SR reports are
written with highdicom against those very files and read back.
"""

import datetime as dt
import json
import math
import os

import highdicom as hd
import numpy as np
import pytest
from helpers_dicom import make_study
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from multireader.core import fields as F
from multireader.ingest import measurements as M
from multireader.ingest import readers
from multireader.io import sr as SR

ROW_MM, COL_MM = 0.8, 0.6


@pytest.fixture
def study(dataset, tmp_path):
    return make_study(dataset, str(tmp_path / "baseline"))


@pytest.fixture
def followup(dataset, tmp_path, study):
    """A second study of the same patient (helpers give every sample one patient_key)."""
    return make_study(dataset, str(tmp_path / "followup"), n_frames=0)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _polys(ds, name):
    """{dicom key: [Polyline, ...]} of a measurement field."""
    keys, values = ds.values([F.DICOM_KEY, name])
    return {k: list(v.polylines) for k, v in zip(keys, values, strict=True) if v is not None}


def _by_lesion(ds, name):
    return {p.lesion_id: (k, p) for k, polys in _polys(ds, name).items() for p in polys}


def _reasons(rep):
    return {e["line"]: e["reason"] for e in rep.errors}


HEADER = (
    "reader,sop_instance_uid,frame,series_instance_uid,lesion_id,long_axis_mm,short_axis_mm,"
    "target,site,new_lesion,lymph_node,timepoint,x1,y1,x2,y2,timestamp\n"
)


# --- tables ---------------------------------------------------------------------------


def test_table_good_rows_stored_exactly_bad_rows_reported_by_line(
    dataset, study, followup, tmp_path
):
    s, f = study.sop_uids, followup.sop_uids
    caliper = math.hypot(10 * COL_MM, 6 * ROW_MM)  # (2,3)-(12,9): 7.684 mm
    path = _write(
        tmp_path / "recist.csv",
        HEADER
        + f"Dr A,{s[0]},,,L1,12.5,8,true,liver,no,false,0,,,,,2026-03-01T09:30:00\n"  # 2 good
        + f"Dr A,{s[1]},,,L2,7.7,,yes,lung,,,,2,3,12,9,\n"  # 3 good, endpoints
        + f"Dr A,{s[2]},,,L3,10,,true,lung,,,,2,3,12,9,\n"  # 4 length vs endpoints
        + f"Dr A,{s[3]},,,L1,11,,true,lung,,,,,,,,\n"  # 5 L1 moved site
        + "Dr A,1.2.3.4.5,,,L5,10,,,bone,,,,,,,,\n"  # 6 unknown key
        + f"Dr A,{s[3]},,,L6,abc,,,bone,,,,,,,,\n"  # 7 non-numeric length
        + f"Dr A,{study.multiframe_sop},1,,L7,20,15,false,node,false,true,,,,,,\n"  # 8 good
        + f"Dr A,{f[0]},,,L1,10.0,,true,liver,,,1,,,,,\n"  # 9 good follow-up
        + f"R2,{f[1]},,,L1,9,,true,liver,,,1,,,,,\n"  # 10 follow-up, no baseline
        + f"Dr A,{f[2]},,,L9,8,,,spleen,yes,,1,,,,,\n"  # 11 good new lesion
        + f"Dr A,{f[3]},,,L9,8,,,spleen,yes,,1,,,,,\n"  # 12 L9 twice in the study
        + f"Dr A,,,{study.series_uid},L10,14,,,kidney,,,,,,,,\n"  # 13 good, series level
        + f"Dr A,{s[3]},,,L11,,,,bone,maybe,,,,,,,\n",  # 14 not a boolean
    )
    seen = []
    rep = M.import_measurements(dataset, path, progress=lambda fr, msg: seen.append(fr))
    reasons = _reasons(rep)
    assert sorted(reasons) == [4, 5, 6, 7, 10, 12, 14], rep.errors
    assert "10 mm disagrees with its caliper endpoints: 7.684 mm" in reasons[4]
    assert "pixel spacing 0.8 x 0.6 mm" in reasons[4]
    assert "'L1'" in reasons[5] and "'liver' (line 2)" in reasons[5] and "'lung'" in reasons[5]
    assert "unknown sop_instance_uid '1.2.3.4.5'" in reasons[6]
    assert reasons[7] == "long_axis_mm 'abc' is not a number"
    assert "without a baseline" in reasons[10] and "R2" in reasons[10]
    assert "already measured in this study" in reasons[12] and "line 11" in reasons[12]
    assert "new_lesion 'maybe' is not true/false" in reasons[14]
    assert all(e["source"] == os.path.abspath(path) for e in rep.errors)
    assert rep.n_rows == 13 and rep.n_labels == 6 and rep.counts == {"Dr A": 6}
    assert rep.fields == ["reader_dr_a_measurements"]
    assert seen[-1] == 1.0 and all(0 <= x <= 1 for x in seen)

    name = F.reader_field("Dr A", "measurements")
    assert name == "reader_dr_a_measurements"
    assert F.reader_fields(dataset)[name] == {
        "reader": "Dr A",
        "kind": "measurements",
        "level": "slice",
    }
    assert "reader_r2_measurements" not in dataset.get_field_schema()
    got = _by_lesion(dataset, name)
    assert sorted(got) == ["L1", "L10", "L2", "L7", "L9"]  # L1 twice: baseline, follow-up
    assert sum(len(v) for v in _polys(dataset, name).values()) == 6

    key, l1 = next((k, p) for k, polys in _polys(dataset, name).items() for p in polys
                   if p.lesion_id == "L1" and k == study.key(0))  # fmt: skip
    assert (l1.long_axis_mm, l1.short_axis_mm, l1.target, l1.site) == (12.5, 8.0, True, "liver")
    assert (l1.new_lesion, l1.lymph_node, l1.reader, l1.level) == (False, False, "Dr A", "slice")
    assert l1.read_at == dt.datetime(2026, 3, 1, 9, 30) and l1.points == []
    assert l1.source == os.path.abspath(path) and l1.label == "L1"

    key, l2 = got["L2"]
    assert key == study.key(1)
    assert l2.long_axis_mm == 7.7 and l2.caliper_mm == pytest.approx(caliper, abs=1e-3)
    assert l2.points == [[[2 / 32, 3 / 24], [12 / 32, 9 / 24]]]
    assert l2.target is True and l2.short_axis_mm is None and l2.new_lesion is None

    key, l7 = got["L7"]
    assert key == f"{study.multiframe_sop}:1" and l7.lymph_node is True
    assert (l7.long_axis_mm, l7.short_axis_mm, l7.target) == (20.0, 15.0, False)

    key, l10 = got["L10"]
    assert key == study.key(0) and l10.level == "series"  # the series' first slice

    assert got["L9"][1].new_lesion is True and got["L9"][0] == followup.key(2)

    # timepoints from the column: baseline study 0, follow-up 1, on every sample
    keys, tps, studies = dataset.values([F.DICOM_KEY, F.TIMEPOINT, F.STUDY_UID])
    by_study = {st: {t for t, s2 in zip(tps, studies, strict=True) if s2 == st} for st in studies}
    assert by_study == {study.study_uid: {0}, followup.study_uid: {1}}
    assert F.DAYS_FROM_BASELINE not in dataset.get_field_schema()
    assert F.STUDY_DATE not in dataset.get_field_schema()


def test_reimport_replaces_and_never_touches_other_reader_fields(dataset, study, tmp_path):
    s = study.sop_uids
    reads = _write(tmp_path / "reads.csv", f"sop_instance_uid,reader,label\n{s[0]},Dr A,benign\n")
    readers.import_reader_labels(dataset, reads)
    before = [v.to_dict() if v else None for v in dataset.values("reader_dr_a")]
    path = _write(
        tmp_path / "m.csv",
        "reader,sop_instance_uid,lesion_id,long_axis_mm,site\n"
        f"Dr A,{s[0]},L1,12,liver\nDr A,{s[0]},L2,9,liver\nR2,{s[0]},L1,13,liver\n",
    )
    M.import_measurements(dataset, path)
    # the same lesion re-measured on another slice replaces the old measurement
    moved = _write(
        tmp_path / "moved.csv",
        f"reader,sop_instance_uid,lesion_id,long_axis_mm,site\nDr A,{s[1]},L1,12.4,liver\n",
    )
    rep = M.import_measurements(dataset, moved)
    assert rep.errors == []
    a = _polys(dataset, "reader_dr_a_measurements")
    assert {k: sorted(p.lesion_id for p in v) for k, v in a.items()} == {
        study.key(0): ["L2"],
        study.key(1): ["L1"],
    }
    assert a[study.key(1)][0].long_axis_mm == 12.4
    r2 = _polys(dataset, "reader_r2_measurements")
    assert [p.long_axis_mm for p in r2[study.key(0)]] == [13.0]
    assert [v.to_dict() if v else None for v in dataset.values("reader_dr_a")] == before


def test_caliper_endpoints_with_anisotropic_spacing(dataset, study, tmp_path):
    s = study.sop_uids
    path = _write(
        tmp_path / "calipers.json",
        json.dumps(
            [
                # 10 px along a row (x): 10 * 0.6 = 6 mm
                {
                    "reader": "A",
                    "sop_instance_uid": s[0],
                    "lesion_id": "H",
                    "long_axis_mm": 6,
                    "x1": 5,
                    "y1": 4,
                    "x2": 15,
                    "y2": 4,
                },
                # 10 px along a column (y): 10 * 0.8 = 8 mm, not 6
                {
                    "reader": "A",
                    "sop_instance_uid": s[1],
                    "lesion_id": "V",
                    "long_axis_mm": 6,
                    "x1": 5,
                    "y1": 4,
                    "x2": 5,
                    "y2": 14,
                },
                # no length: taken from the endpoints
                {
                    "reader": "A",
                    "sop_instance_uid": s[2],
                    "lesion_id": "V2",
                    "x1": 5,
                    "y1": 4,
                    "x2": 5,
                    "y2": 14,
                },
                # within max(0.5 mm, 2 %)
                {
                    "reader": "A",
                    "sop_instance_uid": s[3],
                    "lesion_id": "T",
                    "long_axis_mm": 8.45,
                    "x1": 5,
                    "y1": 4,
                    "x2": 5,
                    "y2": 14,
                },
                # a lymph node measured by its short axis only
                {
                    "reader": "A",
                    "sop_instance_uid": s[3],
                    "lesion_id": "N",
                    "short_axis_mm": 8,
                    "lymph_node": True,
                    "x1": 1,
                    "y1": 1,
                    "x2": 1,
                    "y2": 11,
                },
                # outside the 32 x 24 image
                {
                    "reader": "A",
                    "sop_instance_uid": s[3],
                    "lesion_id": "O",
                    "long_axis_mm": 8,
                    "x1": 5,
                    "y1": 20,
                    "x2": 5,
                    "y2": 30,
                },
                # half the endpoints
                {"reader": "A", "sop_instance_uid": s[3], "lesion_id": "P", "x1": 5, "y1": 20},
            ]
        ),  # fmt: skip
    )
    rep = M.import_measurements(dataset, path)
    reasons = _reasons(rep)
    assert sorted(reasons) == [2, 6, 7]
    assert "6 mm disagrees with its caliper endpoints: 8 mm" in reasons[2]
    assert "outside the 32x24 image" in reasons[6]
    assert "need all of x1, y1, x2, y2" in reasons[7]
    got = _by_lesion(dataset, "reader_a_measurements")
    assert got["H"][1].caliper_mm == pytest.approx(6.0)
    assert got["V2"][1].long_axis_mm == pytest.approx(8.0)
    assert got["T"][1].long_axis_mm == 8.45
    n = got["N"][1]
    assert (n.long_axis_mm, n.short_axis_mm, n.caliper_mm) == (None, 8.0, pytest.approx(8.0))


def test_endpoints_need_a_slice_and_multiframe_needs_a_frame(dataset, study, tmp_path):
    path = _write(
        tmp_path / "m.csv",
        "reader,series_instance_uid,sop_instance_uid,slice_index,lesion_id,long_axis_mm,"
        "x1,y1,x2,y2\n"
        f"A,{study.series_uid},,,L1,6,5,4,15,4\n"
        f"A,,{study.multiframe_sop},,L2,6,,,,\n"
        f"A,{study.series_uid},,2,L3,6,5,4,15,4\n",
    )
    rep = M.import_measurements(dataset, path)
    reasons = _reasons(rep)
    assert sorted(reasons) == [2, 3]
    assert "drawn on one slice" in reasons[2]
    assert "give the frame column" in reasons[3]
    assert _by_lesion(dataset, "reader_a_measurements")["L3"][0] == study.key(2)


# --- timepoints -----------------------------------------------------------------------


def test_timepoints_from_study_date(dataset, study, followup, tmp_path):
    import fiftyone as fo

    third = make_study(dataset, str(tmp_path / "third"), n_frames=0)
    dates = {
        study.study_uid: dt.date(2026, 1, 10),
        followup.study_uid: dt.date(2026, 3, 7),
        third.study_uid: dt.date(2026, 2, 1),
    }
    dataset.add_sample_field(F.STUDY_DATE, fo.DateField)
    studies = dataset.values(F.STUDY_UID)
    dataset.set_values(F.STUDY_DATE, [dates[s] for s in studies])

    out = M.assign_timepoints(dataset)
    assert out["rules"] == {"study_date": 1} and out["conflicts"] == []
    tps, days, studies = dataset.values([F.TIMEPOINT, F.DAYS_FROM_BASELINE, F.STUDY_UID])
    got = {s: (t, d) for t, d, s in zip(tps, days, studies, strict=True)}
    assert got == {
        study.study_uid: (0, 0),
        third.study_uid: (1, 22),
        followup.study_uid: (2, 56),
    }
    assert isinstance(dataset.get_field(F.TIMEPOINT), fo.IntField)

    # a timepoint column that disagrees with the dates is reported; dates win
    path = _write(
        tmp_path / "m.csv",
        "reader,sop_instance_uid,lesion_id,long_axis_mm,timepoint\n"
        f"A,{study.sop_uids[0]},L1,10,0\n"
        f"A,{followup.sop_uids[0]},L1,9,1\n"
        f"A,{third.sop_uids[0]},L1,9.5,1\n",
    )
    rep = M.import_measurements(dataset, path)
    assert _reasons(rep) == {
        3: "timepoint 1 disagrees with the study dates: this study is timepoint 2 of the "
        "patient by study_date"
    }
    assert rep.n_labels == 2


def test_assign_timepoints_given_kept_and_single(dataset, study, followup):
    out = M.assign_timepoints(dataset)
    assert out["rules"] == {"unknown": 2}  # two studies, no dates, nothing given
    assert set(dataset.values(F.TIMEPOINT)) == {None}
    out = M.assign_timepoints(dataset, {followup.study_uid: 0, study.study_uid: 1})
    assert out["rules"] == {"given": 2}
    out = M.assign_timepoints(dataset)  # kept from before
    assert out["rules"] == {"kept": 2}
    assert out["studies"][followup.study_uid]["timepoint"] == 0
    with pytest.raises(M.MeasurementImportError):
        M.assign_timepoints(dataset, {study.study_uid: -1})


def test_timepoint_column_conflict_within_a_study(dataset, study, tmp_path):
    path = _write(
        tmp_path / "m.csv",
        "reader,sop_instance_uid,lesion_id,long_axis_mm,timepoint\n"
        f"A,{study.sop_uids[0]},L1,10,0\nB,{study.sop_uids[1]},L1,10,1\n",
    )
    rep = M.import_measurements(dataset, path)
    assert _reasons(rep) == {
        3: "timepoint 1 disagrees with timepoint 0 given for this study (line 2)"
    }


def test_zero_length_accepted_for_a_disappeared_target_at_follow_up_only(
    dataset, study, followup, tmp_path
):
    s, f = study.sop_uids, followup.sop_uids
    path = _write(
        tmp_path / "zero.csv",
        "reader,sop_instance_uid,lesion_id,long_axis_mm,short_axis_mm,target,new_lesion,"
        "timepoint\n"
        f"A,{s[0]},L1,12,8,true,,0\n"  # 2 good baseline
        f"A,{s[1]},L2,0,,true,,0\n"  # 3 0 mm at the baseline
        f"A,{s[2]},L3,-1,,true,,0\n"  # 4 negative
        f"A,{f[0]},L1,0,0,true,,1\n"  # 5 good: the target disappeared
        f"A,{f[1]},L4,-2,,true,,1\n"  # 6 negative at a follow-up
        f"A,{f[2]},L5,0,,,yes,1\n",  # 7 a new lesion of 0 mm
    )
    rep = M.import_measurements(dataset, path)
    reasons = _reasons(rep)
    assert sorted(reasons) == [3, 4, 6, 7], rep.errors
    assert reasons[3].startswith("long_axis_mm 0: a lesion is measured (> 0 mm) at the baseline")
    assert reasons[4] == "long_axis_mm -1 must be positive (0 only at a follow-up)"
    assert reasons[6] == "long_axis_mm -2 must be positive (0 only at a follow-up)"
    assert "new lesion" in reasons[7]
    assert rep.n_labels == 2
    polys = _polys(dataset, F.reader_field("A", "measurements"))
    zero = polys[followup.key(0)][0]
    assert (zero.lesion_id, zero.long_axis_mm, zero.short_axis_mm) == ("L1", 0.0, 0.0)
    assert zero.target is True

    # without a timepoint the study could be the baseline: 0 mm is refused
    third = make_study(dataset, str(tmp_path / "third"), n_frames=0)
    path = _write(
        tmp_path / "zero_unknown.csv",
        f"reader,sop_instance_uid,lesion_id,long_axis_mm,target\nA,{third.sop_uids[0]},L1,0,true\n",
    )
    rep = M.import_measurements(dataset, path)
    assert "timepoint is unknown" in _reasons(rep)[2], rep.errors


# --- DICOM SR -------------------------------------------------------------------------


def _write_sr(path, study, *, observer="Reader^One", long_cm=1.23):
    """A TID 1500 report on the study's CT slices: a planar ROI group whose region is
    the long-axis caliper, and a TID 1501 group whose measurement carries its own."""
    src1 = hd.sr.SourceImageForRegion.from_source_image(study.datasets[1])
    caliper = np.array([[2.0, 3.0], [12.0, 9.0]])  # 10 x 6 px: 7.684 mm
    g1 = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="L1"),
        referenced_region=hd.sr.ImageRegion(
            graphic_type="POLYLINE", graphic_data=caliper, source_image=src1
        ),
        finding_type=codes.SCT.Lesion,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Liver)],
        measurements=[
            hd.sr.Measurement(name=codes.SCT.LongAxis, value=0.77, unit=codes.UCUM.Centimeter),
            hd.sr.Measurement(name=codes.SCT.ShortAxis, value=4.0, unit=codes.UCUM.Millimeter),
        ],
    )
    src2 = hd.sr.SourceImageForMeasurement.from_source_image(study.datasets[2])
    coords = hd.sr.CoordinatesForMeasurement(
        graphic_type="POLYLINE",
        graphic_data=np.array([[5.0, 4.0], [5.0, 14.0]]),  # 10 px down a column: 8 mm
        source_image=hd.sr.SourceImageForRegion.from_source_image(study.datasets[2]),
    )
    g2 = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="L2"),
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
        measurements=[
            hd.sr.Measurement(
                name=codes.SCT.LongAxis,
                value=long_cm,
                unit=codes.UCUM.Centimeter,
                referenced_images=[src2],
                referenced_coordinates=[coords],
            )
        ],
    )
    person = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[g1, g2],
    )
    doc = hd.sr.Comprehensive3DSR(
        evidence=study.datasets,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
    )
    doc.save_as(str(path))
    return str(path), [g1, g2]


def test_sr_records_read_back(study, tmp_path):
    path, groups = _write_sr(tmp_path / "sr.dcm", study)
    rep = SR.read_measurement_report(path)
    assert rep.observer == "Reader^One" and rep.problems == []
    assert [f.tracking_id for f in rep.findings] == ["L1", "L2"]
    f1, f2 = rep.findings
    assert f1.tracking_uid and f1.tracking_uid != f2.tracking_uid
    assert (f1.site, f1.finding, f1.sop_instance_uid, f1.frame) == (
        "Liver",
        "Lesion",
        study.sop_uids[1],
        None,
    )
    assert (f1.series_instance_uid, f1.study_instance_uid) == (study.series_uid, study.study_uid)
    assert f1.axis_mm("long") == pytest.approx(7.7) and f1.axis_mm("short") == 4.0
    assert f1.axis_endpoints("long") == [[2.0, 3.0], [12.0, 9.0]]
    long1 = f1.measurements[0]
    assert (long1.code, long1.unit, long1.value, long1.axis) == (
        "SCT:103339001",
        "cm",
        0.77,
        "long",
    )
    assert f2.sop_instance_uid == study.sop_uids[2] and f2.site == "Lung"
    assert f2.axis_endpoints("long") == [[5.0, 4.0], [5.0, 14.0]]
    assert f2.axis_mm("long") == pytest.approx(12.3)
    with pytest.raises(SR.SRReadError):
        SR.read_measurement_report(study.paths[0])  # a CT image, not an SR


def test_sr_import_round_trip_without_identifiers(dataset, study, tmp_path):
    folder = tmp_path / "srs"
    folder.mkdir()
    path, _ = _write_sr(folder / "a.dcm", study, long_cm=0.8)  # L2: 8 mm, matches
    (folder / "notes.dcm").write_bytes(b"not dicom")
    rep = M.import_measurements(dataset, str(folder))
    assert rep.kind == "sr" and len(rep.files) == 2
    errs = rep.errors
    assert len(errs) == 1 and errs[0]["line"] is None and "notes.dcm" in errs[0]["source"]
    name = "reader_reader_one_measurements"
    assert rep.fields == [name] and rep.n_labels == 2
    got = _by_lesion(dataset, name)
    k1, l1 = got["L1"]
    assert k1 == study.key(1) and l1.reader == "Reader^One" and l1.site == "Liver"
    assert l1.long_axis_mm == pytest.approx(7.7) and l1.short_axis_mm == 4.0
    assert l1.caliper_mm == pytest.approx(7.684, abs=1e-3) and l1.tracking_uid
    assert l1.points == [[[2 / 32, 3 / 24], [12 / 32, 9 / 24]]] and l1.source == path
    assert l1.read_at is None  # the dataset keeps no dates, so neither does the import
    assert got["L2"][1].long_axis_mm == pytest.approx(8.0)

    # a pseudonym for the observer; a length that disagrees with its SR coordinates
    bad, _ = _write_sr(tmp_path / "b.dcm", study, observer="Doe^Jane", long_cm=1.5)
    rep = M.import_measurements(dataset, bad, reader="R7")
    assert rep.fields == ["reader_r7_measurements"]
    assert _reasons(rep) == {
        2: "long_axis_mm 15 mm disagrees with its caliper endpoints: 8 mm at pixel spacing "
        "0.8 x 0.6 mm (row x column), tolerance 0.5 mm"
    }

    # no identifier of the SR or the CT headers is stored anywhere
    dumped = json.dumps([s.to_dict() for s in dataset], default=str)
    dumped += json.dumps(dataset.info, default=str)
    for ident in ("PHANTOM-1", "Test^Phantom", "19700101", "Doe^Jane", "20260301"):
        assert ident not in dumped


def test_sr_read_at_kept_only_when_dates_are(dataset, study, tmp_path):
    import fiftyone as fo

    dataset.add_sample_field(F.STUDY_DATE, fo.DateField)
    dataset.set_values(F.STUDY_DATE, [dt.date(2026, 3, 1)] * len(dataset))
    path, _ = _write_sr(tmp_path / "sr.dcm", study)
    M.import_measurements(dataset, path, kind="sr")
    got = _by_lesion(dataset, "reader_reader_one_measurements")
    assert isinstance(got["L1"][1].read_at, dt.datetime)
    assert set(dataset.values(F.DAYS_FROM_BASELINE)) == {0}


# --- the operator ---------------------------------------------------------------------


def test_operator_imports_and_returns_a_small_json_result(dataset, study, tmp_path):
    from helpers_plugin import op

    s = study.sop_uids
    rows = "".join(f"A,{s[0]},L{i},abc\n" for i in range(60))
    path = _write(
        tmp_path / "m.csv",
        f"reader,sop_instance_uid,lesion_id,long_axis_mm\nA,{s[1]},L1,10\n{rows}",
    )
    result = op("import_measurements")(dataset, path)
    json.dumps(result)
    assert result["n_measurements"] == 1 and result["n_errors"] == 60
    assert len(result["errors"]) == 50 and result["errors"][0]["line"] == 3
    assert result["fields"] == ["reader_a_measurements"]
    dataset.reload()
    assert "reader_a_measurements" in dataset.get_field_schema()


def test_operator_delegated_run_reports_progress(dataset, study, tmp_path):
    from helpers_plugin import op, run_queued

    path = _write(
        tmp_path / "m.csv",
        f"reader,sop_instance_uid,lesion_id,long_axis_mm\nA,{study.sop_uids[1]},L1,10\n",
    )
    op("import_measurements")(dataset, path, delegate=True)
    result = run_queued("import_measurements", dataset)
    assert result["n_measurements"] == 1 and result["errors"] == []
    assert "reader_a_measurements" in dataset.get_field_schema()
