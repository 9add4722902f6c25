"""RECIST measurements into FiftyOne: one ``reader_<id>_measurements`` field per reader.

Sources: a table (CSV/TSV/JSON, read with :func:`readers.read_table`) or DICOM SR
measurement reports (TID 1500, read with :mod:`multireader.io.sr`): one file, a folder
or a list. Each measurement becomes an ``fo.Polyline`` on the measured slice's sample:
the caliper line when endpoints are known, else a polyline without points that still
carries the lengths. Per reader and field there is one bulk ``set_values``; other
readers' fields are never touched.

Every study of a patient gets a timepoint (baseline 0, then follow-ups in order), from
the study dates when the dataset keeps them, else from a ``timepoint`` column; see
:func:`assign_timepoints` and ``docs/measurements.md``.

Bad rows are reported by line (SR: by measurement group) and the rest is imported.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

from multireader.core import fields as F
from multireader.errors import MultireaderError
from multireader.ingest.readers import (
    LabelImportReport,
    cell_number,
    cell_text,
    parse_timestamp,
    read_table,
)
from multireader.io import sr as SR
from multireader.progress import ProgressFn, report

KINDS = ("auto", "table", "sr")
#: the reader-field kind (``fields.READER_KIND_SUFFIX``)
KIND = "measurements"
KEY_COLUMNS = ("sop_instance_uid", "series_instance_uid", "study_instance_uid")
#: a length agrees with its caliper endpoints within max(mm, fraction x length)
DEFAULT_TOLERANCE_MM = 0.5
DEFAULT_TOLERANCE_FRACTION = 0.02
#: the attributes of every stored ``fo.Polyline``
ATTRIBUTES = (
    "reader",
    "lesion_id",
    "long_axis_mm",
    "short_axis_mm",
    "caliper_mm",
    "target",
    "site",
    "new_lesion",
    "lymph_node",
    "level",
    "tracking_uid",
    "read_at",
    "session",
    "source",
)
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_TABLE_ENDINGS = (".csv", ".tsv", ".json")


class MeasurementImportError(MultireaderError):
    """The whole source cannot be used (no DICOM samples, unreadable table, bad option)."""


@dataclass
class MeasurementImportReport(LabelImportReport):
    """:class:`LabelImportReport` plus what the import did to timepoints and warnings.

    ``errors``: ``{"line", "source", "reason"}`` per rejected row; for an SR file
    ``line`` is the measurement group's position in the report (1-based), or None for
    the file as a whole. ``warnings``: the same shape, for rows imported as they are.
    """

    files: list[str] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    timepoints: dict = field(default_factory=dict)

    def error(self, line, reason: str, source: str | None = None) -> None:
        self.errors.append({"line": line, "source": source or self.source, "reason": reason})

    def warn(self, line, reason: str, source: str | None = None) -> None:
        self.warnings.append({"line": line, "source": source or self.source, "reason": reason})


# --- cells ----------------------------------------------------------------------------


def _bool(row: dict, column: str) -> tuple[bool | None, str | None]:
    value = row.get(column)
    if isinstance(value, bool):
        return value, None
    text = cell_text(value)
    if text is None:
        return None, None
    if text.lower() in _TRUE:
        return True, None
    if text.lower() in _FALSE:
        return False, None
    return None, f"{column} {text!r} is not true/false (yes/no, 1/0)"


def _int(row: dict, column: str) -> tuple[int | None, str | None]:
    text = cell_text(row.get(column))
    if text is None:
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"{column} {text!r} is not an integer"
    if not value.is_integer() or value < 0:
        return None, f"{column} {text!r} is not a whole number >= 0"
    return int(value), None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# --- the dataset side -----------------------------------------------------------------


class _Samples:
    """What the import needs from every sample, read with one ``values`` call."""

    def __init__(self, dataset):
        schema = dataset.get_field_schema()
        if F.DICOM_KEY not in schema:
            raise MeasurementImportError("the dataset has no DICOM samples; run import_dicom first")
        names = [
            F.DICOM_KEY,
            F.SOP_UID,
            F.FRAME_INDEX,
            F.SERIES_UID,
            F.STUDY_UID,
            F.PATIENT_KEY,
            F.ROWS,
            F.COLUMNS,
            F.PIXEL_SPACING,
            F.SLICE_INDEX,
            F.TIMEPOINT,
            F.STUDY_DATE,
        ]
        present = [n for n in names if n in schema]
        cols = dict(zip(present, dataset.values(present), strict=True)) if present else {}
        n = len(cols[F.DICOM_KEY])
        for name in names:
            cols.setdefault(name, [None] * n)
        self.has_dates = F.STUDY_DATE in schema
        self.keys = cols[F.DICOM_KEY]
        self.by_sop = defaultdict(list)
        self.by_sop_frame = {}
        self.by_series = defaultdict(list)
        self.by_study = defaultdict(list)
        self.study_of, self.patient_of_study, self.shape, self.spacing = {}, {}, {}, {}
        self.slice_of, self.sort_key = {}, {}
        self.study_date, self.stored_timepoint = {}, {}
        self.studies_of_patient = defaultdict(set)
        for i, key in enumerate(self.keys):
            sop, frame = cols[F.SOP_UID][i], int(cols[F.FRAME_INDEX][i] or 0)
            series, study = cols[F.SERIES_UID][i], cols[F.STUDY_UID][i]
            patient = cols[F.PATIENT_KEY][i]
            self.by_sop[sop].append(key)
            self.by_sop_frame[(sop, frame)] = key
            self.by_series[series].append(key)
            self.by_study[study].append(key)
            self.study_of[key] = study
            self.patient_of_study.setdefault(study, patient)
            self.studies_of_patient[patient].add(study)
            self.shape[key] = (cols[F.ROWS][i], cols[F.COLUMNS][i])
            self.spacing[key] = cols[F.PIXEL_SPACING][i]
            slice_index = cols[F.SLICE_INDEX][i]
            self.slice_of[key] = slice_index
            self.sort_key[key] = (str(series), slice_index if slice_index is not None else 0, frame)
            date = cols[F.STUDY_DATE][i]
            if date is not None and study not in self.study_date:
                self.study_date[study] = date.date() if isinstance(date, dt.datetime) else date
            stored = cols[F.TIMEPOINT][i]
            if stored is not None:
                self.stored_timepoint.setdefault(study, int(stored))

    def anchor(self, keys: list[str]) -> str:
        """The sample a series- or study-level measurement is stored on: the first slice."""
        return min(keys, key=lambda k: self.sort_key[k])

    def resolve(self, row: dict, key_column: str | None) -> tuple[str | None, str, str | None]:
        """(dicom key, level, error) of a row."""
        frame, err = _int(row, "frame")
        if err:
            return None, "slice", err
        slice_index, err = _int(row, "slice_index")
        if err:
            return None, "slice", err
        columns = (key_column,) if key_column else KEY_COLUMNS
        column = next((c for c in columns if cell_text(row.get(c))), None)
        if column is None:
            return None, "slice", f"no key: give {' or '.join(columns)}"
        value = cell_text(row[column])
        if column == "sop_instance_uid":
            if value not in self.by_sop:
                return None, "slice", f"unknown sop_instance_uid {value!r} (not in the dataset)"
            if frame is not None:
                key = self.by_sop_frame.get((value, frame))
                if key is None:
                    return None, "slice", f"frame {frame} does not exist in {value}"
                return key, "slice", None
            keys = self.by_sop[value]
            if len(keys) != 1:
                return (
                    None,
                    "slice",
                    (
                        f"{value} has {len(keys)} frames: give the frame column (0-based) "
                        "of the measured frame"
                    ),
                )
            return keys[0], "slice", None
        table = self.by_series if column == "series_instance_uid" else self.by_study
        if value not in table:
            return None, "slice", f"unknown {column} {value!r} (not in the dataset)"
        keys = table[value]
        if slice_index is not None:
            if column != "series_instance_uid":
                return None, "slice", "slice_index needs a series_instance_uid key"
            match = [k for k in keys if self.slice_of[k] == slice_index]
            if len(match) != 1:
                return (
                    None,
                    "slice",
                    (f"slice_index {slice_index} does not name one slice of series {value}"),
                )
            return match[0], "slice", None
        return self.anchor(keys), "series" if column == "series_instance_uid" else "study", None


class _ReaderIds:
    """Reader ids by slug, seeded from the dataset: two ids that share a field are refused."""

    def __init__(self, dataset, default: str | None):
        self.default = cell_text(default)
        self.by_slug: dict[str, str] = {}
        registry = (dataset.info or {}).get(F.INFO_KEY, {}).get("readers", {})
        for reader, entry in registry.items():
            self.by_slug.setdefault(entry.get("slug") or F.reader_slug(reader), reader)
        for meta in F.reader_fields(dataset).values():
            if meta.get("reader"):
                self.by_slug.setdefault(F.reader_slug(meta["reader"]), meta["reader"])

    def check(self, reader, override: bool = False) -> tuple[str | None, str | None]:
        reader = cell_text(reader)
        if override and self.default is not None:
            reader = self.default
        elif reader is None:
            reader = self.default
            if reader is None:
                return None, "empty reader id"
        elif self.default is not None and reader != self.default:
            return None, (
                f"reader {reader!r} is not the reader this import is for ({self.default!r})"
            )
        try:
            slug = F.reader_slug(reader)
        except ValueError as err:
            return None, f"unusable reader id: {err}"
        other = self.by_slug.setdefault(slug, reader)
        if other != reader:
            return None, (
                f"reader ids {other!r} and {reader!r} both map to the field "
                f"{F.reader_field(reader, KIND)}; rename one"
            )
        return reader, None


# --- one measurement ------------------------------------------------------------------


@dataclass
class _Measurement:
    line: int | None
    source: str
    reader: str
    key: str
    level: str
    lesion_id: str
    long_axis_mm: float | None
    short_axis_mm: float | None
    caliper_mm: float | None
    target: bool | None
    site: str | None
    new_lesion: bool | None
    lymph_node: bool | None
    timepoint: int | None  # as the row gave it
    read_at: dt.datetime | None
    session: str | None
    tracking_uid: str | None
    #: [[x1, y1, x2, y2] (long axis), [..] (short axis)] in pixels, each or None
    calipers: list = field(default_factory=list)
    study: str | None = None
    patient: str | None = None


def _caliper(row: dict, names: tuple[str, ...]) -> tuple[list[float] | None, str | None]:
    values, err = [], None
    for name in names:
        v, e = cell_number(row, name)
        err = err or e
        values.append(v)
    if err:
        return None, err
    given = [v is not None for v in values]
    if not any(given):
        return None, None
    if not all(given):
        return None, f"caliper endpoints need all of {', '.join(names)}"
    return values, None


def _length_mm(points: list[float], spacing) -> float:
    """Length of the caliper (x1, y1, x2, y2) in pixels, in mm.

    ``pixel_spacing`` is [row spacing, column spacing]: x (columns) scales by the column
    spacing, y (rows) by the row spacing.
    """
    x1, y1, x2, y2 = points
    return math.hypot((x2 - x1) * float(spacing[1]), (y2 - y1) * float(spacing[0]))


def _check_length(
    stated: float | None, points, spacing, what: str, tol_mm: float, tol_frac: float
) -> tuple[float | None, str | None]:
    """(caliper length, error): the endpoints' length, and whether ``stated`` agrees."""
    caliper = _length_mm(points, spacing)
    if stated is None:
        return caliper, None
    tolerance = max(tol_mm, tol_frac * caliper)
    if abs(stated - caliper) > tolerance:
        return caliper, (
            f"{what} {_fmt(stated)} mm disagrees with its caliper endpoints: "
            f"{_fmt(caliper)} mm at pixel spacing {_fmt(float(spacing[0]))} x "
            f"{_fmt(float(spacing[1]))} mm (row x column), tolerance {_fmt(tolerance)} mm"
        )
    return caliper, None


def _parse_row(ctx, line, row: dict, source: str, override_reader: bool = False):
    """A :class:`_Measurement` from one row, or None after reporting why not."""
    rep = ctx.rep
    if "__malformed__" in row:
        rep.error(line, f"malformed row: {row['__malformed__']}", source)
        return None
    reader, err = ctx.readers.check(row.get("reader"), override=override_reader)
    if err:
        rep.error(line, err, source)
        return None
    read_at = row.get("read_at") if isinstance(row.get("read_at"), dt.datetime) else None
    if read_at is None:
        read_at, err = parse_timestamp(row.get("timestamp"))
        if err:
            rep.error(line, err, source)
            return None
    lesion = cell_text(row.get("lesion_id"))
    if lesion is None:
        rep.error(line, "empty lesion_id", source)
        return None
    reason = None
    nums = {}
    for c in ("long_axis_mm", "short_axis_mm"):
        nums[c], err = cell_number(row, c)
        reason = reason or err
        # 0 mm is how RECIST records a lesion that disappeared at a follow-up; whether
        # this row is a follow-up is known after the timepoints (see _cross_checks)
        if nums[c] is not None and nums[c] < 0 and reason is None:
            reason = f"{c} {_fmt(nums[c])} must be positive (0 only at a follow-up)"
    flags = {}
    for c in ("target", "new_lesion", "lymph_node"):
        flags[c], err = _bool(row, c)
        reason = reason or err
    timepoint, err = _int(row, "timepoint")
    reason = reason or err
    long_pts, err = _caliper(row, ("x1", "y1", "x2", "y2"))
    reason = reason or err
    short_pts, err = _caliper(row, ("sx1", "sy1", "sx2", "sy2"))
    reason = reason or err
    if reason:
        rep.error(line, reason, source)
        return None
    key, level, err = ctx.samples.resolve(row, ctx.key)
    if err:
        rep.error(line, err, source)
        return None
    long_mm, short_mm, caliper = nums["long_axis_mm"], nums["short_axis_mm"], None
    if (long_pts or short_pts) and level != "slice":
        rep.error(
            line,
            "caliper endpoints are drawn on one slice: key the row by sop_instance_uid "
            "(+ frame) or give slice_index with the series",
            source,
        )
        return None
    rows_px, cols_px = ctx.samples.shape[key]
    spacing = ctx.samples.spacing[key]
    for pts in (long_pts, short_pts):
        if pts is None:
            continue
        if rows_px is None or cols_px is None or not spacing or len(spacing) < 2:
            rep.error(
                line, "the slice has no size or pixel_spacing to measure endpoints on", source
            )
            return None
        x1, y1, x2, y2 = pts
        if min(x1, x2) < 0 or min(y1, y2) < 0 or max(x1, x2) > cols_px or max(y1, y2) > rows_px:
            rep.error(
                line,
                f"caliper ({_fmt(x1)}, {_fmt(y1)}) - ({_fmt(x2)}, {_fmt(y2)}) lies outside "
                f"the {cols_px}x{rows_px} image",
                source,
            )
            return None
    # the main caliper measures the long axis, or the short axis when only it is given
    # (RECIST measures lymph nodes by their short axis)
    if long_pts is not None:
        main = "long_axis_mm" if long_mm is not None or short_mm is None else "short_axis_mm"
        stated = long_mm if main == "long_axis_mm" else short_mm
        caliper, err = _check_length(stated, long_pts, spacing, main, ctx.tol_mm, ctx.tol_frac)
        if err:
            rep.error(line, err, source)
            return None
        if main == "long_axis_mm" and long_mm is None:
            long_mm = round(caliper, 2)
    if short_pts is not None:
        short_caliper, err = _check_length(
            short_mm, short_pts, spacing, "short_axis_mm", ctx.tol_mm, ctx.tol_frac
        )
        if err:
            rep.error(line, err, source)
            return None
        if short_mm is None:
            short_mm = round(short_caliper, 2)
    if long_mm is None and short_mm is None:
        rep.error(
            line, "no measurement: give long_axis_mm, short_axis_mm or caliper endpoints", source
        )
        return None
    if long_mm is not None and short_mm is not None and short_mm > long_mm + ctx.tol_mm:
        rep.error(
            line,
            f"short_axis_mm {_fmt(short_mm)} is longer than long_axis_mm {_fmt(long_mm)}",
            source,
        )
        return None
    study = ctx.samples.study_of[key]
    return _Measurement(
        line=line,
        source=source,
        reader=reader,
        key=key,
        level=level,
        lesion_id=lesion,
        long_axis_mm=long_mm,
        short_axis_mm=short_mm,
        caliper_mm=None if caliper is None else round(caliper, 3),
        target=flags["target"],
        site=cell_text(row.get("site")),
        new_lesion=flags["new_lesion"],
        lymph_node=flags["lymph_node"],
        timepoint=timepoint,
        read_at=read_at,
        session=cell_text(row.get("session")),
        tracking_uid=cell_text(row.get("tracking_uid")),
        calipers=[long_pts, short_pts],
        study=study,
        patient=ctx.samples.patient_of_study.get(study),
    )


# --- SR findings as rows ----------------------------------------------------------------


def _flag(texts, yes: tuple[str, ...], no: tuple[str, ...] = ()) -> bool | None:
    joined = " | ".join(t.lower() for t in texts if t)
    if any(n in joined for n in no):
        return False
    if any(y in joined for y in yes):
        return True
    return None


def _sr_rows(finding: SR.SRFinding, reader: str | None, keep_dates: bool, report_: SR.SRReport):
    """The table row an SR measurement group stands for."""
    row = {
        "reader": reader or finding.observer,
        "sop_instance_uid": finding.sop_instance_uid,
        "frame": finding.frame,
        "lesion_id": finding.tracking_id or finding.tracking_uid,
        "tracking_uid": finding.tracking_uid,
        "long_axis_mm": finding.axis_mm("long"),
        "short_axis_mm": finding.axis_mm("short"),
        "site": finding.site,
        "session": finding.session,
    }
    if finding.sop_instance_uid is None and finding.series_instance_uid:
        row["series_instance_uid"] = finding.series_instance_uid
    texts = [finding.finding, *finding.qualitative, *finding.qualitative.values()]
    row["target"] = _flag(texts, ("target",), ("non-target", "nontarget", "non target"))
    row["new_lesion"] = _flag(texts, ("new lesion", "new"))
    row["lymph_node"] = _flag([finding.finding, finding.site], ("lymph node", "node"))
    for axis, names in (
        ("long", ("x1", "y1", "x2", "y2")),
        ("short", ("sx1", "sy1", "sx2", "sy2")),
    ):
        pts = finding.axis_endpoints(axis)
        if pts:
            (row[names[0]], row[names[1]]), (row[names[2]], row[names[3]]) = pts
    if keep_dates and report_.content_datetime is not None:
        row["read_at"] = report_.content_datetime
    return row


# --- timepoints -------------------------------------------------------------------------


def _plan_timepoints(samples: _Samples, given: dict[str, int] | None):
    """{study: (timepoint, days_from_baseline)}, conflicts [(study, given, dated)], rules."""
    given = dict(given or {})
    plan, conflicts = {}, []
    rules = defaultdict(int)
    for patient, studies in samples.studies_of_patient.items():
        studies = sorted(s for s in studies if s is not None)
        dates = {s: samples.study_date.get(s) for s in studies}
        if patient is not None and samples.has_dates and all(dates.values()):
            order = sorted(set(dates.values()))
            rank = {d: i for i, d in enumerate(order)}
            for s in studies:
                tp = rank[dates[s]]
                plan[s] = (tp, (dates[s] - order[0]).days)
                if s in given and given[s] != tp:
                    conflicts.append((s, given[s], tp))
            rules["study_date"] += 1
            continue
        for s in studies:
            if s in given:
                plan[s], rule = (given[s], None), "given"
            elif s in samples.stored_timepoint:
                plan[s], rule = (samples.stored_timepoint[s], None), "kept"
            elif patient is not None and len(studies) == 1:
                plan[s], rule = (0, None), "single study"
            else:
                plan[s], rule = (None, None), "unknown"
            rules[rule] += 1
    return plan, conflicts, dict(rules)


def _write_timepoints(dataset, samples: _Samples, plan: dict) -> None:
    import fiftyone as fo

    for name in (F.TIMEPOINT, *((F.DAYS_FROM_BASELINE,) if samples.has_dates else ())):
        if not dataset.has_field(name):
            dataset.add_sample_field(name, fo.IntField)
    timepoints = [plan.get(samples.study_of[k], (None, None))[0] for k in samples.keys]
    dataset.set_values(F.TIMEPOINT, timepoints)
    if samples.has_dates:
        days = [plan.get(samples.study_of[k], (None, None))[1] for k in samples.keys]
        dataset.set_values(F.DAYS_FROM_BASELINE, days)


def assign_timepoints(
    dataset, timepoints: dict | None = None, *, progress: ProgressFn | None = None
) -> dict:
    """Give every study of every patient a timepoint: baseline 0, then follow-ups.

    Rule, per patient (``patient_key``): when the dataset holds ``study_date`` and every
    study of the patient has one, studies are ranked by date (studies on one day share
    a timepoint) and ``days_from_baseline`` is the days since the first. Otherwise a
    study takes the timepoint given in ``timepoints`` (``{study_instance_uid: int}``),
    else the one it already holds, else 0 when it is the patient's only study, else
    None (unknown). Writes the int fields ``timepoint`` on every sample and
    ``days_from_baseline`` (only when the dataset has study dates), never a date.

    Returns ``{"n_studies", "rules": {rule: n}, "conflicts": [{"study_instance_uid",
    "given", "by_date"}], "studies": {study: {"timepoint", "days_from_baseline"}}}``.
    Given timepoints that disagree with the dates are listed in ``conflicts``; the dates win.
    """
    samples = _Samples(dataset)
    cleaned = {}
    for study, tp in (timepoints or {}).items():
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 0:
            raise MeasurementImportError(f"timepoint of {study}: {tp!r} is not an integer >= 0")
        cleaned[str(study)] = tp
    report(progress, 0.2, "ordering studies")
    plan, conflicts, rules = _plan_timepoints(samples, cleaned)
    _write_timepoints(dataset, samples, plan)
    report(progress, 1.0, f"timepoints of {len(plan)} studies")
    return {
        "n_studies": len(plan),
        "rules": rules,
        "conflicts": [{"study_instance_uid": s, "given": g, "by_date": d} for s, g, d in conflicts],
        "studies": {s: {"timepoint": t, "days_from_baseline": d} for s, (t, d) in plan.items()},
    }


# --- cross-row checks -------------------------------------------------------------------


def _attr(label, name: str):
    """A label's attribute, None when it has none."""
    try:
        return label.get_field(name)
    except (AttributeError, KeyError):
        return None


def _existing(dataset, samples: _Samples, names: set[str]) -> dict[str, dict]:
    """{field: {dicom key: fo.Polylines}} of the fields this import writes, as stored."""
    schema = dataset.get_field_schema()
    out = {}
    for name in names:
        if name in schema:
            values = dataset.values(name)
            out[name] = {k: v for k, v in zip(samples.keys, values, strict=True) if v is not None}
        else:
            out[name] = {}
    return out


def _cross_checks(ctx, rows: list[_Measurement], existing: dict, plan: dict) -> list:
    """Sites, duplicates and baselines; returns the rows that pass, reports the rest."""
    samples, rep = ctx.samples, ctx.rep

    def replaced(m_field, key, poly) -> bool:
        # a stored measurement of a lesion this import measures again in that study
        return (_attr(poly, "lesion_id"), samples.study_of[key]) in ctx.remeasured[m_field]

    # what is already stored (and stays): sites and baselines
    sites: dict[tuple, tuple] = {}  # (reader, patient, lesion) -> (site, where)
    baselines: set[tuple] = set()  # (reader, patient)
    for m_field, values in existing.items():
        for key, polys in values.items():
            study = samples.study_of[key]
            patient = samples.patient_of_study.get(study)
            for poly in polys.polylines or []:
                if replaced(m_field, key, poly):
                    continue
                reader, lesion = _attr(poly, "reader"), _attr(poly, "lesion_id")
                site = _attr(poly, "site")
                if site:
                    where = "already in the dataset"
                    sites.setdefault((reader, patient, lesion), (site, where))
                if plan.get(study, (None,))[0] == 0:
                    baselines.add((reader, patient))

    passed, seen = [], {}
    for m in rows:
        where = f"line {m.line}" if m.source == rep.source else f"{m.source} #{m.line}"
        if m.site:
            known = sites.get((m.reader, m.patient, m.lesion_id))
            if known is not None and known[0].lower() != m.site.lower():
                rep.error(
                    m.line,
                    f"lesion id {m.lesion_id!r} of {m.reader} is at site {known[0]!r} "
                    f"({known[1]}), not {m.site!r}: one lesion id names one lesion; give "
                    "this one its own id",
                    m.source,
                )
                continue
        first = seen.get((m.reader, m.patient, m.lesion_id, m.study))
        if first is not None:
            rep.error(
                m.line,
                f"lesion {m.lesion_id!r} is already measured in this study by {m.reader} "
                f"({first}): one measurement per lesion and timepoint",
                m.source,
            )
            continue
        if m.site:
            sites.setdefault((m.reader, m.patient, m.lesion_id), (m.site, where))
        seen[(m.reader, m.patient, m.lesion_id, m.study)] = where
        passed.append(m)

    for m in passed:
        if plan.get(m.study, (None,))[0] == 0:
            baselines.add((m.reader, m.patient))
    out = []
    for m in passed:
        tp = plan.get(m.study, (None,))[0]
        if tp is not None and tp > 0 and (m.reader, m.patient) not in baselines:
            rep.error(
                m.line,
                f"follow-up (timepoint {tp}) without a baseline: {m.reader} has no "
                "measurement of this patient at timepoint 0",
                m.source,
            )
            continue
        zero = [
            c
            for c, v in (("long_axis_mm", m.long_axis_mm), ("short_axis_mm", m.short_axis_mm))
            if v == 0
        ]
        if zero:
            why = _zero_problem(m, tp)
            if why:
                rep.error(m.line, f"{zero[0]} 0: {why}", m.source)
                continue
        if tp is None:
            rep.warn(
                m.line,
                "timepoint unknown (several studies of this patient, no study dates): give "
                "a timepoint column to tell baseline from follow-up",
                m.source,
            )
        if tp == 0 and m.new_lesion:
            rep.warn(m.line, f"lesion {m.lesion_id!r} is marked new at the baseline", m.source)
        out.append(m)
    return out


def _zero_problem(m: _Measurement, tp: int | None) -> str | None:
    """Why a 0 mm length cannot stand, or None: 0 mm records a baseline lesion that
    disappeared at a follow-up (RECIST: a target's diameter is then recorded as 0)."""
    if tp == 0:
        return "a lesion is measured (> 0 mm) at the baseline; 0 mm is only for a follow-up"
    if tp is None:
        return (
            "0 mm is only for a follow-up, and this study's timepoint is unknown (give a "
            "timepoint column)"
        )
    if m.new_lesion:
        return "a new lesion is one that is seen, so it cannot measure 0 mm"
    return None


def _check_timepoints(ctx, rows: list[_Measurement]) -> tuple[list, dict]:
    """Rows whose ``timepoint`` agrees with the other rows of their study and with the
    study dates; returns (rows, {study: timepoint})."""
    given: dict[str, tuple[int, str]] = {}
    kept = []
    for m in rows:
        if m.timepoint is None:
            kept.append(m)
            continue
        first = given.get(m.study)
        if first is not None and first[0] != m.timepoint:
            ctx.rep.error(
                m.line,
                f"timepoint {m.timepoint} disagrees with timepoint {first[0]} given for this "
                f"study ({first[1]})",
                m.source,
            )
            continue
        given.setdefault(m.study, (m.timepoint, f"line {m.line}"))
        kept.append(m)
    plan, conflicts, _ = _plan_timepoints(ctx.samples, {s: t for s, (t, _) in given.items()})
    dated = {s: d for s, _, d in conflicts}
    out = []
    for m in kept:
        if m.timepoint is not None and m.study in dated:
            ctx.rep.error(
                m.line,
                f"timepoint {m.timepoint} disagrees with the study dates: this study is "
                f"timepoint {dated[m.study]} of the patient by study_date",
                m.source,
            )
            continue
        out.append(m)
    return out, {s: t for s, (t, _) in given.items() if s not in dated}


# --- writing --------------------------------------------------------------------------


def _polyline(m: _Measurement, samples: _Samples, source_attr: str):
    import fiftyone as fo

    rows_px, cols_px = samples.shape[m.key]
    points = []
    for pts in m.calipers:
        if pts is not None:
            x1, y1, x2, y2 = pts
            points.append([(x1 / cols_px, y1 / rows_px), (x2 / cols_px, y2 / rows_px)])
    return fo.Polyline(
        label=m.lesion_id,
        points=points,
        closed=False,
        filled=False,
        reader=m.reader,
        lesion_id=m.lesion_id,
        long_axis_mm=m.long_axis_mm,
        short_axis_mm=m.short_axis_mm,
        caliper_mm=m.caliper_mm,
        target=m.target,
        site=m.site,
        new_lesion=m.new_lesion,
        lymph_node=m.lymph_node,
        level=m.level,
        tracking_uid=m.tracking_uid,
        read_at=m.read_at,
        session=m.session,
        source=source_attr,
    )


def _write(dataset, ctx, rows: list[_Measurement], existing: dict) -> None:
    import fiftyone as fo

    by_field: dict[str, list[_Measurement]] = defaultdict(list)
    for m in rows:
        by_field[F.reader_field(m.reader, KIND)].append(m)
    for name in by_field:
        current = dataset.get_field(name)
        if current is not None and (
            not isinstance(current, fo.EmbeddedDocumentField)
            or current.document_type is not fo.Polylines
        ):
            raise MeasurementImportError(
                f"field {name} already exists as {current}, not Polylines; rename or delete "
                "it before importing measurements into it"
            )
    info = dict(dataset.info or {})
    meta = dict(info.get(F.INFO_KEY, {}))
    registry = {k: dict(v) for k, v in meta.get("readers", {}).items()}
    written = []
    for name, measured in by_field.items():
        stored = existing.get(name, {})
        values: dict[str, object] = {}
        # drop the stored measurements this import replaces, wherever they sat
        for key, polys in stored.items():
            keep = [
                p
                for p in polys.polylines or []
                if (_attr(p, "lesion_id"), ctx.samples.study_of[key]) not in ctx.remeasured[name]
            ]
            if len(keep) != len(polys.polylines or []):
                values[key] = fo.Polylines(polylines=keep)
        for m in measured:
            if m.key not in values:  # stored on this slice, and nothing of it replaced
                kept = stored[m.key].polylines if m.key in stored else None
                values[m.key] = fo.Polylines(polylines=list(kept or []))
            values[m.key].polylines.append(_polyline(m, ctx.samples, m.source))
        values = {k: (v if v.polylines else None) for k, v in values.items()}
        reader = measured[0].reader
        dataset.set_values(name, values, key_field=F.DICOM_KEY, validate=False)
        F.mark_reader_field(dataset, name, reader, KIND, "slice")
        entry = registry.setdefault(reader, {"slug": F.reader_slug(reader), "fields": []})
        entry["fields"] = sorted({*entry.get("fields", []), name})
        written.append(name)
        ctx.rep.fields.append(name)
        ctx.rep.counts[reader] = ctx.rep.counts.get(reader, 0) + len(measured)
        ctx.rep.n_labels += len(measured)
    meta["readers"] = registry
    info[F.INFO_KEY] = meta
    dataset.info = info
    dataset.save()
    if written:
        dataset.add_dynamic_sample_fields(fields=written)


# --- entry point ------------------------------------------------------------------------


@dataclass
class _Ctx:
    rep: MeasurementImportReport
    samples: _Samples
    readers: _ReaderIds
    key: str | None
    tol_mm: float
    tol_frac: float
    remeasured: dict = field(default_factory=lambda: defaultdict(set))


def _sources(source, kind: str) -> list[tuple[str, str]]:
    """[(path, "table" | "sr")] of ``source``: a path, a folder of SR files, or a list."""
    items = source if isinstance(source, (list, tuple, set)) else [source]
    out = []
    for item in items:
        path = os.path.abspath(os.fspath(item))
        if os.path.isdir(path):
            if kind == "table":
                raise MeasurementImportError(f"{path} is a folder, not a table")
            out.extend((p, "sr") for p in SR.sr_paths(path))
        elif not os.path.isfile(path):
            raise MeasurementImportError(f"no such file or folder: {path}")
        elif kind == "auto":
            out.append((path, "table" if path.lower().endswith(_TABLE_ENDINGS) else "sr"))
        else:
            out.append((path, kind))
    if not out:
        raise MeasurementImportError(f"no files in {source}")
    return out


def import_measurements(
    dataset,
    source,
    *,
    kind: str = "auto",
    reader: str | None = None,
    key: str | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    tolerance_fraction: float = DEFAULT_TOLERANCE_FRACTION,
    progress: ProgressFn | None = None,
) -> MeasurementImportReport:
    """Add RECIST measurements to each reader's ``reader_<id>_measurements`` field.

    ``source``: a table (CSV/TSV/JSON), a DICOM SR measurement report (TID 1500), a
    folder of SR files, or a list of those. ``kind``: ``auto`` (tables by their ending,
    everything else as SR), ``table`` or ``sr``. ``reader``: for a table, fills empty
    reader cells and rejects rows naming someone else; for SR, replaces the observer
    named in the report (e.g. with a pseudonym). ``key``: force one key column
    (``sop_instance_uid``, ``series_instance_uid`` or ``study_instance_uid``).
    ``tolerance_mm`` / ``tolerance_fraction``: a length agrees with its caliper
    endpoints within ``max(tolerance_mm, tolerance_fraction x caliper length)``.

    Also assigns timepoints to every study (:func:`assign_timepoints`), with the
    table's ``timepoint`` column as the given timepoints.

    Returns a :class:`MeasurementImportReport`; raises
    :class:`MeasurementImportError` only when the whole source is unusable.
    """
    kind = str(kind).lower()
    if kind not in KINDS:
        raise MeasurementImportError(f"kind {kind!r}: expected one of {list(KINDS)}")
    if key is not None and key not in KEY_COLUMNS:
        raise MeasurementImportError(f"key {key!r}: expected one of {list(KEY_COLUMNS)}")
    if tolerance_mm < 0 or tolerance_fraction < 0:
        raise MeasurementImportError("tolerances must be >= 0")
    files = _sources(source, kind)
    first = files[0][0] if len(files) == 1 else os.path.commonpath([p for p, _ in files])
    rep = MeasurementImportReport(
        source=first, kind=files[0][1] if len({k for _, k in files}) == 1 else "mixed"
    )
    samples = _Samples(dataset)
    ctx = _Ctx(
        rep=rep,
        samples=samples,
        readers=_ReaderIds(dataset, reader),
        key=key,
        tol_mm=float(tolerance_mm),
        tol_frac=float(tolerance_fraction),
    )
    parsed: list[_Measurement] = []
    for i, (path, file_kind) in enumerate(files):
        report(progress, 0.05 + 0.6 * i / len(files), f"reading {os.path.basename(path)}")
        rep.files.append(path)
        if file_kind == "table":
            rows, columns = read_table(path)
            if key is not None and key not in columns:
                raise MeasurementImportError(f"{path}: missing the key column {key!r}")
            if not any(c in columns for c in KEY_COLUMNS):
                raise MeasurementImportError(
                    f"{path}: missing a key column, one of {list(KEY_COLUMNS)}"
                )
            if "lesion_id" not in columns:
                raise MeasurementImportError(f"{path}: missing the column 'lesion_id'")
            if "reader" not in columns and not cell_text(reader):
                raise MeasurementImportError(f"{path}: no reader column: pass reader=<id>")
            rep.n_rows += len(rows)
            for line, row in rows:
                m = _parse_row(ctx, line, row, path)
                if m is not None:
                    parsed.append(m)
            continue
        try:
            sr_report = SR.read_measurement_report(path)
        except SR.SRReadError as err:
            rep.error(None, str(err), path)
            continue
        for group, problem in sr_report.problems:
            rep.warn(group, problem, path)
        rep.n_rows += len(sr_report.findings)
        for finding in sr_report.findings:
            row = _sr_rows(finding, cell_text(reader), samples.has_dates, sr_report)
            if not cell_text(row["reader"]):
                rep.error(finding.group, "the report names no observer: pass reader=<id>", path)
                continue
            m = _parse_row(ctx, finding.group, row, path, override_reader=True)
            if m is not None:
                parsed.append(m)
    report(progress, 0.7, "checking timepoints, sites and baselines")
    parsed, given = _check_timepoints(ctx, parsed)
    plan, conflicts, rules = _plan_timepoints(samples, given)
    for m in parsed:
        ctx.remeasured[F.reader_field(m.reader, KIND)].add((m.lesion_id, m.study))
    existing = _existing(dataset, samples, set(ctx.remeasured))
    accepted = _cross_checks(ctx, parsed, existing, plan)
    # only what survived replaces stored measurements
    ctx.remeasured = defaultdict(set)
    for m in accepted:
        ctx.remeasured[F.reader_field(m.reader, KIND)].add((m.lesion_id, m.study))
    report(progress, 0.85, "writing measurements")
    _write_timepoints(dataset, samples, plan)
    if accepted:
        _write(dataset, ctx, accepted, existing)
    rep.timepoints = {
        "n_studies": len(plan),
        "rules": rules,
        "given": len(given),
    }
    report(progress, 1.0, f"{rep.n_labels} measurements, {len(rep.errors)} rows rejected")
    return rep
