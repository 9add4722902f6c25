"""Reader labels into FiftyOne: one field per radiologist, never fused.

Sources: CSV/JSON class reads, boxes in pixels, mask manifests (PNG/NPY), DICOM-SEG and
RTSTRUCT. Every label records who read it, when, in which session and from which file.
A reader who did not read a sample leaves the field empty on it: missing is never
negative. Bad rows are reported by line number and nothing else is dropped. Each field
is written with one bulk ``set_values``; another reader's field is never touched.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from . import fields as F
from . import schema as S
from .progress import ProgressFn, report

KINDS = ("auto", "classification", "boxes", "masks", "seg", "rtstruct")
_KEY_COLUMNS = ("sop_instance_uid", "series_instance_uid", "filepath", "path")


class LabelImportError(ValueError):
    """The whole source cannot be used (missing column, unreadable file, no reader)."""


@dataclass
class LabelImportReport:
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
    """Lookups from every kind of key to the dataset's ``dicom_key`` values."""

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
        self.by_sop = defaultdict(list)
        self.by_sop_frame = {}
        self.by_series = defaultdict(list)
        self.by_path = defaultdict(list)
        self.shape = {}
        self.geometry = {}
        self.by_frame_of_reference = defaultdict(list)
        for i, key in enumerate(self.keys):
            sop, frame = cols[F.SOP_UID][i], cols[F.FRAME_INDEX][i] or 0
            self.by_sop[sop].append(key)
            self.by_sop_frame[(sop, int(frame))] = key
            self.by_series[cols[F.SERIES_UID][i]].append(key)
            for p in (cols[F.DICOM_PATH][i], cols["filepath"][i]):
                if p:
                    self.by_path[os.path.abspath(p)].append(key)
            self.shape[key] = (cols[F.ROWS][i], cols[F.COLUMNS][i])
            self.by_frame_of_reference[cols[F.FRAME_OF_REFERENCE][i]].append(key)
            self.geometry[key] = (
                cols[F.IMAGE_POSITION][i],
                cols[F.IMAGE_ORIENTATION][i],
                cols[F.PIXEL_SPACING][i],
            )

    def resolve(self, row: dict, base_dir: str) -> tuple[list[str], str, str | None]:
        """(keys, level, error) for a table row."""
        frame = _text(row.get("frame"))
        if _text(row.get("sop_instance_uid")):
            sop = _text(row["sop_instance_uid"])
            if sop not in self.by_sop:
                return [], "slice", f"unknown sop_instance_uid {sop!r} (not in the dataset)"
            if frame is not None:
                try:
                    key = self.by_sop_frame.get((sop, int(float(frame))))
                except ValueError:
                    return [], "slice", f"frame {frame!r} is not an integer"
                if key is None:
                    return [], "slice", f"frame {frame} does not exist in {sop}"
                return [key], "slice", None
            return list(self.by_sop[sop]), "slice", None
        if _text(row.get("series_instance_uid")):
            uid = _text(row["series_instance_uid"])
            if uid not in self.by_series:
                return [], "series", f"unknown series_instance_uid {uid!r} (not in the dataset)"
            return list(self.by_series[uid]), "series", None
        path = _text(row.get("filepath")) or _text(row.get("path"))
        if path:
            full = os.path.abspath(path if os.path.isabs(path) else os.path.join(base_dir, path))
            keys = self.by_path.get(full) or self.by_path.get(os.path.abspath(path))
            if not keys:
                return [], "slice", f"unknown path {path!r} (no sample has it)"
            return list(keys), "slice", None
        return [], "slice", "no key: give sop_instance_uid, series_instance_uid or filepath"


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def _number(row: dict, column: str) -> tuple[float | None, str | None]:
    text = _text(row.get(column))
    if text is None:
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"{column} {text!r} is not a number"
    if not math.isfinite(value):
        return None, f"{column} {text!r} is not a finite number"
    return value, None


def _timestamp(row: dict) -> tuple[dt.datetime | None, str | None]:
    text = _text(row.get("timestamp"))
    if text is None:
        return None, None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, f"timestamp {text!r} is not ISO 8601 (e.g. 2026-03-01T09:30:00)"
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp, None


# --- tables -------------------------------------------------------------------------


def read_table(path: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """Rows of a CSV (line numbers as an editor shows them) or JSON (list position + 1)."""
    if path.lower().endswith(".json"):
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise LabelImportError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err
        if isinstance(data, dict):
            data = data.get("reads", data.get("labels"))
        if not isinstance(data, list):
            raise LabelImportError(f"{path}: expected a list of objects, or {{'reads': [...]}}")
        rows, columns = [], set()
        for i, item in enumerate(data, start=1):
            rows.append((i, item if isinstance(item, dict) else {"__malformed__": repr(item)[:80]}))
            if isinstance(item, dict):
                columns.update(item)
        return rows, sorted(columns)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise LabelImportError(f"{path}: empty file (no header row)")
        columns = [c.strip() for c in reader.fieldnames]
        rows = []
        line = 1
        for raw in reader:
            line = reader.line_num
            row = {(k or "").strip(): v for k, v in raw.items()}
            if None in raw:  # more cells than header columns
                row["__malformed__"] = f"{len(raw[None])} more cells than the header has columns"
            rows.append((line, row))
    return rows, columns


def detect_kind(columns) -> str:
    cols = set(columns)
    if "mask_path" in cols:
        return "masks"
    if {"x", "y", "width", "height"} <= cols:
        return "boxes"
    if "label" in cols:
        return "classification"
    raise LabelImportError(
        f"cannot tell what the table holds from its columns {sorted(cols)}: expected 'label' "
        "(class reads), x/y/width/height (boxes) or mask_path (masks)"
    )


def _require(columns, needed, path):
    missing = [c for c in needed if c not in columns]
    if missing:
        raise LabelImportError(f"{path}: missing required column(s) {missing}")
    if not any(c in columns for c in _KEY_COLUMNS):
        raise LabelImportError(f"{path}: missing a key column, one of {list(_KEY_COLUMNS)}")


# --- entry point --------------------------------------------------------------------


def import_reader_labels(
    dataset,
    source,
    *,
    kind: str = "auto",
    reader: str | None = None,
    mask_dir: str | None = None,
    progress: ProgressFn | None = None,
) -> LabelImportReport:
    """Add each reader's labels from ``source`` to their own ``reader_<id>`` fields.

    Returns a :class:`LabelImportReport`: the fields written, labels per reader and
    every rejected row with its line number and reason.
    """
    source = os.path.abspath(str(source))
    if kind not in KINDS:
        raise LabelImportError(f"kind {kind!r}: expected one of {list(KINDS)}")
    if not os.path.isfile(source):
        raise LabelImportError(f"no such file: {source}")
    if kind == "auto" and not source.lower().endswith((".csv", ".json", ".tsv")):
        kind = _dicom_kind(source)
    index = _Index(dataset)
    label_schema = S.get_label_schema(dataset)
    report(progress, 0.05, f"reading {os.path.basename(source)}")

    if kind in ("seg", "rtstruct"):
        if not reader:
            raise LabelImportError(
                f"{kind.upper()} files do not name their reader: pass reader=<id>"
            )
        from . import dicom_labels

        rep = LabelImportReport(source=source, kind=kind)
        masks, targets = (dicom_labels.read_seg if kind == "seg" else dicom_labels.read_rtstruct)(
            source, index, rep
        )
        values = _mask_values(dataset, reader, masks, source, mask_dir, rep, label_schema)
        _write(
            dataset,
            {F.reader_field(reader, "mask"): (reader, "mask", "slice", values)},
            rep,
            targets,
        )
        report(progress, 1.0, f"{rep.n_labels} masks from {reader}")
        return rep

    rows, columns = read_table(source)
    if kind == "auto":
        kind = detect_kind(columns)
    rep = LabelImportReport(source=source, kind=kind, n_rows=len(rows))
    base = os.path.dirname(source)
    needed = {
        "classification": ["reader", "label"],
        "boxes": ["reader", "label", "x", "y", "width", "height"],
        "masks": ["reader", "mask_path"],
    }[kind]
    _require(columns, needed, source)
    builders = {"classification": _classification_rows, "boxes": _box_rows, "masks": _mask_rows}
    out = builders[kind](rows, index, rep, label_schema, base, dataset, mask_dir, progress)
    _write(dataset, out, rep)
    report(progress, 1.0, f"{rep.n_labels} labels, {len(rep.errors)} rows rejected")
    return rep


def _dicom_kind(path: str) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001
        raise LabelImportError(
            f"{path}: neither a CSV/JSON table nor readable DICOM ({err})"
        ) from err
    modality = str(ds.get("Modality", "")).upper()
    if modality in ("SEG", "RTSTRUCT"):
        return modality.lower()
    raise LabelImportError(
        f"{path}: DICOM with Modality {modality or 'unknown'}, expected SEG or RTSTRUCT"
    )


def _common(row, rep, line):
    """reader, read_at, session; or None after reporting the row."""
    if "__malformed__" in row:
        rep.error(line, f"malformed row: {row['__malformed__']}")
        return None
    reader = _text(row.get("reader"))
    if reader is None:
        rep.error(line, "empty reader id")
        return None
    try:
        F.reader_slug(reader)
    except ValueError as err:
        rep.error(line, str(err))
        return None
    read_at, err = _timestamp(row)
    if err:
        rep.error(line, err)
        return None
    return reader, read_at, _text(row.get("session"))


def _classification_rows(rows, index, rep, label_schema, base, dataset, mask_dir, progress):
    import fiftyone as fo

    out: dict[str, tuple] = {}
    seen: dict[tuple, tuple] = {}
    for n, (line, row) in enumerate(rows):
        common = _common(row, rep, line)
        if common is None:
            continue
        reader, read_at, session = common
        label = _text(row.get("label"))
        if label is None:
            rep.error(line, "empty label")
            continue
        reason = S.check_label(label_schema, label)
        score, err = _number(row, "score")
        reason = reason or err or S.check_score(label_schema, score)
        confidence, err = _number(row, "confidence")
        if err or (confidence is not None and not 0 <= confidence <= 1):
            reason = reason or err or f"confidence {confidence:g} is outside [0, 1]"
        if reason:
            rep.error(line, reason)
            continue
        keys, level, err = index.resolve(row, base)
        if err:
            rep.error(line, err)
            continue
        kind = "series" if level == "series" else "classification"
        name = F.reader_field(reader, kind)
        previous = seen.get((name, keys[0]))
        if previous is not None:
            if previous[1] != label:
                rep.error(
                    line,
                    f"{reader} already read this sample as {previous[1]!r} on line {previous[0]}",
                )
            continue
        for key in keys:
            seen[(name, key)] = (line, label)
        entry = out.setdefault(name, (reader, kind, level, {}))
        for key in keys:
            entry[3][key] = fo.Classification(
                label=label,
                confidence=confidence,
                score=score,
                reader=reader,
                read_at=read_at,
                session=session,
                source=rep.source,
            )
        if n % 2000 == 0:
            report(progress, 0.1 + 0.7 * n / max(len(rows), 1), f"read {n}/{len(rows)} rows")
    return out


def _box_rows(rows, index, rep, label_schema, base, dataset, mask_dir, progress):
    import fiftyone as fo

    out: dict[str, tuple] = {}
    for line, row in rows:
        common = _common(row, rep, line)
        if common is None:
            continue
        reader, read_at, session = common
        label = _text(row.get("label"))
        reason = "empty label" if label is None else S.check_label(label_schema, label)
        coords = {}
        for c in ("x", "y", "width", "height", "confidence"):
            coords[c], err = _number(row, c)
            reason = reason or err
        if reason is None and any(coords[c] is None for c in ("x", "y", "width", "height")):
            reason = "a box needs x, y, width and height"
        if reason is None and (coords["width"] <= 0 or coords["height"] <= 0):
            reason = f"box width and height must be positive (got {coords['width']:g} x {coords['height']:g})"
        if reason:
            rep.error(line, reason)
            continue
        keys, level, err = index.resolve(row, base)
        if err:
            rep.error(line, err)
            continue
        name = F.reader_field(reader, "boxes")
        entry = out.setdefault(name, (reader, "boxes", "slice", {}))
        for key in keys:
            rows_px, cols_px = index.shape[key]
            x, y, w, h = coords["x"], coords["y"], coords["width"], coords["height"]
            if x < 0 or y < 0 or x + w > cols_px or y + h > rows_px:
                rep.error(
                    line,
                    f"box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {cols_px}x{rows_px} image",
                )
                break
            det = fo.Detection(
                label=label,
                bounding_box=[x / cols_px, y / rows_px, w / cols_px, h / rows_px],
                confidence=coords["confidence"],
                reader=reader,
                read_at=read_at,
                session=session,
                source=rep.source,
            )
            entry[3].setdefault(key, fo.Detections(detections=[])).detections.append(det)
    return out


def _load_mask(path: str) -> np.ndarray:
    if path.lower().endswith(".npy"):
        return np.load(path)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _mask_rows(rows, index, rep, label_schema, base, dataset, mask_dir, progress):
    per_reader: dict[str, dict] = defaultdict(dict)
    for line, row in rows:
        common = _common(row, rep, line)
        if common is None:
            continue
        reader, read_at, session = common
        rel = _text(row.get("mask_path"))
        if rel is None:
            rep.error(line, "empty mask_path")
            continue
        path = rel if os.path.isabs(rel) else os.path.join(base, rel)
        keys, level, err = index.resolve(row, base)
        if err:
            rep.error(line, err)
            continue
        if len(keys) != 1:
            rep.error(
                line, "a mask belongs to one frame: give the frame column for multi-frame files"
            )
            continue
        try:
            mask = _load_mask(path)
        except (OSError, ValueError) as err:
            rep.error(line, f"cannot read mask {rel!r}: {err}")
            continue
        if mask.ndim != 2 or tuple(mask.shape) != tuple(index.shape[keys[0]]):
            rep.error(
                line,
                f"mask shape {tuple(mask.shape)} does not match the image {tuple(index.shape[keys[0]])}",
            )
            continue
        if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.bool_):
            rep.error(line, f"mask {rel!r} holds {mask.dtype} values; expected integer labels")
            continue
        reason = S.check_mask_values(label_schema, np.unique(mask))
        if reason:
            rep.error(line, reason)
            continue
        per_reader[reader][keys[0]] = (mask, read_at, session)
    out = {}
    for reader, masks in per_reader.items():
        values = _mask_values(dataset, reader, masks, rep.source, mask_dir, rep, label_schema)
        out[F.reader_field(reader, "mask")] = (reader, "mask", "slice", values)
    return out


def _mask_values(dataset, reader, masks, source, mask_dir, rep, label_schema) -> dict:
    """Write masks as PNGs and build the Segmentation labels."""
    import fiftyone as fo
    from PIL import Image

    from .dicom import media_name
    from .importer import default_render_dir

    folder = mask_dir or os.path.join(default_render_dir(dataset), "masks")
    folder = os.path.join(folder, F.reader_slug(reader))
    os.makedirs(folder, exist_ok=True)
    values = {}
    for key, item in masks.items():
        mask, read_at, session = item if isinstance(item, tuple) else (item, None, None)
        if mask.max(initial=0) > 255 or mask.min(initial=0) < 0:
            rep.error(None, f"mask for {key} has values outside 0..255")
            continue
        path = os.path.join(folder, f"{media_name(key)}.png")
        Image.fromarray(mask.astype(np.uint8)).save(path, compress_level=1)
        values[key] = fo.Segmentation(
            mask_path=path, reader=reader, read_at=read_at, session=session, source=source
        )
    return values


def _write(dataset, out: dict, rep: LabelImportReport, mask_targets: dict | None = None) -> None:
    """One bulk write per field; registry and field metadata updated."""
    info = dict(dataset.info or {})
    meta = dict(info.get(F.INFO_KEY, {}))
    registry = dict(meta.get("readers", {}))
    slugs = {v.get("slug"): k for k, v in registry.items()}
    for name, (reader, kind, level, values) in out.items():
        slug = F.reader_slug(reader)
        other = slugs.get(slug)
        if other is not None and other != reader:
            rep.error(
                None, f"readers {other!r} and {reader!r} both map to field {name}; rename one"
            )
            continue
        if not values:
            continue
        dataset.set_values(name, values, key_field=F.DICOM_KEY)
        F.mark_reader_field(dataset, name, reader, kind, level)
        entry = registry.setdefault(reader, {"slug": slug, "fields": []})
        if name not in entry["fields"]:
            entry["fields"] = sorted([*entry["fields"], name])
        slugs[slug] = reader
        if mask_targets:
            targets = dict(dataset.mask_targets)
            targets[name] = {int(k): v for k, v in mask_targets.items()}
            dataset.mask_targets = targets
        rep.fields.append(name)
        rep.counts[reader] = rep.counts.get(reader, 0) + len(values)
        rep.n_labels += len(values)
    meta["readers"] = registry
    info[F.INFO_KEY] = meta
    dataset.info = info
    dataset.save()
    dataset.add_dynamic_sample_fields()
