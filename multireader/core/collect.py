"""Read the readers' labels out of a FiftyOne view into the arrays the statistics take.

Every read goes through ``values()`` (one aggregation per batch of paths), never a loop
over samples, and nothing here writes: the readers' fields are only ever read. A label
the schema does not know is not silently dropped either: it is treated as a missing read
for the statistics and reported, with its sample and reader, in ``unknown``.

The array conventions are those of :mod:`multireader.stats.agreement`: categorical codes
``(n_items, n_readers)`` with ``-1`` for a missing read, continuous values with NaN.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from multireader.core import fields as F
from multireader.core import schema as S
from multireader.errors import MultireaderError

#: label kinds this module can read, as recorded in each reader field's metadata
CATEGORICAL_KINDS = ("classification", "series")


class ReaderSelectionError(MultireaderError):
    """The requested readers or label kind cannot be analysed on this view."""


@dataclass
class ReaderSet:
    """The reader fields chosen for one analysis, all of one label kind."""

    kind: str
    fields: list[str]
    readers: list[str]
    level: str = "slice"

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "fields": self.fields,
            "readers": self.readers,
            "level": self.level,
        }


@dataclass
class CategoricalReads:
    """Class calls of R readers on n items (samples, or series for series-level reads)."""

    item_ids: list[str]  # sample ids (the first sample of the series for series reads)
    readers: list[str]
    fields: list[str]
    classes: list[str]
    ordered: bool
    codes: np.ndarray  # (n, R) int, -1 missing
    scores: np.ndarray  # (n, R) float, NaN missing (the optional ordinal/continuous score)
    sessions: np.ndarray  # (n, R) int ordered session index, -1 unknown
    session_names: list[str]  # session index -> name, shared by all readers
    groups: np.ndarray | None  # (n,) int patient index, or None
    unknown: list[dict] = field(default_factory=list)
    # sample ids of every item, for series-level reads (all slices of the series)
    members: list[list[str]] | None = None
    # the ``extra`` paths asked for, read in the same pass (per item)
    extra: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def select_readers(
    dataset, kind: str, readers: list[str] | None = None, fields: list[str] | None = None
) -> ReaderSet:
    """The reader fields of one ``kind``, optionally restricted to ``readers`` or ``fields``.

    Raises :class:`ReaderSelectionError` naming what is missing, e.g. a reader with no
    field of this kind.
    """
    all_fields = F.reader_fields(dataset)
    known_kinds = sorted({m["kind"] for m in all_fields.values()})
    if kind not in F.READER_KIND_SUFFIX:
        raise ReaderSelectionError(
            f"unknown label kind {kind!r}; expected one of {sorted(F.READER_KIND_SUFFIX)}"
        )
    of_kind = {n: m for n, m in all_fields.items() if m["kind"] == kind}
    if not of_kind:
        raise ReaderSelectionError(
            f"dataset {dataset.name!r} has no reader fields of kind {kind!r}"
            + (
                f" (it has: {', '.join(known_kinds)})"
                if known_kinds
                else "; import reader labels first"
            )
        )
    if fields:
        missing = [f for f in fields if f not in of_kind]
        if missing:
            raise ReaderSelectionError(
                f"not reader fields of kind {kind!r}: {', '.join(missing)}; "
                f"available: {', '.join(sorted(of_kind))}"
            )
        chosen = {f: of_kind[f] for f in fields}
    elif readers:
        by_reader = {str(m["reader"]): n for n, m in of_kind.items()}
        by_slug = {F.reader_slug(r): n for r, n in by_reader.items()}
        chosen = {}
        missing = []
        for r in readers:
            name = by_reader.get(str(r)) or by_slug.get(F.reader_slug(str(r)))
            if name is None:
                missing.append(str(r))
            else:
                chosen[name] = of_kind[name]
        if missing:
            raise ReaderSelectionError(
                f"no {kind} labels for reader(s) {', '.join(missing)}; readers with {kind} "
                f"labels: {', '.join(sorted(by_reader))}"
            )
    else:
        chosen = dict(sorted(of_kind.items(), key=lambda kv: str(kv[1]["reader"])))
    levels = {m.get("level") or "slice" for m in chosen.values()}
    return ReaderSet(
        kind=kind,
        fields=list(chosen),
        readers=[str(m["reader"]) for m in chosen.values()],
        level="series" if "series" in levels else "slice",
    )


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _order_sessions(names: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Index each read's session in time order (earliest read first, then by name).

    Without a session name a read falls into a weekly window counted from the reader's
    first read, so drift can still be tested on timestamps alone.
    """
    import pandas as pd

    out = np.full(len(names), -1, dtype=np.int64)
    as_text = pd.Series(names, dtype=object)
    has_name = (as_text.notna() & (as_text.astype(str) != "")).to_numpy()
    if has_name.any():
        codes, uniq = pd.factorize(as_text[has_name].astype(str).to_numpy())
        t = times[has_name]
        first = np.full(len(uniq), np.inf)
        np.fmin.at(first, codes, np.where(np.isnan(t), np.inf, t))
        order = sorted(range(len(uniq)), key=lambda c: (first[c], _natural_key(uniq[c])))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        out[has_name] = rank[codes]
        return out, [str(uniq[c]) for c in order]
    timed = ~np.isnan(times)
    if timed.any():
        week = np.floor((times[timed] - times[timed].min()) / (7 * 86400)).astype(np.int64)
        uniq = np.unique(week)
        out[timed] = np.searchsorted(uniq, week)
        return out, [f"week {int(w) + 1}" for w in uniq]
    return out, []


def _epoch(values) -> np.ndarray:
    """Seconds since the epoch of each datetime (naive ones are UTC); NaN otherwise."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce")
    secs = stamps.astype("int64").to_numpy() / 1e9
    return np.where(stamps.isna().to_numpy(), np.nan, secs)


def _take(values: list, keep: np.ndarray, whole: bool) -> list:
    return values if whole else [values[i] for i in keep]


def _group_codes(values: list) -> np.ndarray | None:
    if not values or all(v is None for v in values):
        return None
    uniq: dict = {}
    codes = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        # an item without a patient key is its own group
        key = v if v is not None else ("__item__", i)
        codes[i] = uniq.setdefault(key, len(uniq))
    return codes


def categorical_reads(
    view,
    reader_set: ReaderSet,
    classes: list[str] | None = None,
    *,
    scores: bool = True,
    sessions: bool | str = True,
    extra: list[str] | None = None,
) -> CategoricalReads:
    """The class calls of the chosen readers on every sample of ``view``.

    ``classes`` defaults to the dataset's declared label schema, else to the sorted set
    of labels seen. Series-level reads are collapsed to one item per series.
    ``scores=False`` / ``sessions=False`` skip reading the readers' scores / sessions
    and read times (NaN / -1 then), which a panel that only needs the calls does not
    pay for; ``sessions="names"`` reads the session names but not the read times, and
    orders sessions by name (S2 before S10) instead of by their first read; ``extra`` paths are read in the same pass and returned in ``.extra``.
    """
    import pandas as pd

    if reader_set.kind not in CATEGORICAL_KINDS:
        raise ReaderSelectionError(f"{reader_set.kind} labels are not class calls")
    dataset = view._dataset
    label_schema = S.get_label_schema(dataset)
    ordered = bool(label_schema and label_schema.get("ordered"))
    paths = ["id"]
    for f in reader_set.fields:
        paths.append(f"{f}.label")
        if scores:
            paths.append(f"{f}.score")
        if sessions:
            paths.append(f"{f}.session")
        if sessions is True:
            paths.append(f"{f}.read_at")
    # the view's schema, not the dataset's: a view may have selected fields away
    has_patient = view.has_field(F.PATIENT_KEY)
    has_series = view.has_field(F.SERIES_UID)
    if has_patient:
        paths.append(F.PATIENT_KEY)
    if reader_set.level == "series" and has_series:
        paths.append(F.SERIES_UID)
    extra = list(extra or [])
    paths += [p for p in extra if p not in paths]
    cols = dict(zip(paths, view.values(paths), strict=True))
    ids = cols["id"]

    members = None
    keep = np.arange(len(ids))
    if reader_set.level == "series" and has_series:
        first: dict = {}
        grouped: dict = {}
        for i, s in enumerate(cols[F.SERIES_UID]):
            key = s if s is not None else ("__sample__", i)
            first.setdefault(key, i)
            grouped.setdefault(key, []).append(ids[i])
        keep = np.array(list(first.values()), dtype=np.int64)
        members = list(grouped.values())

    if classes is None:
        if label_schema and label_schema.get("classes"):
            classes = list(label_schema["classes"])
        else:
            seen = set()
            for f in reader_set.fields:
                seen.update(v for v in cols[f"{f}.label"] if v is not None)
            classes = sorted(seen)
    whole = len(keep) == len(ids)

    n, r = len(keep), len(reader_set.fields)
    codes = np.full((n, r), -1, dtype=np.int64)
    score_arr = np.full((n, r), np.nan)
    names = np.empty((n, r), dtype=object)
    times = np.full((n, r), np.nan)
    unknown = []
    item_ids = _take(ids, keep, whole)
    for j, f in enumerate(reader_set.fields):
        labels = _take(cols[f"{f}.label"], keep, whole)
        codes[:, j] = pd.Categorical(labels, categories=classes).codes
        # a label outside the classes: reported, and treated as not read
        for i in np.flatnonzero(codes[:, j] < 0):
            if labels[i] is not None:
                unknown.append(
                    {
                        "sample_id": item_ids[i],
                        "field": f,
                        "reader": reader_set.readers[j],
                        "label": labels[i],
                    }
                )
        if scores:
            sc = _take(cols[f"{f}.score"], keep, whole)
            score_arr[:, j] = [float(v) if isinstance(v, (int, float)) else np.nan for v in sc]
        if sessions:
            names[:, j] = _take(cols[f"{f}.session"], keep, whole)
        if sessions is True:
            times[:, j] = _epoch(_take(cols[f"{f}.read_at"], keep, whole))
    # one session order for all readers (readers usually share names like S1..S6)
    read = codes >= 0
    session_arr = np.full((n, r), -1, dtype=np.int64)
    session_names: list[str] = []
    if sessions:
        session_arr[read], session_names = _order_sessions(names[read], times[read])

    groups = _group_codes(_take(cols[F.PATIENT_KEY], keep, whole)) if has_patient else None
    return CategoricalReads(
        item_ids=item_ids,
        readers=list(reader_set.readers),
        fields=list(reader_set.fields),
        classes=list(classes),
        ordered=ordered,
        codes=codes,
        scores=score_arr,
        sessions=session_arr,
        session_names=session_names,
        groups=groups,
        unknown=unknown,
        members=members,
        extra={p: _take(cols[p], keep, whole) for p in extra},
    )


def load_mask(path: str | None) -> np.ndarray | None:
    """A reader's mask file as booleans (None when that reader drew none on this sample).

    Any pixel above 0 is in the mask. Raises ``FileNotFoundError`` for a path that
    does not exist, so a missing file is never read as an empty mask.
    """
    from PIL import Image

    if path is None:
        return None
    if not os.path.exists(path):
        raise FileNotFoundError(f"mask file {path} does not exist")
    with Image.open(path) as im:
        return np.asarray(im) > 0


@dataclass
class MaskReads:
    """Where each reader's mask of each sample is, plus the pixel spacing."""

    item_ids: list[str]
    readers: list[str]
    fields: list[str]
    paths: list[list[str | None]]  # [reader][sample]
    spacing: list[tuple[float, float]]  # (row_mm, col_mm) per sample; (1, 1) when unknown
    spacing_known: np.ndarray  # bool per sample
    groups: np.ndarray | None


def mask_reads(view, reader_set: ReaderSet) -> MaskReads:
    """Mask paths of the chosen readers on ``view`` (masks are loaded one sample at a time)."""
    if reader_set.kind != "mask":
        raise ReaderSelectionError(f"{reader_set.kind} labels are not masks")
    dataset = view._dataset
    paths = ["id"] + [f"{f}.mask_path" for f in reader_set.fields]
    if dataset.has_field(F.PIXEL_SPACING):
        paths.append(F.PIXEL_SPACING)
    if dataset.has_field(F.PATIENT_KEY):
        paths.append(F.PATIENT_KEY)
    cols = dict(zip(paths, view.values(paths), strict=True))
    spacing, known = [], []
    for s in cols.get(F.PIXEL_SPACING) or [None] * len(cols["id"]):
        ok = isinstance(s, (list, tuple)) and len(s) == 2 and all(v for v in s)
        spacing.append((float(s[0]), float(s[1])) if ok else (1.0, 1.0))
        known.append(ok)
    return MaskReads(
        item_ids=cols["id"],
        readers=list(reader_set.readers),
        fields=list(reader_set.fields),
        paths=[cols[f"{f}.mask_path"] for f in reader_set.fields],
        spacing=spacing,
        spacing_known=np.array(known, dtype=bool),
        groups=_group_codes(cols[F.PATIENT_KEY]) if F.PATIENT_KEY in cols else None,
    )


@dataclass
class BoxReads:
    """Each reader's boxes per sample: ``boxes[reader][sample]`` is (n, 4) or None."""

    item_ids: list[str]
    readers: list[str]
    fields: list[str]
    boxes: list[list[np.ndarray | None]]
    labels: list[list[list[str] | None]]
    scores: list[list[np.ndarray | None]]
    groups: np.ndarray | None


def box_reads(view, reader_set: ReaderSet) -> BoxReads:
    """Boxes (relative ``[x, y, w, h]``), labels and confidences of the chosen readers."""
    if reader_set.kind != "boxes":
        raise ReaderSelectionError(f"{reader_set.kind} labels are not boxes")
    dataset = view._dataset
    paths = ["id"]
    for f in reader_set.fields:
        paths += [
            f"{f}.detections.bounding_box",
            f"{f}.detections.label",
            f"{f}.detections.confidence",
        ]
    if dataset.has_field(F.PATIENT_KEY):
        paths.append(F.PATIENT_KEY)
    cols = dict(zip(paths, view.values(paths), strict=True))
    boxes, labels, scores = [], [], []
    for f in reader_set.fields:
        bb, lb, cf = (
            cols[f"{f}.detections.bounding_box"],
            cols[f"{f}.detections.label"],
            cols[f"{f}.detections.confidence"],
        )
        boxes.append([None if b is None else np.asarray(b, dtype=float).reshape(-1, 4) for b in bb])
        labels.append([None if x is None else list(x) for x in lb])
        scores.append(
            [
                None if c is None else np.array([1.0 if v is None else float(v) for v in c])
                for c in cf
            ]
        )
    return BoxReads(
        item_ids=cols["id"],
        readers=list(reader_set.readers),
        fields=list(reader_set.fields),
        boxes=boxes,
        labels=labels,
        scores=scores,
        groups=_group_codes(cols[F.PATIENT_KEY]) if F.PATIENT_KEY in cols else None,
    )
