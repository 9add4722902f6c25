"""DICOM SR measurement reports (TID 1500) into plain records: pure pydicom, no FiftyOne.

A TID 1500 "Imaging Measurement Report" holds one "Measurement Group" per lesion
(TID 1410 planar ROI, TID 1411 volumetric ROI or TID 1501 measurements), each with a
tracking identifier (the reader's lesion id) and tracking UID, a finding site (organ),
numeric measurements (long axis, short axis, diameter, ...) with UCUM units and,
optionally, the image coordinates the measurement was drawn with (SCOORD POLYLINE, in
pixel column/row of the referenced image).

The content tree is walked with pydicom rather than through highdicom's parsers: real
reports from viewers bend the template (observer context inside a group, coordinates on
the group's region instead of the measurement), and a walk that looks for concepts by
code wherever they sit reads them all. Patient identifiers are never read: a record
holds the observer (the reader), references (UIDs), codes, numbers and coordinates,
and the report's content date/time only as a separate value the caller may drop.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field

import pydicom

from multireader.errors import MultireaderError

# --- codes (scheme, value), as highdicom / pydicom's codedict spell them ---------------
REPORT = ("DCM", "126000")  # Imaging Measurement Report
MEASUREMENT_GROUP = ("DCM", "125007")
TRACKING_ID = ("DCM", "112039")
TRACKING_UID = ("DCM", "112040")
FINDING = ("DCM", "121071")
FINDING_SITE = ("SCT", "363698007")
OBSERVER_TYPE = ("DCM", "121005")
PERSON_OBSERVER_NAME = ("DCM", "121008")
DEVICE_OBSERVER_UID = ("DCM", "121012")
DEVICE_OBSERVER_NAME = ("DCM", "121013")
TIME_POINT = ("UMLS", "C2348792")  # TID 1502, as highdicom writes it
TIME_POINT_ORDER = ("DCM", "126073")
ACTIVITY_SESSION = ("NCIt", "C67447")
#: measurement concept -> RECIST axis
LONG_AXIS_CODES = {
    ("SCT", "103339001"): "long",  # Long axis
    ("SCT", "81827009"): "long",  # Diameter
    ("SCT", "410668003"): "long",  # Length
    ("DCM", "121206"): "long",  # Distance
    ("SCT", "103340004"): "short",  # Short axis
}
#: UCUM length units -> mm
UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 0.001, "[um]": 0.001}

_SR_MODALITY = "SR"


class SRReadError(MultireaderError):
    """A file is not a readable DICOM SR measurement report."""


@dataclass
class SRMeasurement:
    """One numeric measurement of a finding."""

    name: str  # the concept's meaning as written, e.g. "Long axis"
    code: str  # "SCT:103339001"
    axis: str | None  # "long", "short", or None (not a RECIST diameter)
    value: float  # as written, in ``unit``
    unit: str  # UCUM code, e.g. "mm", "cm"
    value_mm: float | None  # the value in mm; None when the unit is not a length
    #: SCOORD POLYLINE points [[column, row], ...] in pixels of the referenced image
    endpoints: list[list[float]] | None = None
    sop_instance_uid: str | None = None
    frame: int | None = None  # 0-based; None = single-frame, or not said


@dataclass
class SRFinding:
    """One measurement group: one lesion as one observer measured it."""

    group: int  # 1-based position among the report's measurement groups
    observer: str | None  # person observer name, else device name / UID
    observer_type: str | None  # "person" or "device"
    tracking_id: str | None  # the lesion id
    tracking_uid: str | None
    finding: str | None  # e.g. "Lesion", "Lymph node"
    site: str | None  # finding site, e.g. "Liver"
    sop_instance_uid: str | None  # the image measured on (coordinates' or source image)
    frame: int | None  # 0-based frame of that image
    series_instance_uid: str | None  # from the report's evidence, or the group itself
    study_instance_uid: str | None
    measurements: list[SRMeasurement] = field(default_factory=list)
    region: list[list[float]] | None = None  # the group's image region (SCOORD), pixels
    region_type: str | None = None  # its graphic type, e.g. "POLYLINE"
    qualitative: dict[str, str] = field(default_factory=dict)  # concept -> value meanings
    time_point: str | None = None  # TID 1502 Time Point, as written
    time_point_order: int | None = None  # TID 1502 Time Point Order, as written
    session: str | None = None

    def axis_mm(self, axis: str) -> float | None:
        """The first measurement of ``axis`` ("long"/"short") in mm, or None."""
        for m in self.measurements:
            if m.axis == axis and m.value_mm is not None:
                return m.value_mm
        return None

    def axis_endpoints(self, axis: str) -> list[list[float]] | None:
        """The caliper of ``axis``: the measurement's own coordinates, else (long axis)
        a two-point POLYLINE region of the group."""
        for m in self.measurements:
            if m.axis == axis and m.endpoints and len(m.endpoints) == 2:
                return m.endpoints
        if axis == "long" and self.region_type == "POLYLINE" and len(self.region or ()) == 2:
            return self.region
        return None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SRReport:
    """What one SR file holds: its own UIDs, the findings and what could not be read."""

    path: str
    sop_instance_uid: str | None
    series_instance_uid: str | None
    study_instance_uid: str | None
    content_datetime: dt.datetime | None  # when the report was written; drop unless dates are kept
    observer: str | None
    findings: list[SRFinding] = field(default_factory=list)
    #: (group number or None, reason) for what could not be read
    problems: list[tuple[int | None, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --- helpers --------------------------------------------------------------------------


def _code(item, attr: str = "ConceptNameCodeSequence") -> tuple[str, str] | None:
    seq = item.get(attr)
    if not seq:
        return None
    c = seq[0]
    value = c.get("CodeValue") or c.get("LongCodeValue") or c.get("URNCodeValue")
    return (str(c.get("CodingSchemeDesignator", "")).strip(), str(value or "").strip())


def _meaning(item, attr: str = "ConceptNameCodeSequence") -> str | None:
    seq = item.get(attr)
    if not seq:
        return None
    text = str(seq[0].get("CodeMeaning", "") or "").strip()
    return text or None


def _value_type(item) -> str:
    return str(item.get("ValueType", "") or "").upper()


def _relationship(item) -> str:
    return str(item.get("RelationshipType", "") or "").upper()


def _children(item):
    return item.get("ContentSequence") or ()


def _walk(item):
    """Every content item below ``item``, depth first."""
    for child in _children(item):
        yield child
        yield from _walk(child)


def _is(item, code: tuple[str, str], meaning: str | None = None) -> bool:
    c = _code(item)
    if c == code:
        return True
    m = _meaning(item)
    return meaning is not None and m is not None and m.lower() == meaning.lower()


def _image_ref(item) -> tuple[str | None, int | None]:
    """(SOP instance UID, 0-based frame) of an IMAGE item, or of the image a SCOORD is
    SELECTED FROM."""
    refs = item.get("ReferencedSOPSequence")
    if not refs:
        for child in _children(item):
            if _value_type(child) == "IMAGE":
                return _image_ref(child)
        return None, None
    ref = refs[0]
    sop = str(ref.get("ReferencedSOPInstanceUID", "") or "").strip() or None
    frames = ref.get("ReferencedFrameNumber")
    frame = None
    if frames not in (None, ""):
        first = frames[0] if isinstance(frames, pydicom.multival.MultiValue) else frames
        try:
            frame = int(first) - 1  # DICOM frame numbers start at 1
        except (TypeError, ValueError):
            frame = None
    return sop, frame


def _scoord(item) -> tuple[str | None, list[list[float]] | None]:
    """(graphic type, points [[column, row], ...]) of a SCOORD item."""
    data = item.get("GraphicData")
    if data is None:
        return None, None
    values = [float(v) for v in data]
    points = [[values[i], values[i + 1]] for i in range(0, len(values) - 1, 2)]
    return str(item.get("GraphicType", "") or "").upper() or None, points


def _person(item) -> str | None:
    text = str(item.get("PersonName", "") or "").strip()
    return text or None


def _observer(items, default: tuple[str | None, str | None]) -> tuple[str | None, str | None]:
    """(observer, type) from the HAS OBS CONTEXT items among ``items``; a person wins."""
    person = device_name = device_uid = None
    for item in items:
        if _relationship(item) != "HAS OBS CONTEXT":
            continue
        if _is(item, PERSON_OBSERVER_NAME, "Person Observer Name"):
            person = person or _person(item)
        elif _is(item, DEVICE_OBSERVER_NAME, "Device Observer Name"):
            device_name = device_name or str(item.get("TextValue", "") or "").strip() or None
        elif _is(item, DEVICE_OBSERVER_UID, "Device Observer UID"):
            device_uid = device_uid or str(item.get("UID", "") or "").strip() or None
    if person:
        return person, "person"
    if device_name or device_uid:
        return device_name or device_uid, "device"
    return default


def _evidence(ds) -> dict[str, tuple[str, str]]:
    """SOP instance UID -> (series UID, study UID) from the report's evidence sequences."""
    out = {}
    for attr in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(attr) or ():
            study_uid = str(study.get("StudyInstanceUID", "") or "")
            for series in study.get("ReferencedSeriesSequence") or ():
                series_uid = str(series.get("SeriesInstanceUID", "") or "")
                for ref in series.get("ReferencedSOPSequence") or ():
                    sop = str(ref.get("ReferencedSOPInstanceUID", "") or "")
                    if sop:
                        out.setdefault(sop, (series_uid or None, study_uid or None))
    return out


def _datetime(ds) -> dt.datetime | None:
    date = str(ds.get("ContentDate", "") or "").strip()
    time = str(ds.get("ContentTime", "") or "").strip().split(".")[0]
    if len(date) < 8:
        return None
    try:
        return dt.datetime.strptime(date[:8] + (time + "000000")[:6], "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _measurement(item, problems: list, group: int) -> SRMeasurement | None:
    name = _meaning(item) or "?"
    code = _code(item) or ("", "")
    values = item.get("MeasuredValueSequence")
    if not values:
        return None  # a NUM without a value (e.g. "not measurable"): nothing to import
    mv = values[0]
    raw = mv.get("FloatingPointValue", mv.get("NumericValue"))
    try:
        value = float(raw)
    except (TypeError, ValueError):
        problems.append((group, f"measurement {name!r} has no numeric value ({raw!r})"))
        return None
    unit_seq = mv.get("MeasurementUnitsCodeSequence")
    unit = str(unit_seq[0].get("CodeValue", "") or "").strip() if unit_seq else ""
    factor = UNIT_TO_MM.get(unit)
    axis = LONG_AXIS_CODES.get(code)
    if axis is None:
        lowered = name.lower()
        axis = "long" if lowered in ("long axis", "diameter", "length") else None
        axis = "short" if lowered == "short axis" else axis
    if axis is not None and factor is None:
        problems.append((group, f"measurement {name!r} is in {unit or 'no unit'}, not a length"))
    m = SRMeasurement(
        name=name,
        code=f"{code[0]}:{code[1]}",
        axis=axis,
        value=value,
        unit=unit,
        value_mm=None if factor is None else value * factor,
    )
    for child in _children(item):
        vt = _value_type(child)
        if vt == "SCOORD" and m.endpoints is None:
            _, m.endpoints = _scoord(child)
            m.sop_instance_uid, m.frame = _image_ref(child)
        elif vt == "IMAGE" and m.sop_instance_uid is None:
            m.sop_instance_uid, m.frame = _image_ref(child)
    return m


def _order(item) -> int | None:
    values = item.get("MeasuredValueSequence")
    try:
        return int(float(values[0].get("NumericValue")))
    except (TypeError, ValueError, IndexError):
        return None


def _time_point(items) -> tuple[str | None, int | None]:
    text = order = None
    for item in items:
        if _is(item, TIME_POINT, "Time Point") and _value_type(item) == "TEXT":
            text = str(item.get("TextValue", "") or "").strip() or None
        elif _is(item, TIME_POINT_ORDER, "Time Point Order") and _value_type(item) == "NUM":
            order = _order(item)
    return text, order


def _finding(group_item, number: int, evidence, observer, problems, time_point) -> SRFinding:
    items = list(_children(group_item))
    who, kind = _observer(items, observer)
    f = SRFinding(
        group=number,
        observer=who,
        observer_type=kind,
        tracking_id=None,
        tracking_uid=None,
        finding=None,
        site=None,
        sop_instance_uid=None,
        frame=None,
        series_instance_uid=None,
        study_instance_uid=None,
        time_point=time_point[0],
        time_point_order=time_point[1],
    )
    for item in items:
        vt = _value_type(item)
        if _is(item, TRACKING_ID, "Tracking Identifier"):
            f.tracking_id = str(item.get("TextValue", "") or "").strip() or None
        elif _is(item, TRACKING_UID, "Tracking Unique Identifier"):
            f.tracking_uid = str(item.get("UID", "") or "").strip() or None
        elif _is(item, FINDING, "Finding") and vt == "CODE":
            f.finding = _meaning(item, "ConceptCodeSequence")
        elif _is(item, FINDING_SITE, "Finding Site") and vt == "CODE":
            f.site = f.site or _meaning(item, "ConceptCodeSequence")
        elif _is(item, TIME_POINT, "Time Point") and vt == "TEXT":
            f.time_point = str(item.get("TextValue", "") or "").strip() or None
        elif _is(item, TIME_POINT_ORDER, "Time Point Order") and vt == "NUM":
            f.time_point_order = _order(item)
        elif _is(item, ACTIVITY_SESSION, "Activity Session") and vt == "TEXT":
            f.session = str(item.get("TextValue", "") or "").strip() or None
        elif vt == "NUM":
            m = _measurement(item, problems, number)
            if m is not None:
                f.measurements.append(m)
        elif vt == "SCOORD":
            f.region_type, f.region = _scoord(item)
            f.sop_instance_uid, f.frame = _image_ref(item)
        elif vt == "IMAGE" and f.sop_instance_uid is None:
            f.sop_instance_uid, f.frame = _image_ref(item)
        elif vt == "UIDREF" and "series" in (_meaning(item) or "").lower():
            f.series_instance_uid = str(item.get("UID", "") or "").strip() or None
        elif vt == "CODE" and _relationship(item) == "CONTAINS":
            name = _meaning(item)
            value = _meaning(item, "ConceptCodeSequence")
            if name and value:
                f.qualitative[name] = value
    # a finding site can also sit on a measurement (HAS CONCEPT MOD of the NUM)
    if f.site is None:
        for item in items:
            for sub in _walk(item):
                if _is(sub, FINDING_SITE, "Finding Site") and _value_type(sub) == "CODE":
                    f.site = _meaning(sub, "ConceptCodeSequence")
                    break
            if f.site:
                break
    if f.sop_instance_uid is None:  # the image of the first measurement that names one
        ref = next((m for m in f.measurements if m.sop_instance_uid), None)
        if ref is not None:
            f.sop_instance_uid, f.frame = ref.sop_instance_uid, ref.frame
    if f.sop_instance_uid and f.sop_instance_uid in evidence:
        series, study = evidence[f.sop_instance_uid]
        f.series_instance_uid = f.series_instance_uid or series
        f.study_instance_uid = study
    return f


# --- entry points ---------------------------------------------------------------------


def read_measurement_report(source) -> SRReport:
    """Read one TID 1500 measurement report (a path or a pydicom Dataset).

    Raises :class:`SRReadError` when the file is not DICOM, not an SR, or holds no
    Imaging Measurement Report. Groups that are only partly readable are returned with
    what was read; the reasons go to ``problems``.
    """
    if isinstance(source, pydicom.Dataset):
        ds, path = source, str(getattr(source, "filename", "") or "")
    else:
        path = os.path.abspath(str(source))
        try:
            ds = pydicom.dcmread(path)
        except Exception as err:  # noqa: BLE001 - pydicom raises many types for non-DICOM
            raise SRReadError(f"{path}: not readable DICOM ({err})") from err
    modality = str(ds.get("Modality", "") or "").upper()
    if modality != _SR_MODALITY or "ContentSequence" not in ds:
        raise SRReadError(f"{path}: Modality {modality or 'unknown'}, not an SR document")
    if not _is(ds, REPORT, "Imaging Measurement Report"):
        raise SRReadError(
            f"{path}: the SR is a {_meaning(ds) or 'untitled document'!r}, not an Imaging "
            "Measurement Report (TID 1500)"
        )
    evidence = _evidence(ds)
    root_observer = _observer(list(_children(ds)), (None, None))
    root_time_point = _time_point(_children(ds))
    rep = SRReport(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "") or None,
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or "") or None,
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
        content_datetime=_datetime(ds),
        observer=root_observer[0],
    )
    number = 0
    for item in _walk(ds):
        if _value_type(item) == "CONTAINER" and _is(item, MEASUREMENT_GROUP, "Measurement Group"):
            number += 1
            rep.findings.append(
                _finding(item, number, evidence, root_observer, rep.problems, root_time_point)
            )
    return rep


def sr_paths(source) -> list[str]:
    """The files of ``source``: one path, a folder (searched recursively, every file
    that is not obviously something else) or a list of those."""
    if isinstance(source, (list, tuple, set)):
        out = []
        for s in source:
            out.extend(sr_paths(s))
        return out
    path = os.path.abspath(os.fspath(source))
    if os.path.isdir(path):
        found = []
        for folder, _, names in os.walk(path):
            for name in sorted(names):
                if not name.startswith(".") and not name.lower().endswith(
                    (".csv", ".json", ".tsv", ".txt", ".png", ".npy", ".md")
                ):
                    found.append(os.path.join(folder, name))
        return sorted(found)
    return [path]


def is_sr_file(path: str) -> bool:
    """Whether ``path`` is a DICOM file with Modality SR (header only)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # noqa: BLE001 - pydicom raises many types for non-DICOM
        return False
    return str(ds.get("Modality", "") or "").upper() == _SR_MODALITY
