"""Reader labels into FiftyOne: one field per radiologist, never fused.

Sources: CSV/JSON class reads, boxes in pixels, mask manifests (PNG/NPY), DICOM-SEG,
RTSTRUCT and 3-D label volumes (NIfTI/NRRD, one file or a manifest). Every label records who read it, when, in which session and from which file,
because agreement statistics later need to separate readers, sessions and sources.

A reader who did not read a sample leaves the field empty on it: missing is never
negative, or every unread slice would count as a "benign" vote. Bad rows are reported
by line number and nothing else is dropped. Each field is written with one bulk
``set_values`` keyed by ``dicom_key``, so only the samples a file covers change, a
re-import replaces (never duplicates) and another reader's field is never touched.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import datetime as dt
import json
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from multireader.core import fields as F
from multireader.core import locks, storage
from multireader.core import schema as S
from multireader.errors import MultireaderError
from multireader.io import source_paths
from multireader.progress import ProgressFn, report

KINDS = ("auto", "classification", "boxes", "masks", "seg", "rtstruct", "volume")
#: spellings accepted for ``kind`` besides :data:`KINDS`
_KIND_ALIASES = {
    "mask": "masks",
    "box": "boxes",
    "class": "classification",
    "classifications": "classification",
    "dicom-seg": "seg",
    "dicom_seg": "seg",
    "rt": "rtstruct",
    "volumes": "volume",
    "nifti": "volume",
    "nrrd": "volume",
}
KEY_COLUMNS = ("sop_instance_uid", "series_instance_uid", "filepath", "path")
_REQUIRED = {
    "classification": ("reader", "label"),
    "boxes": ("reader", "label", "x", "y", "width", "height"),
    "masks": ("reader", "mask_path"),
}


class LabelImportError(MultireaderError):
    """The whole source cannot be used (missing column, unreadable file, no reader)."""


@dataclass
class LabelImportReport:
    """What one import did: fields written, labels per reader, rejected rows and why."""

    source: str
    kind: str
    fields: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    n_rows: int = 0
    n_labels: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def error(self, line, reason: str) -> None:
        self.errors.append({"line": line, "source": self.source, "reason": reason})


# --- the dataset side: keys and geometry, read once in bulk ---------------------------


class _Index:
    """Lookups from every kind of key to the dataset's ``dicom_key`` values.

    Built from one ``dataset.values`` call, so resolving a 100 000-row table costs no
    database round trip per row.
    """

    def __init__(self, dataset):
        schema = dataset.get_field_schema()
        if F.DICOM_KEY not in schema:
            raise LabelImportError("the dataset has no DICOM samples; run import_dicom first")
        names = [
            F.DICOM_KEY,
            F.SOP_UID,
            F.FRAME_INDEX,
            F.SERIES_UID,
            F.DICOM_PATH,
            "filepath",
            F.ROWS,
            F.COLUMNS,
            F.IMAGE_POSITION,
            F.IMAGE_ORIENTATION,
            F.PIXEL_SPACING,
            F.FRAME_OF_REFERENCE,
        ]
        present = [n for n in names if n in schema]
        cols = dict(zip(present, dataset.values(present), strict=True))
        n = len(cols[F.DICOM_KEY])
        for name in names:
            cols.setdefault(name, [None] * n)
        self.keys = cols[F.DICOM_KEY]
        self.filepaths = cols["filepath"]
        self.by_sop = defaultdict(list)
        self.by_sop_frame = {}
        self.by_series = defaultdict(list)
        self.by_path = defaultdict(list)
        self.by_path_frame = {}
        self.shape = {}
        self.geometry = {}
        self.series_of = {}
        self.by_frame_of_reference = defaultdict(list)
        # a stored dicom_path carries no identifier; a table may name the real file
        sources = source_paths.resolve_all(cols[F.DICOM_PATH])
        for i, key in enumerate(self.keys):
            sop, frame = cols[F.SOP_UID][i], int(cols[F.FRAME_INDEX][i] or 0)
            self.by_sop[sop].append(key)
            self.by_sop_frame[(sop, frame)] = key
            self.by_series[cols[F.SERIES_UID][i]].append(key)
            self.series_of[key] = cols[F.SERIES_UID][i]
            for p in {cols[F.DICOM_PATH][i], sources[i], cols["filepath"][i]}:
                if p:
                    full = p if source_paths.is_stored_form(p) else os.path.abspath(p)
                    self.by_path[full].append(key)
                    self.by_path_frame[(full, frame)] = key
            self.shape[key] = (cols[F.ROWS][i], cols[F.COLUMNS][i])
            self.by_frame_of_reference[cols[F.FRAME_OF_REFERENCE][i]].append(key)
            self.geometry[key] = (
                cols[F.IMAGE_POSITION][i],
                cols[F.IMAGE_ORIENTATION][i],
                cols[F.PIXEL_SPACING][i],
            )

    def restricted(self, series_uids) -> _Index:
        """This index with position matching limited to ``series_uids``.

        Two series can share a frame of reference and the same slice planes (a repeat
        scan, a reformat); a SEG or RTSTRUCT that names the series it was drawn on must
        not land on the other one. SOP instance lookups stay global: they are exact.
        """
        wanted = {u for u in series_uids if u in self.by_series}
        if not wanted:
            return self
        sub = copy.copy(self)
        sub.keys = [k for k in self.keys if self.series_of[k] in wanted]
        sub.by_frame_of_reference = {
            uid: [k for k in keys if self.series_of[k] in wanted]
            for uid, keys in self.by_frame_of_reference.items()
        }
        return sub

    def resolve(
        self, row: dict, base_dir: str, key_column: str | None = None
    ) -> tuple[list[str], str, str | None]:
        """(dicom keys, level, error) for a table row.

        Without ``key_column`` the first non-empty key column of the row decides, in
        the order of :data:`KEY_COLUMNS`.
        """
        frame_text = cell_text(row.get("frame"))
        frame = None
        if frame_text is not None:
            try:
                frame = int(float(frame_text))
            except ValueError:
                return [], "slice", f"frame {frame_text!r} is not an integer"
        columns = (key_column,) if key_column else KEY_COLUMNS
        column = next((c for c in columns if cell_text(row.get(c))), None)
        if column is None:
            return [], "slice", f"no key: give {' or '.join(columns)}"
        value = cell_text(row[column])
        if column == "sop_instance_uid":
            if value not in self.by_sop:
                return [], "slice", f"unknown sop_instance_uid {value!r} (not in the dataset)"
            if frame is not None:
                key = self.by_sop_frame.get((value, frame))
                if key is None:
                    return [], "slice", f"frame {frame} does not exist in {value}"
                return [key], "slice", None
            return list(self.by_sop[value]), "slice", None
        if column == "series_instance_uid":
            if value not in self.by_series:
                return [], "series", f"unknown series_instance_uid {value!r} (not in the dataset)"
            return list(self.by_series[value]), "series", None
        candidates = [os.path.abspath(value)]
        if source_paths.is_stored_form(value):
            candidates.insert(0, value)
        elif not os.path.isabs(value):
            candidates.insert(0, os.path.abspath(os.path.join(base_dir, value)))
        for full in candidates:
            if frame is not None and (full, frame) in self.by_path_frame:
                return [self.by_path_frame[(full, frame)]], "slice", None
            if frame is None and full in self.by_path:
                return list(self.by_path[full]), "slice", None
        if frame is not None and any(c in self.by_path for c in candidates):
            return [], "slice", f"frame {frame} does not exist in {value}"
        return [], "slice", f"unknown {column} {value!r} (no sample has it)"


def cell_text(value) -> str | None:
    """A cell as stripped text; None when empty. Whole floats lose their ".0", so a
    JSON rating 4.0 and a CSV "4" name the same class."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def cell_number(row: dict, column: str) -> tuple[float | None, str | None]:
    text = cell_text(row.get(column))
    if text is None:
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"{column} {text!r} is not a number"
    if not math.isfinite(value):
        return None, f"{column} {text!r} is not a finite number"
    return value, None


def parse_timestamp(text: str | None) -> tuple[dt.datetime | None, str | None]:
    """ISO 8601 text -> naive UTC datetime (FiftyOne stores UTC), or an error.

    A timestamp without an offset is taken as written (assumed UTC); one with an
    offset or ``Z`` is converted to UTC, so reads from sites in different time zones
    order correctly.
    """
    text = cell_text(text)
    if text is None:
        return None, None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None, f"timestamp {text!r} is not ISO 8601 (e.g. 2026-03-01T09:30:00)"
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp, None


# --- tables -------------------------------------------------------------------------


def read_table(path: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """Rows of a table with the line number a person would look for.

    CSV/TSV: the line in a text editor (header = line 1; a quoted cell spanning lines
    counts where its row ends). JSON: the position in the list, from 1. A JSON item
    that is not an object, or holds a list/object as a value, is kept as a malformed
    row so it is reported instead of silently skipped.
    """
    if path.lower().endswith(".json"):
        try:
            with open(path, encoding="utf-8-sig") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise LabelImportError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err
        if isinstance(data, dict):
            data = data.get("reads", data.get("labels"))
        if not isinstance(data, list):
            raise LabelImportError(f"{path}: expected a list of objects, or {{'reads': [...]}}")
        rows, columns = [], set()
        for i, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                rows.append((i, {"__malformed__": f"not a JSON object: {repr(item)[:80]}"}))
                continue
            nested = sorted(k for k, v in item.items() if isinstance(v, (list, dict)))
            row = {str(k).strip(): v for k, v in item.items()}
            if nested:
                row["__malformed__"] = f"values of {nested} are lists or objects, not plain values"
            rows.append((i, row))
            columns.update(row)
        columns.discard("__malformed__")
        return rows, sorted(columns)
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if reader.fieldnames is None:
            raise LabelImportError(f"{path}: empty file (no header row)")
        columns = [c.strip() for c in reader.fieldnames]
        rows = []
        for raw in reader:
            row = {(k or "").strip(): v for k, v in raw.items() if k is not None}
            if None in raw:  # more cells than header columns
                row["__malformed__"] = f"{len(raw[None])} more cells than the header has columns"
            rows.append((reader.line_num, row))
    return rows, columns


def detect_kind(columns) -> str:
    """What a table holds, from its columns: masks, boxes or class reads."""
    cols = set(columns)
    if "volume_path" in cols:
        return "volume"
    if "mask_path" in cols:
        return "masks"
    if {"x", "y", "width", "height"} <= cols:
        return "boxes"
    if "label" in cols:
        return "classification"
    raise LabelImportError(
        f"cannot tell what the table holds from its columns {sorted(cols)}: expected 'label' "
        "(class reads), x/y/width/height (boxes), mask_path (masks) or volume_path (3-D "
        "label volumes)"
    )


def _require(columns, kind: str, path: str, reader: str | None, key: str | None) -> None:
    needed = [c for c in _REQUIRED[kind] if not (c == "reader" and reader)]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise LabelImportError(f"{path}: missing required column(s) {missing} for {kind}")
    if key is not None:
        if key not in KEY_COLUMNS:
            raise LabelImportError(f"key {key!r}: expected one of {list(KEY_COLUMNS)}")
        if key not in columns:
            raise LabelImportError(f"{path}: missing the key column {key!r}")
    elif not any(c in columns for c in KEY_COLUMNS):
        raise LabelImportError(f"{path}: missing a key column, one of {list(KEY_COLUMNS)}")


class _Readers:
    """Reader ids seen so far, by slug: two ids that share a field are refused.

    Seeded from the dataset's registry and field metadata, so "Dr A" in today's file
    cannot slip into the field "dr_a" already holds from last week's.
    """

    def __init__(self, dataset, default: str | None):
        self.default = cell_text(default)
        self.by_slug: dict[str, str] = {}
        registry = (dataset.info or {}).get(F.INFO_KEY, {}).get("readers", {})
        for reader, entry in registry.items():
            self.by_slug.setdefault(entry.get("slug") or F.reader_slug(reader), reader)
        for meta in F.reader_fields(dataset).values():
            if meta.get("reader"):
                self.by_slug.setdefault(F.reader_slug(meta["reader"]), meta["reader"])

    def check(self, reader: str | None) -> tuple[str | None, str | None]:
        """(reader id, error) for a row's reader cell."""
        reader = cell_text(reader)
        if reader is None:
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
                f"{F.reader_field(reader)}; rename one"
            )
        return reader, None


# --- entry point --------------------------------------------------------------------


def import_reader_labels(
    dataset,
    source,
    *,
    kind: str = "auto",
    reader: str | None = None,
    key: str | None = None,
    mask_dir: str | None = None,
    series_instance_uid: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> LabelImportReport:
    """Add each reader's labels from ``source`` to their own ``reader_<id>`` fields.

    ``kind``: ``auto`` (from the columns, the file ending or the DICOM Modality),
    ``classification``, ``boxes``, ``masks``, ``seg``, ``rtstruct`` or ``volume``
    (NIfTI/NRRD label volumes or a manifest of them, see :func:`import_volume_labels`,
    which also takes ``series_instance_uid`` and ``overwrite``). ``reader``: required for SEG and
    RTSTRUCT (the files do not say who drew them); for a table it fills empty reader
    cells and rejects rows naming someone else. ``key``: force one key column
    (``sop_instance_uid``, ``series_instance_uid``, ``filepath`` or ``path``) instead
    of taking the first non-empty one per row. ``mask_dir``: where mask PNGs are written
    (default: ``masks/<reader>/`` in the dataset's render folder).

    Returns a :class:`LabelImportReport`: the fields written, labels per reader and
    every rejected row with its line number and reason. Raises
    :class:`LabelImportError` only when the whole source is unusable.
    """
    source = os.path.abspath(str(source))
    kind = _KIND_ALIASES.get(str(kind).lower(), str(kind).lower())
    if kind not in KINDS:
        raise LabelImportError(f"kind {kind!r}: expected one of {list(KINDS)}")
    if kind in ("seg", "rtstruct") and not cell_text(reader):
        raise LabelImportError(f"{kind.upper()} files do not name their reader: pass reader=<id>")
    if not os.path.isfile(source):
        raise LabelImportError(f"no such file: {source}")
    if kind == "auto" and is_volume_path(source):
        kind = "volume"
    if kind == "volume":
        return import_volume_labels(
            dataset,
            source,
            reader=reader,
            series_instance_uid=series_instance_uid,
            overwrite=overwrite,
            mask_dir=mask_dir,
            progress=progress,
        )
    if kind == "auto" and not source.lower().endswith((".csv", ".json", ".tsv")):
        kind = _dicom_kind(source)
        if not cell_text(reader):
            raise LabelImportError(
                f"{kind.upper()} files do not name their reader: pass reader=<id>"
            )
    label_schema = S.get_label_schema(dataset)
    readers = _Readers(dataset, reader)
    report(progress, 0.05, f"reading {os.path.basename(source)}")

    if kind in ("seg", "rtstruct"):
        return _import_dicom_labels(
            dataset, source, kind, readers, _Index(dataset), label_schema, mask_dir, progress
        )

    rows, columns = read_table(source)
    if kind == "auto":
        kind = detect_kind(columns)
    if kind == "volume":  # a manifest of label volumes, found from its columns
        return import_volume_labels(
            dataset,
            source,
            reader=reader,
            series_instance_uid=series_instance_uid,
            overwrite=overwrite,
            mask_dir=mask_dir,
            progress=progress,
        )
    index = _Index(dataset)
    rep = LabelImportReport(source=source, kind=kind, n_rows=len(rows))
    _require(columns, kind, source, readers.default, key)
    ctx = _Context(dataset, index, rep, label_schema, os.path.dirname(source), key, readers)
    builders = {"classification": _classification_rows, "boxes": _box_rows, "masks": _mask_rows}
    out = builders[kind](ctx, rows, mask_dir, progress)
    report(progress, 0.9, "writing labels")
    _write(dataset, out, rep)
    report(progress, 1.0, f"{rep.n_labels} labels, {len(rep.errors)} rows rejected")
    return rep


@dataclass
class _Context:
    dataset: object
    index: _Index
    rep: LabelImportReport
    label_schema: dict | None
    base: str
    key: str | None
    readers: _Readers


def _dicom_kind(path: str) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for non-DICOM
        raise LabelImportError(
            f"{path}: neither a CSV/JSON table nor readable DICOM ({err})"
        ) from err
    modality = str(ds.get("Modality", "")).upper()
    if modality in ("SEG", "RTSTRUCT"):
        return modality.lower()
    raise LabelImportError(
        f"{path}: DICOM with Modality {modality or 'unknown'}, expected SEG or RTSTRUCT"
    )


def _common(ctx: _Context, row: dict, line: int):
    """(reader, read_at, session), or None after reporting the row."""
    if "__malformed__" in row:
        ctx.rep.error(line, f"malformed row: {row['__malformed__']}")
        return None
    reader, err = ctx.readers.check(row.get("reader"))
    if err:
        ctx.rep.error(line, err)
        return None
    read_at, err = parse_timestamp(row.get("timestamp"))
    if err:
        ctx.rep.error(line, err)
        return None
    return reader, read_at, cell_text(row.get("session"))


def _progress_rows(progress, n: int, total: int) -> None:
    if n % 5000 == 0:
        report(progress, 0.1 + 0.75 * n / max(total, 1), f"read {n}/{total} rows")


def _classification_rows(ctx: _Context, rows, mask_dir, progress) -> dict:
    import fiftyone as fo

    out: dict[str, tuple] = {}
    seen: dict[tuple, tuple] = {}  # (field, key) -> (line, label)
    for n, (line, row) in enumerate(rows):
        _progress_rows(progress, n, len(rows))
        common = _common(ctx, row, line)
        if common is None:
            continue
        reader, read_at, session = common
        label = cell_text(row.get("label"))
        if label is None:
            ctx.rep.error(line, "empty label")
            continue
        reason = S.check_label(ctx.label_schema, label)
        score, err = cell_number(row, "score")
        reason = reason or err or S.check_score(ctx.label_schema, score)
        confidence, err = cell_number(row, "confidence")
        if err or (confidence is not None and not 0 <= confidence <= 1):
            reason = reason or err or f"confidence {confidence:g} is outside [0, 1]"
        if reason:
            ctx.rep.error(line, reason)
            continue
        keys, level, err = ctx.index.resolve(row, ctx.base, ctx.key)
        if err:
            ctx.rep.error(line, err)
            continue
        kind = "series" if level == "series" else "classification"
        name = F.reader_field(reader, kind)
        clash = next(
            (seen[(name, k)] for k in keys if (name, k) in seen and seen[(name, k)][1] != label),
            None,
        )
        if clash is not None:
            ctx.rep.error(
                line, f"{reader} already read this sample as {clash[1]!r} on line {clash[0]}"
            )
            continue
        entry = out.setdefault(name, (reader, kind, level, {}))
        for key in keys:
            if (name, key) in seen:
                continue  # the same read twice (same label): the first row stands
            seen[(name, key)] = (line, label)
            entry[3][key] = fo.Classification(
                label=label,
                confidence=confidence,
                score=score,
                reader=reader,
                read_at=read_at,
                session=session,
                source=ctx.rep.source,
            )
    return out


def _one_frame(ctx: _Context, keys: list[str], what: str) -> str | None:
    if len(keys) != 1:
        return (
            f"{what} belongs to one frame, and this key names {len(keys)}: "
            "give the frame column for multi-frame files"
        )
    return None


def _box_rows(ctx: _Context, rows, mask_dir, progress) -> dict:
    import fiftyone as fo

    out: dict[str, tuple] = {}
    for n, (line, row) in enumerate(rows):
        _progress_rows(progress, n, len(rows))
        common = _common(ctx, row, line)
        if common is None:
            continue
        reader, read_at, session = common
        label = cell_text(row.get("label"))
        reason = "empty label" if label is None else S.check_label(ctx.label_schema, label)
        coords = {}
        for c in ("x", "y", "width", "height", "confidence"):
            coords[c], err = cell_number(row, c)
            reason = reason or err
        x, y, w, h = (coords[c] for c in ("x", "y", "width", "height"))
        if reason is None and None in (x, y, w, h):
            reason = "a box needs x, y, width and height"
        if reason is None and (w <= 0 or h <= 0):
            reason = f"box width and height must be positive (got {w:g} x {h:g})"
        conf = coords["confidence"]
        if reason is None and conf is not None and not 0 <= conf <= 1:
            reason = f"confidence {conf:g} is outside [0, 1]"
        if reason:
            ctx.rep.error(line, reason)
            continue
        keys, level, err = ctx.index.resolve(row, ctx.base, ctx.key)
        err = err or (
            "boxes are drawn on images, not series: key them by sop_instance_uid or filepath"
            if level == "series"
            else _one_frame(ctx, keys, "a box")
        )
        if err:
            ctx.rep.error(line, err)
            continue
        (key,) = keys
        rows_px, cols_px = ctx.index.shape[key]
        if x < 0 or y < 0 or x + w > cols_px or y + h > rows_px:
            ctx.rep.error(
                line,
                f"box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {cols_px}x{rows_px} image",
            )
            continue
        det = fo.Detection(
            label=label,
            bounding_box=[x / cols_px, y / rows_px, w / cols_px, h / rows_px],
            confidence=conf,
            reader=reader,
            read_at=read_at,
            session=session,
            source=ctx.rep.source,
        )
        entry = out.setdefault(F.reader_field(reader, "boxes"), (reader, "boxes", "slice", {}))
        entry[3].setdefault(key, fo.Detections(detections=[])).detections.append(det)
    return out


def _load_mask(path: str) -> np.ndarray:
    if path.lower().endswith(".npy"):
        return np.load(path, allow_pickle=False)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _mask_rows(ctx: _Context, rows, mask_dir, progress) -> dict:
    per_reader: dict[str, dict] = defaultdict(dict)
    seen: dict[tuple, int] = {}  # (reader, key) -> line
    for n, (line, row) in enumerate(rows):
        _progress_rows(progress, n, len(rows))
        common = _common(ctx, row, line)
        if common is None:
            continue
        reader, read_at, session = common
        rel = cell_text(row.get("mask_path"))
        if rel is None:
            ctx.rep.error(line, "empty mask_path")
            continue
        path = rel if os.path.isabs(rel) else os.path.join(ctx.base, rel)
        keys, level, err = ctx.index.resolve(row, ctx.base, ctx.key)
        err = err or (
            "a mask is drawn on one image, not a series: key it by sop_instance_uid or filepath"
            if level == "series"
            else _one_frame(ctx, keys, "a mask")
        )
        if err:
            ctx.rep.error(line, err)
            continue
        key = keys[0]
        if (reader, key) in seen:
            ctx.rep.error(
                line, f"{reader} already has a mask for this image on line {seen[(reader, key)]}"
            )
            continue
        try:
            mask = _load_mask(path)
        except (OSError, ValueError) as err:
            ctx.rep.error(line, f"cannot read mask {rel!r}: {err}")
            continue
        expected = tuple(ctx.index.shape[key])
        if mask.ndim != 2 or tuple(mask.shape) != expected:
            ctx.rep.error(
                line,
                f"mask shape {tuple(mask.shape)} does not match the image (rows, columns) "
                f"{expected}",
            )
            continue
        if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
            ctx.rep.error(line, f"mask {rel!r} holds {mask.dtype} values; expected integer labels")
            continue
        values = np.unique(mask)
        if values.size and (values.min() < 0 or values.max() > 255):
            ctx.rep.error(
                line,
                f"mask {rel!r} has values outside 0..255 "
                f"({int(values.min())}..{int(values.max())})",
            )
            continue
        reason = S.check_mask_values(ctx.label_schema, values)
        if reason:
            ctx.rep.error(line, reason)
            continue
        seen[(reader, key)] = line
        per_reader[reader][key] = (mask.astype(np.uint8), read_at, session)
    out = {}
    for reader, masks in per_reader.items():
        values = _mask_values(ctx.dataset, ctx.index, reader, masks, ctx.rep.source, mask_dir)
        out[F.reader_field(reader, "mask")] = (reader, "mask", "slice", values)
    return out


# --- DICOM-SEG and RTSTRUCT ---------------------------------------------------------


def _import_dicom_labels(
    dataset, source, kind, readers, index, label_schema, mask_dir, progress
) -> LabelImportReport:
    import pydicom

    from multireader.io import dicom_labels

    rep = LabelImportReport(source=source, kind=kind)
    reader, err = readers.check(None)
    if err:
        raise LabelImportError(err)
    read = dicom_labels.read_seg if kind == "seg" else dicom_labels.read_rtstruct
    try:
        header = pydicom.dcmread(source, stop_before_pixels=True)
        masks, file_targets = read(source, index.restricted(_referenced_series(header)), rep)
    except LabelImportError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken file is reported, never a traceback
        raise LabelImportError(f"{source}: cannot read {kind.upper()}: {err}") from err
    if kind == "seg":
        rep.n_rows = int(header.get("NumberOfFrames", 1) or 1)
    else:
        rep.n_rows = sum(
            len(r.get("ContourSequence") or []) for r in header.get("ROIContourSequence") or []
        )
    name = F.reader_field(reader, "mask")
    field_targets = dict(dataset.mask_targets.get(name) or {})
    lut, targets = _target_lut(
        file_targets, field_targets, (label_schema or {}).get("mask_targets"), rep
    )
    remapped = {}
    for key, mask in masks.items():
        mask = lut[mask]
        if mask.any():  # a segment dropped by the schema can leave nothing behind
            remapped[key] = mask
    report(progress, 0.6, f"writing {len(remapped)} masks")
    values = _mask_values(dataset, index, reader, remapped, source, mask_dir)
    _write(dataset, {name: (reader, "mask", "slice", values)}, rep, targets)
    report(progress, 1.0, f"{rep.n_labels} masks from {reader}")
    return rep


def _referenced_series(ds) -> set[str]:
    """Series a SEG (ReferencedSeriesSequence) or RTSTRUCT (the RT referenced series
    under ReferencedFrameOfReferenceSequence) says it was drawn on."""
    found = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence") or []}
    for ref in ds.get("ReferencedFrameOfReferenceSequence") or []:
        for study in ref.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                found.add(str(series.SeriesInstanceUID))
    return {uid for uid in found if uid}


def _target_lut(file_targets: dict, field_targets: dict, schema_targets, rep):
    """Map a file's own mask values onto the field's values, by class name.

    A SEG numbers segments from 1 in its own order, so "lesion" may be 1 in one reader's
    file and 2 in another's. Names are what readers agree on: with declared mask
    targets, each name takes the declared value and an undeclared name is reported and
    left out; without them, names keep the value the field already uses, and new names
    take the next free value, so earlier masks in the field keep their meaning.
    """
    lut = np.zeros(256, np.uint8)
    if schema_targets:
        by_name = {v: int(k) for k, v in schema_targets.items()}
        targets = {int(k): v for k, v in schema_targets.items()}
        for value, label in sorted(file_targets.items()):
            if label in by_name:
                lut[value] = by_name[label]
            else:
                rep.error(
                    None,
                    f"segment {value} {label!r} is not in the declared mask targets "
                    f"{sorted(by_name)}; left out",
                )
        return lut, targets
    targets = {int(k): v for k, v in field_targets.items()}
    by_name = {v: k for k, v in targets.items()}
    for value, label in sorted(file_targets.items()):
        if label not in by_name:
            new = value if value not in targets else max([0, *targets]) + 1
            if new > 255:
                rep.error(None, f"segment {label!r}: no mask value left (255 classes in use)")
                continue
            targets[new], by_name[label] = label, new
        lut[value] = by_name[label]
    return lut, targets


# --- 3-D label volumes (NIfTI, NRRD) --------------------------------------------------

#: file endings read as 3-D label volumes (:func:`multireader.io.volume.load_label_volume`)
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")
_VOLUME_REQUIRED = ("reader", "series_instance_uid", "volume_path")
_MAX_16BIT = 2**16 - 1


def is_volume_path(path) -> bool:
    """Whether ``path`` names a NIfTI or NRRD label volume, by its ending."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


class _SeriesTable:
    """Every slice's key, series and geometry, for the series a source names, from one
    ``dataset.values`` call."""

    NAMES = (
        F.DICOM_KEY,
        F.SERIES_UID,
        F.SLICE_INDEX,
        F.IMAGE_POSITION,
        F.IMAGE_ORIENTATION,
        F.PIXEL_SPACING,
        F.ROWS,
        F.COLUMNS,
        "slice_thickness",
    )

    def __init__(self, dataset, series_uids):
        from fiftyone import ViewField as VF

        schema = dataset.get_field_schema()
        if F.DICOM_KEY not in schema or F.SERIES_UID not in schema:
            raise LabelImportError("the dataset has no DICOM samples; run import_dicom first")
        present = [n for n in self.NAMES if n in schema]
        view = dataset.match(VF(F.SERIES_UID).is_in(sorted(series_uids)))
        cols = dict(zip(present, view.values(present), strict=True))
        n = len(cols[F.DICOM_KEY])
        self.cols = {name: cols.get(name, [None] * n) for name in self.NAMES}
        # the dataset's render folder, as the other mask imports find it (_default_mask_dir)
        self.filepaths = dataset.limit(1000).values("filepath")
        self.by_series: dict[str, list[int]] = defaultdict(list)
        for i, uid in enumerate(self.cols[F.SERIES_UID]):
            self.by_series[uid].append(i)
        self._geometry: dict[str, tuple] = {}

    def geometry(self, uid: str):
        """(SeriesGeometry, dicom key of each slice in slice order); raises VolumeError."""
        if uid not in self._geometry:
            self._geometry[uid] = self._build(uid)
        return self._geometry[uid]

    def _build(self, uid: str):
        from multireader.io import volume as V

        members = self.by_series[uid]
        col = {name: [self.cols[name][i] for i in members] for name in self.NAMES}
        thickness = next((t for t in col["slice_thickness"] if t), None)
        geometry = V.series_geometry(
            col[F.IMAGE_POSITION],
            col[F.IMAGE_ORIENTATION],
            col[F.PIXEL_SPACING],
            col[F.ROWS],
            col[F.COLUMNS],
            fallback_thickness=thickness,
            slice_ids=col[F.DICOM_KEY],
        )
        keys = [col[F.DICOM_KEY][i] for i in geometry.order]
        indexes = [col[F.SLICE_INDEX][i] for i in geometry.order]
        if any(v is not None for v in indexes) and indexes != list(range(len(keys))):
            k = next(k for k, v in enumerate(indexes) if v != k)
            raise V.VolumeGeometryError(
                f"the dataset's slice_index disagrees with the slice positions (slice {k} "
                f"along the normal has slice_index {indexes[k]}); re-run import_dicom"
            )
        return geometry, keys


def import_volume_labels(
    dataset,
    source,
    *,
    reader: str | None = None,
    series_instance_uid: str | None = None,
    timestamp: str | None = None,
    session: str | None = None,
    overwrite: bool = False,
    mask_dir: str | None = None,
    progress: ProgressFn | None = None,
) -> LabelImportReport:
    """Import readers' 3-D label volumes (NIfTI ``.nii``/``.nii.gz``, NRRD
    ``.nrrd``/``.nhdr``) as per-slice masks in ``reader_<id>_mask``.

    ``source`` is either one volume file (then ``reader`` and ``series_instance_uid``
    say whose it is and which series it was drawn on; ``timestamp`` and ``session`` are
    its provenance) or a CSV/JSON manifest with columns ``reader``,
    ``series_instance_uid``, ``volume_path`` (relative to the manifest's folder) and
    optional ``timestamp``, ``session`` (the ``reader``, ``series_instance_uid``,
    ``timestamp`` and ``session`` arguments fill empty cells or missing columns; a row
    naming another reader than ``reader`` is refused).

    Each volume must lie exactly on its series' voxel grid (built from the samples'
    geometry, :func:`multireader.io.volume.load_label_volume`); nothing is resampled.
    Every slice of the series then gets one mask PNG (8-bit, or 16-bit when a label
    exceeds 255; label values kept as they are, they are the reader's lesion instances)
    and a ``fo.Segmentation`` with ``reader``, ``read_at``, ``session``, ``source`` (the
    volume file), ``source_kind="volume"``, ``volume_format`` and ``label_values`` (the
    volume's labels > 0). A reader who drew a volume read the whole series, so slices
    without labels get an empty mask, not a missing one.

    A row is refused, with its line and reason in the report and nothing written for it
    (no file, no field value), when its series is unknown, its file is missing or not a
    label map, its geometry does not match the series (the VolumeGeometryError message,
    naming the axis and the amount), its values break declared ``mask_targets``, or the
    reader's field already holds masks on that series and ``overwrite`` is False:
    existing reader labels are never replaced silently. With ``overwrite=True`` that
    reader's masks on the whole series are replaced. All accepted rows are written with
    one bulk ``set_values`` per field. Raises :class:`LabelImportError` only when the
    whole source is unusable.
    """
    from multireader.io import volume as V

    source = os.path.abspath(str(source))
    if not os.path.isfile(source):
        raise LabelImportError(f"no such file: {source}")
    if is_volume_path(source):
        if not cell_text(reader) or not cell_text(series_instance_uid):
            raise LabelImportError(
                f"{os.path.basename(source)}: a label volume does not say whose it is or which "
                "series it was drawn on: pass reader=<id> and series_instance_uid=<uid>"
            )
        rows = [
            (
                None,
                {
                    "reader": reader,
                    "series_instance_uid": series_instance_uid,
                    "volume_path": source,
                    "timestamp": timestamp,
                    "session": session,
                },
            )
        ]
    else:
        rows, columns = read_table(source)
        given = {"reader": cell_text(reader), "series_instance_uid": cell_text(series_instance_uid)}
        needed = [c for c in _VOLUME_REQUIRED if not given.get(c)]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise LabelImportError(
                f"{source}: missing required column(s) {missing} for 3-D label volumes"
            )
        for _, row in rows:
            defaults = (
                ("series_instance_uid", series_instance_uid),
                ("timestamp", timestamp),
                ("session", session),
            )
            for column, default in defaults:
                if cell_text(row.get(column)) is None and default is not None:
                    row[column] = default
    rep = LabelImportReport(source=source, kind="volume", n_rows=len(rows))
    uids = {cell_text(row.get("series_instance_uid")) for _, row in rows}
    table = _SeriesTable(dataset, uids - {None})
    readers = _Readers(dataset, reader)
    label_schema = S.get_label_schema(dataset)
    ctx = _Context(dataset, None, rep, label_schema, os.path.dirname(source), None, readers)
    folder_root = mask_dir or _default_mask_dir(dataset, table)
    existing: dict[str, set] = {}  # field -> series with masks in it already
    done: dict[tuple, object] = {}  # (field, series) -> line of the row that took it
    out: dict[str, tuple] = {}
    created: list[str] = []  # new files, removed again if the final write fails
    report(progress, 0.05, f"{len(rows)} label volume(s)")
    for n, (line, row) in enumerate(rows):
        report(progress, 0.05 + 0.8 * n / max(len(rows), 1), f"volume {n + 1}/{len(rows)}")
        common = _common(ctx, row, line)
        if common is None:
            continue
        who, read_at, sess = common
        uid, rel = cell_text(row.get("series_instance_uid")), cell_text(row.get("volume_path"))
        if uid is None or rel is None:
            rep.error(line, f"empty {'series_instance_uid' if uid is None else 'volume_path'}")
            continue
        path = os.path.abspath(rel if os.path.isabs(rel) else os.path.join(ctx.base, rel))
        where = f"{rel if line is not None else os.path.basename(path)} (series {uid})"
        name = F.reader_field(who, "mask")
        reason = _volume_row_problem(dataset, table, name, uid, path, overwrite, existing)
        if reason is None and (name, uid) in done:
            reason = f"{who} already has a volume for this series on line {done[(name, uid)]}"
        if reason:
            rep.error(line, f"{where}: {reason}")
            continue
        try:
            geometry, keys = table.geometry(uid)
        except V.VolumeError as err:
            rep.error(line, f"{where}: the series is not a regular 3-D volume: {err}")
            continue
        try:
            vol = V.load_label_volume(path, geometry)
        except V.VolumeError as err:
            rep.error(line, f"{where}: {err}")
            continue
        labels = sorted(V.label_instances(vol))
        reason = None
        if labels and labels[-1] > _MAX_16BIT:
            reason = f"label value {labels[-1]} does not fit a 16-bit mask (at most {_MAX_16BIT})"
        reason = reason or S.check_mask_values(label_schema, labels)
        if reason:
            rep.error(line, f"{where}: {reason}")
            continue
        info = {
            "reader": who,
            "read_at": read_at,
            "session": sess,
            "source": path,
            "source_kind": "volume",
            "volume_format": "nifti" if path.lower().endswith((".nii", ".nii.gz")) else "nrrd",
            "label_values": labels,
        }
        folder = os.path.join(folder_root, F.reader_slug(who))
        try:
            values, new = _write_volume_masks(folder, keys, vol, info)
        except OSError as err:
            rep.error(line, f"{where}: cannot write its masks: {err}")
            continue
        created += new
        done[(name, uid)] = line if line is not None else "the command line"
        out.setdefault(name, (who, "mask", "slice", {}))[3].update(values)
    report(progress, 0.9, "writing labels")
    try:
        _write(dataset, out, rep)
    except BaseException:
        for path in created:
            _remove(path)
        raise
    report(progress, 1.0, f"{rep.n_labels} masks, {len(rep.errors)} rows rejected")
    return rep


def _volume_row_problem(dataset, table, name, uid, path, overwrite, existing) -> str | None:
    """Why a volume row cannot be imported, from what is known before reading the file."""
    import fiftyone as fo

    if uid not in table.by_series:
        return f"unknown series_instance_uid {uid!r} (not in the dataset)"
    if not os.path.isfile(path):
        return f"volume file not found: {path}"
    if not is_volume_path(path):
        return f"not a label volume ({', '.join(VOLUME_SUFFIXES)}): {os.path.basename(path)}"
    try:
        _check_field_type(dataset, name, fo.Segmentation())
    except LabelImportError as err:
        return str(err)
    if name not in existing:
        has = dataset.has_field(name)
        existing[name] = set(dataset.exists(name).distinct(F.SERIES_UID)) if has else set()
    if uid in existing[name] and not overwrite:
        return (
            f"{name} already holds masks on this series; existing reader labels are never "
            "replaced silently: pass overwrite=True to replace them"
        )
    return None


def _write_volume_masks(folder: str, keys: list[str], vol: np.ndarray, info: dict):
    """One PNG per slice (8-bit, or 16-bit for labels > 255) and its label.

    Returns (labels by dicom key, files that did not exist before). Every slice is
    first written to a temporary file beside its target and only then renamed into
    place, so a volume that fails half way leaves nothing behind and changes no
    existing mask file.
    """
    import fiftyone as fo
    from PIL import Image

    from multireader.io.dicom import media_name

    dtype = np.uint8 if vol.size == 0 or int(vol.max()) <= 255 else np.uint16
    made_folder = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    staged = []  # (temporary file, final path)
    try:
        for k, key in enumerate(keys):
            path = os.path.join(folder, f"{media_name(key)}.png")
            tmp = f"{path}.{os.getpid()}.tmp"
            staged.append((tmp, path))
            Image.fromarray(np.ascontiguousarray(vol[k], dtype=dtype)).save(
                tmp, format="PNG", compress_level=1
            )
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        if made_folder:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    new = [path for _, path in staged if not os.path.exists(path)]
    for tmp, path in staged:
        os.replace(tmp, path)
    values = {
        key: fo.Segmentation(mask_path=path, **info)
        for key, (_, path) in zip(keys, staged, strict=True)
    }
    return values, new


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


# --- writing ------------------------------------------------------------------------


def _default_mask_dir(dataset, index: _Index) -> str:
    """``masks`` inside the dataset's storage folder (:mod:`multireader.core.storage`):
    where the import put the renders, ``render_dir=`` included."""
    return os.path.join(storage.storage_dir(dataset), "masks")


def _mask_values(dataset, index: _Index, reader: str, masks: dict, source: str, mask_dir) -> dict:
    """Write masks as 8-bit PNGs (one per reader and frame) and build the labels.

    Files are named by a hash of the dicom key, never by patient data, and rewritten
    in place on a re-import, so importing the same file twice leaves one mask each.
    """
    import fiftyone as fo
    from PIL import Image

    from multireader.io.dicom import media_name

    folder = os.path.join(mask_dir or _default_mask_dir(dataset, index), F.reader_slug(reader))
    os.makedirs(folder, exist_ok=True)
    values = {}
    for key, item in masks.items():
        mask, read_at, session = item if isinstance(item, tuple) else (item, None, None)
        path = os.path.join(folder, f"{media_name(key)}.png")
        Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(path, compress_level=1)
        values[key] = fo.Segmentation(
            mask_path=path, reader=reader, read_at=read_at, session=session, source=source
        )
    return values


def _write(dataset, out: dict, rep: LabelImportReport, mask_targets: dict | None = None) -> None:
    """One bulk write per field; field metadata and the reader registry updated.

    Under the dataset's schema lock, from a freshly reloaded dataset: another process
    importing other readers into the same dataset at the same time would otherwise
    write back its copy of the schema and ``info`` over this one's new fields.
    """
    with locks.dataset_lock(dataset, "schema"):
        dataset.reload()
        _write_locked(dataset, out, rep, mask_targets)


def _write_locked(dataset, out: dict, rep: LabelImportReport, mask_targets: dict | None) -> None:
    info = dict(dataset.info or {})
    meta = dict(info.get(F.INFO_KEY, {}))
    registry = {k: dict(v) for k, v in meta.get("readers", {}).items()}
    written = []
    for name, (_, _, _, values) in out.items():  # all checked before anything is written
        if values:
            _check_field_type(dataset, name, next(iter(values.values())))
    for name, (reader, kind, level, values) in out.items():
        if not values:
            continue
        # labels built here are of the right type: per-document validation would only
        # double the cost of a 100 000-read import
        dataset.set_values(name, values, key_field=F.DICOM_KEY, validate=False)
        F.mark_reader_field(dataset, name, reader, kind, level)
        entry = registry.setdefault(reader, {"slug": F.reader_slug(reader), "fields": []})
        entry["fields"] = sorted({*entry.get("fields", []), name})
        if mask_targets:
            targets = dict(dataset.mask_targets)
            targets[name] = {int(k): v for k, v in mask_targets.items()}
            dataset.mask_targets = targets
        written.append(name)
        rep.fields.append(name)
        rep.counts[reader] = rep.counts.get(reader, 0) + len(values)
        rep.n_labels += len(values)
    meta["readers"] = registry
    info[F.INFO_KEY] = meta
    dataset.info = info
    dataset.save()
    if written:
        # provenance attributes (reader, read_at, session, ...) become filterable in the App
        dataset.add_dynamic_sample_fields(fields=written)


def _check_field_type(dataset, name: str, label) -> None:
    """Refuse to write into a same-named field of another type (written by hand)."""
    import fiftyone as fo

    existing = dataset.get_field(name)
    if existing is None:
        return
    doc_type = getattr(existing, "document_type", None)
    if not isinstance(existing, fo.EmbeddedDocumentField) or doc_type is not type(label):
        raise LabelImportError(
            f"field {name} already exists as {existing}, not {type(label).__name__}; "
            "rename or delete it before importing reader labels into it"
        )
