"""Model outputs from files into a prediction field: class probabilities, and masks.

A model run elsewhere leaves a table: one row per image, a key that names the image,
one probability per class. This module matches each row to a sample (by
SOPInstanceUID and frame, by ``dicom_key`` or by path), checks it against the label
schema and stores it in the one prediction format of :mod:`multireader.core.predictions`,
so mistakenness and the model evaluation read it like any other model's output.

Problems with the whole file (no key column, a class the schema does not know, a
schema class the file does not give) raise :class:`PredictionError`. A bad row is
skipped and reported with its line (its position, from 1, in a JSON list) and the
reason, and the other rows are imported; ``strict=True`` refuses the file instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os

import numpy as np

from multireader import __version__
from multireader.core import fields as F
from multireader.core import schema as S
from multireader.core.predictions import (
    PredictionError,
    check_prediction_field,
    distribution_problems,
    mark_prediction_field,
    write_predictions,
)
from multireader.io import source_paths
from multireader.progress import ProgressFn, report

#: columns (or JSON keys) that name the sample, in the order ``key="auto"`` tries them
KEY_COLUMNS = ("sop_instance_uid", "dicom_key", "filepath", "path")
KEYS = ("auto", *KEY_COLUMNS)
#: a class column is named exactly as the class, or with one of these prefixes
CLASS_PREFIXES = ("p_", "prob_")
#: columns that are neither keys nor classes
_NOT_CLASSES = {*KEY_COLUMNS, "frame", ""}
_MAX_LISTED = 10


def import_predictions(
    samples,
    path: str | None,
    field: str = "predictions_imported",
    *,
    key: str = "auto",
    masks: str | None = None,
    mask_field: str | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
) -> dict:
    """Import class probabilities from ``path`` (CSV, TSV or JSON) into ``field``.

    ``key``: the column that names each sample: ``sop_instance_uid`` (with an optional
    ``frame`` column, 0-based, needed for multi-frame files), ``dicom_key``,
    ``filepath`` or ``path`` (a sample's ``filepath`` or ``dicom_path``, absolute or
    relative to the file's folder); ``auto`` takes the first of these the file has.
    ``masks``: an optional manifest (key column and ``mask_path`` to a PNG or NPY of
    integer class values), stored as ``fo.Segmentation`` in ``mask_field`` (default
    ``<field>_mask``); NPY masks are written as PNGs in ``<mask_field>_png/`` beside
    the manifest, since FiftyOne reads masks as images. ``path`` may be None when only
    masks are imported (a segmentation model's output).

    Every sample of ``samples`` is written: those without a prediction get None, never
    a stale earlier one. Returns ``{"imported", "skipped": [{"line", "key", "reason",
    "file"}], "key", "sha256", ...}``. Raises :class:`PredictionError` for a file that
    cannot be used, and with ``strict=True`` for any skipped row (nothing is written).
    """
    import fiftyone as fo

    dataset = samples._dataset
    label_schema = S.get_label_schema(dataset)
    if not label_schema or not label_schema.get("classes"):
        raise PredictionError(
            f"dataset {dataset.name!r} declares no label schema: run declare_label_schema "
            "first (predictions are stored in the order of its classes)"
        )
    classes = list(label_schema["classes"])
    if key not in KEYS:
        raise PredictionError(f"key {key!r}: expected one of {list(KEYS)}")
    if not path and not masks:
        raise PredictionError("give a predictions file, a masks manifest, or both")
    mask_field = (mask_field or f"{field}_mask") if masks else None
    if mask_field == field:
        raise PredictionError(f"the masks need their own field, not {field!r}")
    # refused before any file is read: nothing is ever written into a reader's field
    if path:
        _check_target(dataset, field, fo.Classification)
    if mask_field:
        _check_target(dataset, mask_field, fo.Segmentation)

    index = _SampleIndex(samples)
    probs, skipped, n_imported, n_rows, key_used, sha = None, [], 0, 0, None, None
    if path:
        path = _existing(path, "predictions file")
        report(progress, 0.05, f"reading {os.path.basename(path)}")
        table = _read_probabilities(path, classes)
        n_rows = len(table.rows)
        key_used = _pick_key(key, table.columns, path)
        probs, skipped, n_imported = _match_probabilities(
            table, index, key_used, path, len(classes), progress
        )

    chosen_masks, mask_summary = None, None
    if masks:
        report(progress, 0.6, f"reading masks from {os.path.basename(str(masks))}")
        chosen_masks, mask_skipped, mask_summary = _read_masks(masks, index, key, label_schema)
        skipped += mask_skipped

    if strict and skipped:
        raise PredictionError(
            f"{len(skipped)} row(s) cannot be imported and strict mode is on, so nothing "
            "was written: " + _listing(skipped)
        )
    if path and n_imported == 0:
        raise PredictionError(
            f"{path}: none of its {n_rows} row(s) can be imported: "
            + _listing([s for s in skipped if s["file"] == path])
        )
    if not path and not chosen_masks:
        raise PredictionError(f"{masks}: none of its masks can be imported: {_listing(skipped)}")

    if path:
        report(progress, 0.9, f"writing {n_imported} predictions to {field}")
        sha = _sha256(path)
        parameters = {
            "path": path,
            "sha256": sha,
            "key": key_used,
            "n_rows": n_rows,
            "n_imported": n_imported,
            "n_skipped": sum(s["file"] == path for s in skipped),
            "n_samples": len(index.ids),
            "mask_field": mask_field,
        }
        write_predictions(
            samples, index.ids, field, classes, probs=probs, source="import", parameters=parameters
        )
    result = {
        "field": field if path else None,
        "imported": n_imported,
        "n_rows": n_rows,
        "n_samples": len(index.ids),
        "n_without_prediction": len(index.ids) - n_imported,
        "skipped": sorted(skipped, key=lambda s: (s["file"] != path, s["line"])),
        "key": key_used,
        "path": path,
        "sha256": sha,
        "mask_field": mask_field,
        "masks_imported": 0,
    }
    if chosen_masks is not None:
        report(progress, 0.95, f"writing {mask_summary['n_imported']} masks to {mask_field}")
        png_dir = os.path.join(os.path.dirname(mask_summary["path"]), f"{mask_field}_png")
        samples.set_values(mask_field, _mask_labels(chosen_masks, index.ids, png_dir))
        mark_prediction_field(
            dataset,
            mask_field,
            {
                "role": "prediction",
                "kind": "mask",
                "classes": classes,
                "mask_targets": label_schema.get("mask_targets") or {},
                "source": "import",
                "parameters": {**mask_summary, "predictions_field": field if path else None},
                "n_predicted": mask_summary["n_imported"],
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
                "plugin_version": __version__,
            },
        )
        result["masks_imported"] = mask_summary["n_imported"]
        result["masks_path"] = mask_summary["path"]
        result["masks_key"] = mask_summary["key"]
    result["n_skipped"] = len(result["skipped"])
    report(
        progress,
        1.0,
        f"{n_imported} predictions imported into {field}, {len(skipped)} row(s) skipped",
    )
    return result


# --- checks before anything is read or written ---------------------------------------


def _check_target(dataset, field: str, label_type) -> None:
    """A reader/consensus field is refused; so is a same-named field of another type."""
    import fiftyone as fo

    check_prediction_field(dataset, field)
    existing = dataset.get_field(field)
    if existing is None:
        return
    if (
        not isinstance(existing, fo.EmbeddedDocumentField)
        or existing.document_type is not label_type
    ):
        raise PredictionError(
            f"field {field!r} already exists and does not hold {label_type.__name__} "
            "labels; choose another field name"
        )


def _existing(path, what: str) -> str:
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isfile(path):
        raise PredictionError(f"{what} not found: {path}")
    return path


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pick_key(key: str, columns, path: str) -> str:
    if key != "auto":
        if key not in columns:
            raise PredictionError(f"{path}: no {key!r} column to match samples by")
        return key
    found = next((c for c in KEY_COLUMNS if c in columns), None)
    if found is None:
        raise PredictionError(
            f"{path}: no column names the samples; give one of {list(KEY_COLUMNS)} "
            "(sop_instance_uid with a frame column for multi-frame files)"
        )
    return found


def _listing(skipped: list[dict]) -> str:
    shown = "; ".join(f"{s['where']}: {s['reason']}" for s in skipped[:_MAX_LISTED])
    more = len(skipped) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _cell(value) -> str | None:
    """A cell as stripped text, None when empty; a whole float loses its ".0"."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


# --- the samples: every key looked up from one values() call -------------------------


class _SampleIndex:
    """Sample positions by ``dicom_key``, by (SOP instance, frame) and by path."""

    def __init__(self, samples):
        present = samples.get_field_schema()
        wanted = [
            F.DICOM_KEY,
            F.SOP_UID,
            F.FRAME_INDEX,
            F.DICOM_PATH,
            F.ROWS,
            F.COLUMNS,
        ]
        names = ["id", "filepath", *(n for n in wanted if n in present)]
        if F.ROWS not in present and "metadata" in present:
            names += ["metadata.height", "metadata.width"]
        cols = dict(zip(names, samples.values(names), strict=True))
        self.ids = list(cols["id"])
        n = len(self.ids)
        none = [None] * n
        self.where = "the dataset" if n == len(samples._dataset) else "the view"
        self.by_key = {k: i for i, k in enumerate(cols.get(F.DICOM_KEY, none)) if k}
        self.by_sop: dict[str, list[int]] = {}
        self.by_sop_frame: dict[tuple[str, int], int] = {}
        self.by_path: dict[str, list[int]] = {}
        self.by_path_frame: dict[tuple[str, int], int] = {}
        frames = cols.get(F.FRAME_INDEX, none)
        sops = cols.get(F.SOP_UID, none)
        dicom_paths = cols.get(F.DICOM_PATH, none)
        # a stored dicom_path carries no identifier; a table may name the real file
        sources = source_paths.resolve_all(dicom_paths)
        for i in range(n):
            frame = int(frames[i] or 0)
            if sops[i]:
                self.by_sop.setdefault(sops[i], []).append(i)
                self.by_sop_frame[(sops[i], frame)] = i
            for p in {cols["filepath"][i], dicom_paths[i], sources[i]}:
                if p:
                    full = p if source_paths.is_stored_form(p) else os.path.abspath(p)
                    self.by_path.setdefault(full, []).append(i)
                    self.by_path_frame[(full, frame)] = i
        rows = cols.get(F.ROWS, cols.get("metadata.height", none))
        columns = cols.get(F.COLUMNS, cols.get("metadata.width", none))
        self.shape = list(zip(rows, columns, strict=True))

    def resolve(self, row: dict, key: str, base: str) -> tuple[int | None, str | None, str | None]:
        """``(sample position, key as written, why not)`` for one row."""
        value = _cell(row.get(key))
        if value is None:
            return None, None, f"empty {key}"
        frame = None
        frame_text = _cell(row.get("frame")) if key != "dicom_key" else None
        shown = value if frame_text is None else f"{value} frame {frame_text}"
        if frame_text is not None:
            try:
                frame = int(float(frame_text))
            except ValueError:
                return None, shown, f"frame {frame_text!r} is not an integer"
        if key == "dicom_key":
            if value not in self.by_key:
                return None, shown, f"no sample in {self.where} has dicom_key {value!r}"
            return self.by_key[value], shown, None
        if key == "sop_instance_uid":
            found = self.by_sop.get(value)
            if not found:
                return None, shown, f"no sample in {self.where} has sop_instance_uid {value!r}"
            by_frame = self.by_sop_frame
            target = value
        else:
            full = value if os.path.isabs(value) else os.path.join(base, os.path.expanduser(value))
            target = value if source_paths.is_stored_form(value) else os.path.abspath(full)
            found = self.by_path.get(target)
            if not found:
                return (
                    None,
                    shown,
                    f"no sample in {self.where} has filepath or dicom_path {value!r}",
                )
            by_frame = self.by_path_frame
        if frame is not None:
            i = by_frame.get((target, frame))
            if i is None:
                return None, shown, f"{key} {value!r} has no frame {frame} in {self.where}"
            return i, shown, None
        if len(found) > 1:
            return (
                None,
                shown,
                f"{key} {value!r} names {len(found)} frames: give the frame column (0-based)",
            )
        return found[0], shown, None


# --- the probabilities file ----------------------------------------------------------


class _Table:
    """Rows of a predictions file, each with its probabilities in schema order."""

    def __init__(self, unit: str, columns: set[str]):
        self.unit = unit  # "line" (CSV) or "item" (JSON)
        self.columns = columns
        #: (line or item, the row's cells (None when unreadable), probabilities or the
        #: reason there are none)
        self.rows: list[tuple[int, dict | None, list[float] | str]] = []


def _read_probabilities(path: str, classes: list[str]) -> _Table:
    if path.lower().endswith(".json"):
        return _read_json(path, classes)
    return _read_csv(path, classes)


def _unknown_classes(path: str, unknown: dict[str, str], classes: list[str]) -> PredictionError:
    named = ", ".join(f"class {c!r} ({where})" for c, where in unknown.items())
    verb = "is" if len(unknown) == 1 else "are"
    return PredictionError(
        f"{path}: {named} {verb} not in the label schema; its classes are {classes}"
    )


def _read_csv(path: str, classes: list[str]) -> _Table:
    from multireader.ingest.readers import LabelImportError, read_table

    try:
        rows, columns = read_table(path)
    except (LabelImportError, UnicodeDecodeError, OSError) as err:
        raise PredictionError(f"{path}: cannot read the table: {err}") from err
    column_of: dict[str, str] = {}
    unknown: dict[str, str] = {}
    for col in columns:
        if col in _NOT_CLASSES:
            continue
        name = col
        if col not in classes:
            name = next((col[len(p) :] for p in CLASS_PREFIXES if col.startswith(p)), col)
        if name not in classes:
            unknown[name] = f"column {col!r}"
        elif name in column_of:
            raise PredictionError(
                f"{path}: columns {column_of[name]!r} and {col!r} both give class {name!r}"
            )
        else:
            column_of[name] = col
    if unknown:
        raise _unknown_classes(path, unknown, classes)
    missing = [c for c in classes if c not in column_of]
    if missing:
        raise PredictionError(
            f"{path}: no column gives the schema class(es) {missing}; name a column "
            f"after each class, e.g. {missing[0]!r}, 'p_{missing[0]}' or 'prob_{missing[0]}'"
        )
    table = _Table("line", set(columns))
    for line, row in rows:
        if "__malformed__" in row:
            table.rows.append((line, None, f"malformed row: {row['__malformed__']}"))
            continue
        values, why = [], None
        for c in classes:
            col = column_of[c]
            value, why = _probability(row.get(col), f"column {col!r}")
            if why:
                break
            values.append(value)
        table.rows.append((line, row, why or values))
    return table


def _probability(value, where: str) -> tuple[float | None, str | None]:
    if isinstance(value, bool):
        return None, f"{where}: {value!r} is not a number"
    text = _cell(value) if not isinstance(value, (int, float)) else value
    if text is None:
        return None, f"{where} is empty"
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None, f"{where}: {text!r} is not a number"
    if not math.isfinite(number):
        return None, f"{where}: {text!r} is not a finite number"
    return number, None


def _read_json(path: str, classes: list[str]) -> _Table:
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise PredictionError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err
    except (UnicodeDecodeError, OSError) as err:
        raise PredictionError(f"{path}: cannot read the file: {err}") from err
    if isinstance(data, dict) and "predictions" in data:
        data = data["predictions"]
    if not isinstance(data, list):
        raise PredictionError(
            f"{path}: expected a list of objects, or {{'predictions': [...]}}, each with a "
            "key and 'probabilities': {class: p}"
        )
    items = []
    columns: set[str] = set()
    unknown: dict[str, list[int]] = {}
    given: set[str] = set()
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            items.append((i, None, f"not a JSON object: {repr(item)[:80]}"))
            continue
        columns.update(str(k) for k in item)
        probs = item.get("probabilities")
        if not isinstance(probs, dict):
            items.append((i, item, "no 'probabilities' object ({class: probability})"))
            continue
        for c in probs:
            if c in classes:
                given.add(c)
            else:
                unknown.setdefault(str(c), []).append(i)
        items.append((i, item, probs))
    if unknown:
        described = {}
        for c, where in unknown.items():
            shown = ", ".join(str(n) for n in where[:5]) + (", ..." if len(where) > 5 else "")
            described[c] = f"item{'s' if len(where) > 1 else ''} {shown}"
        raise _unknown_classes(path, described, classes)
    missing = [c for c in classes if c not in given]
    if missing and any(isinstance(p, dict) for _, _, p in items):
        raise PredictionError(
            f"{path}: no item gives a probability for the schema class(es) {missing}"
        )
    table = _Table("item", columns)
    for i, item, probs in items:
        if isinstance(probs, str):
            table.rows.append((i, item, probs))
            continue
        values, why = [], None
        for c in classes:
            if c not in probs:
                why = f"no probability for class {c!r}"
                break
            value, why = _probability(probs[c], f"probability of {c!r}")
            if why:
                break
            values.append(value)
        table.rows.append((i, item, why or values))
    return table


def _match_probabilities(table: _Table, index: _SampleIndex, key: str, path: str, k: int, progress):
    """(probabilities per sample, NaN where none; skipped rows; rows imported)."""
    base = os.path.dirname(path)
    skipped: list[dict] = []

    def skip(pos: int, shown, reason: str) -> None:
        skipped.append(
            {
                "line": pos,
                "key": shown,
                "reason": reason,
                "file": path,
                "where": f"{table.unit} {pos}",
            }
        )

    claimed: dict[int, int] = {}
    pending: list[tuple[int, int, str, list[float]]] = []
    for n, (pos, row, values) in enumerate(table.rows):
        if n % 5000 == 0:
            report(progress, 0.1 + 0.4 * n / max(len(table.rows), 1), f"matched {n} rows")
        if row is None:  # not an object, or a malformed line: no key to read
            skip(pos, None, values)
            continue
        i, shown, why = index.resolve(row, key, base)
        if why:
            skip(pos, shown, why)
            continue
        if i in claimed:
            skip(
                pos,
                shown,
                f"a second prediction for this sample (the first, on {table.unit} "
                f"{claimed[i]}, is kept)",
            )
            continue
        claimed[i] = pos
        if isinstance(values, str):
            skip(pos, shown, values)
            continue
        pending.append((pos, i, shown, values))

    probs = np.full((len(index.ids), k), np.nan)
    matrix = np.array([v for *_, v in pending], dtype=float).reshape(len(pending), k)
    problems: dict[int, str] = {}
    for j, why in distribution_problems(matrix):
        problems.setdefault(j, why)
    imported = 0
    for j, (pos, i, shown, _) in enumerate(pending):
        if j in problems:
            skip(pos, shown, problems[j])
            continue
        probs[i] = matrix[j]
        imported += 1
    return probs, skipped, imported


# --- masks --------------------------------------------------------------------------


def _read_masks(manifest, index: _SampleIndex, key: str, label_schema: dict):
    """(mask path by sample position, skipped rows, provenance) from a mask manifest.

    Every mask is read and checked here; nothing is written until the caller knows the
    whole import goes ahead.
    """
    from multireader.ingest.readers import LabelImportError, read_table

    manifest = _existing(manifest, "mask manifest")
    try:
        rows, columns = read_table(manifest)
    except (LabelImportError, UnicodeDecodeError, OSError) as err:
        raise PredictionError(f"{manifest}: cannot read the manifest: {err}") from err
    if "mask_path" not in columns:
        raise PredictionError(f"{manifest}: no 'mask_path' column")
    key_used = _pick_key(key, columns, manifest)
    unit = "item" if manifest.lower().endswith(".json") else "line"
    base = os.path.dirname(manifest)
    chosen: dict[int, str] = {}
    skipped: list[dict] = []
    claimed: dict[int, int] = {}

    def skip(pos, shown, reason):
        skipped.append(
            {
                "line": pos,
                "key": shown,
                "reason": reason,
                "file": manifest,
                "where": f"{os.path.basename(manifest)} {unit} {pos}",
            }
        )

    for pos, row in rows:
        if "__malformed__" in row:
            skip(pos, None, f"malformed row: {row['__malformed__']}")
            continue
        i, shown, why = index.resolve(row, key_used, base)
        if why:
            skip(pos, shown, why)
            continue
        if i in claimed:
            skip(
                pos,
                shown,
                f"a second mask for this sample (the first, on {unit} {claimed[i]}, is kept)",
            )
            continue
        claimed[i] = pos
        rel = _cell(row.get("mask_path"))
        if rel is None:
            skip(pos, shown, "empty mask_path")
            continue
        mask_path = os.path.abspath(rel if os.path.isabs(rel) else os.path.join(base, rel))
        mask, why = _load_mask(mask_path, rel)
        why = why or _mask_problem(mask, index.shape[i], label_schema)
        if why:
            skip(pos, shown, why)
            continue
        chosen[i] = mask_path
    n_imported = len(chosen)
    if n_imported == 0:
        raise PredictionError(
            f"{manifest}: none of its {len(rows)} row(s) can be imported: " + _listing(skipped)
        )
    summary = {
        "path": manifest,
        "sha256": _sha256(manifest),
        "key": key_used,
        "n_rows": len(rows),
        "n_imported": n_imported,
        "n_skipped": len(skipped),
    }
    return chosen, skipped, summary


def _mask_labels(chosen: dict[int, str], ids: list[str], png_dir: str) -> list:
    """A ``fo.Segmentation`` per sample position (None without a mask).

    FiftyOne reads ``mask_path`` with OpenCV, so a mask that is not a PNG (an NPY) is
    written once as a PNG of the same values, named by the sample id.
    """
    import fiftyone as fo

    values: list = [None] * len(ids)
    for i, mask_path in chosen.items():
        if not mask_path.lower().endswith(".png"):
            mask, _ = _load_mask(mask_path, mask_path)
            mask_path = _write_png(mask, os.path.join(png_dir, f"{ids[i]}.png"))
        values[i] = fo.Segmentation(mask_path=mask_path)
    return values


def _load_mask(path: str, shown: str) -> tuple[np.ndarray | None, str | None]:
    if not os.path.isfile(path):
        return None, f"cannot read mask {shown!r}: no such file"
    try:
        if path.lower().endswith(".npy"):
            return np.load(path, allow_pickle=False), None
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "P":
                return None, (
                    f"mask {shown!r} is a palette PNG; save it as a greyscale PNG of class values"
                )
            return np.asarray(im), None
    except (OSError, ValueError, SyntaxError) as err:
        return None, f"cannot read mask {shown!r}: {err}"


def _mask_problem(mask: np.ndarray, shape, label_schema: dict) -> str | None:
    if mask.ndim != 2:
        return f"mask shape {tuple(mask.shape)} is not a 2-D array of class values"
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        return f"mask holds {mask.dtype} values; expected integer class values"
    if shape[0] is None or shape[1] is None:
        return "the sample has no rows/columns to check the mask's shape against"
    expected = (int(shape[0]), int(shape[1]))
    if tuple(mask.shape) != expected:
        return f"mask shape {tuple(mask.shape)} does not match the image (rows, columns) {expected}"
    found = np.unique(mask)
    if found.size and (found.min() < 0 or found.max() > 65535):
        return f"mask values {int(found.min())}..{int(found.max())} are outside 0..65535"
    return S.check_mask_values(label_schema, found)


def _write_png(mask: np.ndarray, path: str) -> str:
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    dtype = np.uint8 if int(mask.max(initial=0)) <= 255 else np.uint16
    Image.fromarray(np.ascontiguousarray(mask, dtype=dtype)).save(path)
    return path
