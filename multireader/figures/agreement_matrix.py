"""The numbers and views behind the ``agreement_heatmap`` panel, with no App code.

The panel shows pairwise Cohen's kappa between every two readers' class labels on the
App's current view, and turns a clicked cell into a view: off the diagonal, the samples
both readers labelled differently; on the diagonal, the samples that reader labelled.
Everything here is plain FiftyOne core and numpy so it can be tested without a browser;
the Plotly trace and layout are plain dicts for the same reason.

A label outside the dataset's label schema counts as missing in the statistics (see
:func:`multireader.core.collect.categorical_reads`), so the click views only count labels
from the schema's classes: the number a cell shows and the samples it opens agree.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from multireader.core import collect as C
from multireader.errors import MultireaderError
from multireader.stats import agreement as A
from multireader.stats import boxes as B
from multireader.stats import masks as M
from multireader.stats.bootstrap import bootstrap
from multireader.stats.estimates import fmt_ci, fmt_num

#: the label kind the heatmap compares
KIND = "classification"

#: kappa colours: red below chance, white at chance (0), blue towards perfect agreement
KAPPA_COLORSCALE = [
    [0.0, "#b2182b"],
    [0.25, "#ef8a62"],
    [0.5, "#f7f7f7"],
    [0.75, "#67a9cf"],
    [1.0, "#2166ac"],
]


#: agreement scale for statistics between 0 and 1 (percent agreement, Dice, IoU, F1)
UNIT_COLORSCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]


@dataclass(frozen=True)
class Statistic:
    key: str
    label: str  # as the panel names it
    short: str  # for the colour bar and hover
    kind: str  # the reader label kind it compares: classification, mask, boxes
    signed: bool  # chance-corrected (-1..1, diverging scale) or a share (0..1)


#: the statistics the heatmap offers, in the order of its drop-down
STATISTICS = {
    s.key: s
    for s in (
        Statistic("cohen_kappa", "Cohen's kappa", "Cohen's κ", "classification", True),
        Statistic(
            "cohen_kappa_linear", "Weighted kappa (linear)", "κ linear", "classification", True
        ),
        Statistic(
            "cohen_kappa_quadratic",
            "Weighted kappa (quadratic)",
            "κ quadratic",
            "classification",
            True,
        ),
        Statistic("percent_agreement", "Percent agreement", "agreement", "classification", False),
        Statistic("dice", "Dice (masks)", "Dice", "mask", False),
        Statistic("iou", "IoU (masks)", "IoU", "mask", False),
        Statistic("f1", "F1 (boxes)", "box F1", "boxes", False),
    )
}
#: per-sample score the click view of a mask or box cell is sorted by (least agreeing
#: first): the pairwise statistics themselves are only stored per run, not per sample
_SORT_FIELD = {"mask": "mean_pairwise_dice", "boxes": "mean_pairwise_box_f1"}
_ORDINAL_ONLY = ("cohen_kappa_linear", "cohen_kappa_quadratic")


class NoMatrix(MultireaderError):
    """There is nothing to draw for this view; the message says why, for the user, and
    ``action`` names what fixes it: ``"import_reader_labels"``, ``"compute_agreement"``
    or ``"clear_view"`` (None when nothing the panel can run would help)."""

    def __init__(self, message: str, action: str | None = None):
        super().__init__(message)
        self.action = action


@dataclass
class AgreementMatrix:
    """A reader x reader matrix of one agreement statistic on one view.

    ``value``, ``ci_low``, ``ci_high``: (R, R) floats, NaN where undefined; the diagonal
    is not a statistic (the panel shows each reader's label count there). ``n``: (R, R)
    items both readers labelled; its diagonal counts each reader's labels.
    ``n_disagree``: items both labelled differently (class statistics only).
    ``overall``: the all-reader statistics shown under the matrix, each
    ``{"label", "value", "ci", "n"}``. ``source``: where the numbers come from
    (``{"kind": "view"}`` or a stored run: key, time, items, whether it is of this view).
    """

    readers: list[str]
    fields: list[str]
    classes: list[str]
    level: str  # "slice" (one item = one sample) or "series"
    statistic: str
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray
    n_disagree: np.ndarray | None
    n_items: int
    overall: list[dict]
    source: dict
    class_name: str | None = None
    diag: np.ndarray | None = None  # (R,) what the diagonal shows and opens
    ci_level: float = 0.95
    n_boot: int = 0
    unit: str = "sample"

    @property
    def kappa(self) -> np.ndarray:  # the default statistic's name, kept for callers
        return self.value

    def state(self) -> dict:
        """What the panel keeps in its (small) state to answer clicks."""
        return {
            "readers": self.readers,
            "fields": self.fields,
            "classes": self.classes,
            "level": self.level,
            "n_items": self.n_items,
            "statistic": self.statistic,
            "kind": STATISTICS[self.statistic].kind,
            "class_name": self.class_name,
        }


def available_statistics(dataset) -> list[str]:
    """The statistic keys that apply to ``dataset``: class statistics with two or more
    reader class fields (weighted kappa only on an ordinal schema), Dice and IoU with
    two or more reader mask fields, F1 with two or more reader box fields."""
    from multireader.core import fields as F
    from multireader.core import schema as S

    kinds: dict[str, int] = {}
    for meta in F.reader_fields(dataset).values():
        kinds[meta["kind"]] = kinds.get(meta["kind"], 0) + 1
    schema = S.get_label_schema(dataset) or {}
    out = []
    for key, stat in STATISTICS.items():
        if kinds.get(stat.kind, 0) < 2:
            continue
        if key in _ORDINAL_ONLY and not schema.get("ordered"):
            continue
        out.append(key)
    return out


def agreement_matrix(
    view,
    statistic: str = "cohen_kappa",
    class_name: str | None = None,
    *,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
    max_masks: int | None = None,
    max_box_samples: int | None = None,
) -> AgreementMatrix:
    """The reader x reader matrix of ``statistic`` on ``view``.

    Class statistics (Cohen's kappa, Cohen 1960; weighted kappa, Cohen 1968; percent
    agreement) are computed on the view itself, with percentile bootstrap intervals
    over patients where a ``patient_key`` exists (:func:`multireader.stats.agreement.
    categorical_summary`, ``n_boot`` replicates). ``class_name`` compares the readers
    on that class against all others (each label recoded "class" / "not class"): the
    overall line then gives Fleiss' kappa_j for the class (Fleiss 1971) and its
    specific agreement. Mask and box statistics (Dice, IoU, F1) are computed on the view
    too, as 'Compute agreement' defines them (:func:`view_mask_agreement`,
    :func:`view_box_agreement`), with the same bootstrap. Only when that is impossible
    (more than ``max_masks`` masks or ``max_box_samples`` boxed samples to read, or mask
    files missing) do they come from the newest stored agreement run, with
    ``source["reason"]`` saying why.

    Raises :class:`NoMatrix` when the view has no samples, no reader labels of the
    statistic's kind, a single reader, or (masks, boxes) cannot be computed on the view
    and no agreement run has them.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {list(STATISTICS)}")
    kind = STATISTICS[statistic].kind
    what = {"classification": "class labels", "mask": "masks", "boxes": "boxes"}[kind]
    try:
        reader_set = C.select_readers(view, kind)
    except C.ReaderSelectionError as e:
        raise NoMatrix(
            f"This dataset has no reader {what} to compare. Import reader labels "
            "(one field per reader) first.",
            action="import_reader_labels",
        ) from e
    if len(reader_set.fields) < 2:
        raise NoMatrix(
            f"Only one reader ({reader_set.readers[0]}) has {what} here; agreement needs "
            "at least two readers.",
            action="import_reader_labels",
        )
    if view.count() == 0:
        raise NoMatrix(
            "The current view has no samples. Clear or widen the view.", action="clear_view"
        )
    if kind == "classification":
        return _class_matrix(view, reader_set, statistic, class_name, n_boot, level, seed)
    if kind == "mask":
        limit = MAX_VIEW_MASKS if max_masks is None else max_masks
        return _mask_matrix(view, reader_set, statistic, n_boot, level, seed, limit)
    limit = MAX_VIEW_BOX_SAMPLES if max_box_samples is None else max_box_samples
    return _box_matrix(view, reader_set, statistic, n_boot, level, seed, limit)


def _entry(label: str, e: dict | None) -> dict:
    e = e or {}
    return {"label": label, "value": e.get("value"), "ci": e.get("ci"), "n": e.get("n")}


def _nan(m) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in m], float)


def _class_matrix(view, reader_set, statistic, class_name, n_boot, level, seed):
    # the calls and patient keys only: no sample ids, scores or sessions to decode
    reads = C.categorical_reads(view, reader_set, scores=False, sessions=False, ids=False)
    x, classes = reads.codes, reads.classes
    K = max(len(classes), 1)
    ordered = reads.ordered
    if class_name is not None:
        if class_name not in classes:
            raise NoMatrix(f"{class_name!r} is not one of the classes {classes}")
        c = classes.index(class_name)
        x = np.where(x < 0, -1, (x == c).astype(np.int64))
        K, ordered = 2, False
        if statistic in _ORDINAL_ONLY:  # two ordered classes: every weighting is the same
            statistic = "cohen_kappa"
    elif statistic in _ORDINAL_ONLY and not ordered:
        raise NoMatrix(
            "Weighted kappa needs an ordinal label schema (declare the classes as ordered)."
        )
    s = A.categorical_summary(
        x, K, ordinal=ordered, level=level, n_boot=n_boot, seed=seed, groups=reads.groups
    )
    pw = s["pairwise"][statistic]
    read = x >= 0
    differ = np.zeros((x.shape[1], x.shape[1]), dtype=np.int64)
    for a in range(x.shape[1]):
        both = read[:, a : a + 1] & read
        differ[a] = (both & (x[:, a : a + 1] != x)).sum(0)
    ov = s["overall"]
    if class_name is None:
        overall = [_entry("Fleiss' κ", ov["fleiss_kappa"])]
        if ordered:
            overall.append(_entry("Krippendorff's α (ordinal)", ov["krippendorff_alpha_ordinal"]))
        else:
            overall.append(_entry("Krippendorff's α", ov["krippendorff_alpha_nominal"]))
        overall.append(_entry("Gwet's AC1", ov["gwet_ac1"]))
    else:
        overall = [
            _entry(f"Fleiss' κ for {class_name}", ov["fleiss_kappa"]),
            _entry(
                f"specific agreement on {class_name}",
                s["per_class"]["specific_agreement"][1],
            ),
            _entry("Gwet's AC1", ov["gwet_ac1"]),
        ]
    return AgreementMatrix(
        readers=reads.readers,
        fields=reads.fields,
        classes=classes,
        level=reader_set.level,
        statistic=statistic,
        value=_nan(pw["value"]),
        ci_low=_nan(pw["ci_low"]),
        ci_high=_nan(pw["ci_high"]),
        n=np.asarray(pw["n"], dtype=np.int64),
        n_disagree=differ,
        diag=(x == 1).sum(0) if class_name is not None else read.sum(0),
        n_items=reads.n_items,
        overall=overall,
        source={"kind": "view", "n_items_rated": s["n_items"]},
        class_name=class_name,
        ci_level=level,
        n_boot=s["n_boot"],
        unit="patient" if reads.groups is not None else "sample",
    )


# ------------------------------------------------------------------ masks and boxes on the view
#: the most reader masks one refresh reads (on the samples two or more readers
#: segmented, e.g. 500 samples of 4 readers); a view with more shows the stored run
#: instead. Decoding and comparing a 256 x 256 mask takes 0.5-0.8 ms on the shared
#: 2-core machine, so a refresh at the bound stays under 2 s (docs/panels.md, "How fast")
MAX_VIEW_MASKS = 2000
#: the most samples with two or more readers' boxes one refresh matches (about 2 ms a
#: sample of 4 readers: 6 Hungarian matchings)
MAX_VIEW_BOX_SAMPLES = 750
#: IoU two boxes need to match when no stored run chose another ('Compute agreement''s)
DEFAULT_IOU_THRESHOLD = 0.5
#: missing or unreadable files named in a message
_NAMED = 3


@dataclass(frozen=True)
class _Overlap:
    """One sample's pairwise Dice and IoU (R x R, NaN where a reader has no mask)."""

    dice: np.ndarray
    iou: np.ndarray
    mean_dice: float  # mean pairwise Dice over the readers present (NaN if < 2)
    gdice: float  # generalised Dice (NaN if < 2)
    errors: tuple  # ((reader index, reason), ...) masks that could not be read
    problem: str | None = None  # why the sample is left out (masks of different shapes)


class _OverlapCache:
    """A bounded, thread-safe LRU of per-sample results. Mask overlaps are keyed by the
    readers' mask files (path, size, mtime): a refresh on an overlapping view, or IoU
    after Dice, decodes no mask twice, and a file written again gets a new key."""

    def __init__(self, max_entries: int = 50_000):
        self.max_entries = max_entries
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.max_entries:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_OVERLAPS = _OverlapCache()
#: per-sample pairwise box F1 keyed by the IoU threshold and the readers' boxes
_BOX_F1 = _OverlapCache()


def clear_cache() -> None:
    """Forget the per-sample mask overlaps and box F1 kept between refreshes."""
    _OVERLAPS.clear()
    _BOX_F1.clear()


def _sample_overlap(key: tuple) -> _Overlap:
    """Load one sample's masks (``key``: per reader ``(path, size, mtime)`` or None) and
    compare every pair with :func:`multireader.stats.masks.pairwise_overlap`."""
    R = len(key)
    masks, errors = [], []
    for j, k in enumerate(key):
        try:
            masks.append(None if k is None else C.load_mask(k[0]))
        except Exception as e:  # noqa: BLE001 - an unreadable mask is named, never fatal
            masks.append(None)
            errors.append((j, str(e)))
    nan = np.full((R, R), np.nan)
    present = [m for m in masks if m is not None]
    if len(present) < 2:
        return _Overlap(nan, nan, math.nan, math.nan, tuple(errors))
    shapes = {m.shape for m in present}
    if len(shapes) > 1:
        why = f"readers' masks differ in shape: {sorted(shapes)}"
        return _Overlap(nan, nan, math.nan, math.nan, tuple(errors), why)
    try:
        o = M.pairwise_overlap(masks)
    except ValueError as e:  # e.g. a mask that is not 2-D
        return _Overlap(nan, nan, math.nan, math.nan, tuple(errors), str(e))
    dice, iou = _nan(o["dice"]), _nan(o["iou"])
    idx = [j for j, m in enumerate(masks) if m is not None]
    iu = np.triu_indices(len(idx), 1)
    sub = dice[np.ix_(idx, idx)]
    # generalised Dice (Crum et al. 2006) from the pairwise Dice and the mask sizes:
    # 2 sum |A_i n A_j| / sum (|A_i| + |A_j|), with 2 |A_i n A_j| = Dice_ij (|A_i| + |A_j|)
    sizes = np.array([np.count_nonzero(masks[j]) for j in idx], dtype=np.float64)
    pair_sum = (sizes[:, None] + sizes[None, :])[iu]
    den = pair_sum.sum()
    gdice = 1.0 if den == 0 else float((sub[iu] * pair_sum).sum() / den)
    return _Overlap(dice, iou, float(sub[iu].mean()), gdice, tuple(errors))


def _overlaps(keys: list[tuple]) -> list[_Overlap]:
    """The overlaps of each sample's masks, decoding only what is not cached (one thread:
    at 256 x 256 a second one was slower on the 2-core machine, the work holds the GIL)."""
    have = {k: _OVERLAPS.get(k) for k in set(keys)}
    for k, v in have.items():
        if v is None:
            have[k] = _sample_overlap(k)
            _OVERLAPS.put(k, have[k])
    return [have[k] for k in keys]


def _mean_of_sums(sums: np.ndarray) -> np.ndarray:
    """(..., 2) summed (value, count) -> the mean."""
    return sums[..., 0] / np.maximum(sums[..., 1], 1e-12)


def _mean_ci(values: np.ndarray, groups, level: float, n_boot: int, seed: int) -> dict:
    """Mean of the defined per-sample values with its percentile bootstrap CI over
    patients (``groups``) or samples: the stored run's definition, seed for seed."""
    ok = ~np.isnan(values)
    v = values[ok]
    if v.size == 0:
        return {"value": None, "ci": None, "n": 0}
    mean = float(v.mean())
    if n_boot <= 0 or v.size < 2:
        return {"value": mean, "ci": None, "n": int(v.size)}
    r = bootstrap(
        np.column_stack([v, np.ones(v.size)]),
        _mean_of_sums,
        groups=None if groups is None else groups[ok],
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
    ci = [None if math.isnan(x) else float(x) for x in (r.ci_low, r.ci_high)]
    return {"value": mean, "ci": ci, "n": int(v.size)}


def _pairwise_means(per_item: np.ndarray, groups, level: float, n_boot: int, seed: int):
    """(n, R, R) per-sample values -> value, ci_low, ci_high (NaN) and n matrices; the
    pair (a, b) is bootstrapped with seed ``seed + 31 a + b`` as in the stored run."""
    R = per_item.shape[1]
    value, lo, hi = (np.full((R, R), np.nan) for _ in range(3))
    n = np.zeros((R, R), dtype=np.int64)
    for a in range(R):
        for b in range(a + 1, R):
            e = _mean_ci(per_item[:, a, b], groups, level, n_boot, seed + 31 * a + b)
            ci = e["ci"] or [None, None]
            for x, y in ((a, b), (b, a)):
                value[x, y] = np.nan if e["value"] is None else e["value"]
                lo[x, y] = np.nan if ci[0] is None else ci[0]
                hi[x, y] = np.nan if ci[1] is None else ci[1]
                n[x, y] = e["n"]
    return value, lo, hi, n


def _some(items: list[str]) -> str:
    """A few names of a list, for a message."""
    head = ", ".join(str(x) for x in items[:_NAMED])
    return head + (f" and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


def view_mask_agreement(
    view,
    reader_set,
    *,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
    reads: C.MaskReads | None = None,
) -> dict:
    """Pairwise Dice and IoU of the readers' masks on ``view``, as 'Compute agreement'
    (:mod:`multireader.analyses.agreement`) defines them, and the all-reader line.

    Per sample, every reader's mask is loaded (:func:`multireader.core.collect.load_mask`)
    and each pair compared with :func:`multireader.stats.masks.pairwise_overlap` (two
    empty masks agree: 1.0); a reader whose file cannot be read counts as not having
    segmented, and a sample whose masks differ in shape is left out. The pair's statistic
    is the mean over the samples both readers segmented (the sample has two or more
    readable masks), with a percentile bootstrap CI over patients where a
    ``patient_key`` exists (:func:`multireader.stats.bootstrap.bootstrap`, features
    ``(value, 1)`` per sample). The all-reader line: each sample's mean pairwise Dice and
    generalised Dice (Crum et al. 2006), averaged the same way.

    Returns a dict: ``readers``, ``fields``, ``dice`` and ``iou`` (each ``value``,
    ``ci_low``, ``ci_high``, ``n`` arrays), ``overall``, ``diag`` (each reader's masks),
    ``n_items`` (samples of the view), ``n_rated`` (with two or more readable masks),
    ``n_masks``, ``missing`` (paths that do not exist), ``errors`` (unreadable masks,
    samples left out), ``unit``. Files are only decoded when not already compared on an
    earlier call (a cache keyed by path, size and modification time). ``reads``: the
    view's :func:`multireader.core.collect.mask_reads`, when the caller has them.
    """
    reads = C.mask_reads(view, reader_set) if reads is None else reads
    R = len(reads.fields)
    rows = list(zip(*reads.paths, strict=True)) if R else []
    has = np.array([[p is not None for p in row] for row in rows], dtype=bool).reshape(-1, R)
    rated = np.flatnonzero(has.sum(1) >= 2)
    keys, missing = [], []
    for i in rated:
        key = []
        for p in rows[i]:
            if p is None:
                key.append(None)
                continue
            try:
                st = os.stat(p)
            except OSError:
                missing.append(p)
                key.append(None)
                continue
            key.append((p, st.st_size, st.st_mtime_ns))
        keys.append(tuple(key))
    res = _overlaps(keys)
    errors = []
    for i, o in zip(rated, res, strict=True):
        for j, why in o.errors:
            errors.append({"sample_id": reads.item_ids[i], "field": reads.fields[j], "reason": why})
        if o.problem:
            errors.append({"sample_id": reads.item_ids[i], "field": None, "reason": o.problem})
    n = len(res)
    dice = np.stack([o.dice for o in res]) if n else np.zeros((0, R, R))
    iou = np.stack([o.iou for o in res]) if n else np.zeros((0, R, R))
    groups = None if reads.groups is None else reads.groups[rated]
    out = {}
    for name, per in (("dice", dice), ("iou", iou)):
        v, lo, hi, k = _pairwise_means(per, groups, level, n_boot, seed)
        out[name] = {"value": v, "ci_low": lo, "ci_high": hi, "n": k}
    mean_dice = np.array([o.mean_dice for o in res], dtype=np.float64)
    gdice = np.array([o.gdice for o in res], dtype=np.float64)
    return {
        "readers": list(reads.readers),
        "fields": list(reads.fields),
        **out,
        "overall": {
            "mean_pairwise_dice": _mean_ci(mean_dice, groups, level, n_boot, seed),
            "generalized_dice": _mean_ci(gdice, groups, level, n_boot, seed),
        },
        "diag": has.sum(0).astype(np.int64),
        "n_items": len(rows),
        "n_rated": int((~np.isnan(mean_dice)).sum()),
        "n_masks": int(has[rated].sum()),
        "missing": missing,
        "errors": errors,
        "unit": "patient" if reads.groups is not None else "sample",
    }


def view_box_agreement(
    view,
    reader_set,
    *,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Pairwise box F1 on ``view``, as 'Compute agreement' defines it: per sample,
    :func:`multireader.stats.boxes.pairwise_box_agreement` of the readers' boxes (a box
    matches at IoU >= ``iou_threshold``; two readers who drew no box agree: 1.0); the
    pair's F1 is the mean over the samples both readers read (boxes or an empty list)
    when two or more readers did, with the same bootstrap as :func:`view_mask_agreement`.
    The all-reader line is each sample's mean pairwise F1, averaged.
    """
    reads = C.box_reads(view, reader_set)
    R = len(reads.fields)
    n_all = len(reads.item_ids)
    has = np.array(
        [[reads.boxes[j][i] is not None for j in range(R)] for i in range(n_all)], dtype=bool
    ).reshape(-1, R)
    rated = np.flatnonzero(has.sum(1) >= 2)
    f1 = np.full((len(rated), R, R), np.nan)
    for x, i in enumerate(rated):
        boxes = [reads.boxes[j][i] for j in range(R)]
        key = (float(iou_threshold), *(None if b is None else b.tobytes() for b in boxes))
        got = _BOX_F1.get(key)
        if got is None:
            res = B.pairwise_box_agreement(
                boxes,
                labels_per_reader=[reads.labels[j][i] for j in range(R)],
                iou_threshold=iou_threshold,
            )
            got = _nan(res["f1"])
            _BOX_F1.put(key, got)
        f1[x] = got
    iu = np.triu_indices(R, 1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sample with one pair read
        mean_f1 = np.nanmean(f1[:, iu[0], iu[1]], axis=1) if len(rated) else np.zeros(0)
    groups = None if reads.groups is None else reads.groups[rated]
    v, lo, hi, k = _pairwise_means(f1, groups, level, n_boot, seed)
    return {
        "readers": list(reads.readers),
        "fields": list(reads.fields),
        "f1": {"value": v, "ci_low": lo, "ci_high": hi, "n": k},
        "overall": {"mean_pairwise_f1": _mean_ci(mean_f1, groups, level, n_boot, seed)},
        "diag": has.sum(0).astype(np.int64),
        "n_items": n_all,
        "n_rated": len(rated),
        "iou_threshold": float(iou_threshold),
        "unit": "patient" if reads.groups is not None else "sample",
    }


def _fallback(view, reader_set, statistic: str, reason: str) -> AgreementMatrix:
    """The stored run's matrix, with ``reason`` saying why the view could not be used."""
    try:
        m = _run_matrix(view, reader_set, statistic)
    except NoMatrix as e:
        raise NoMatrix(f"{reason} {e}", action=e.action) from None
    m.source["reason"] = reason
    return m


_MASK_OVERALL = (
    ("mean pairwise Dice", "mean_pairwise_dice"),
    ("generalised Dice", "generalized_dice"),
)


def _mask_matrix(view, reader_set, statistic, n_boot, level, seed, max_masks):
    reads = C.mask_reads(view, reader_set)
    has = np.array([[p is not None for p in col] for col in reads.paths], dtype=bool)
    rated = has.sum(0) >= 2
    n_masks = int(has[:, rated].sum())
    if n_masks > max_masks:
        return _fallback(
            view,
            reader_set,
            statistic,
            f"This view has {int(rated.sum())} samples that two or more readers segmented "
            f"({n_masks} masks); Dice and IoU are computed on views of up to {max_masks} "
            "masks. Narrow the view to compute them on it.",
        )
    missing = [p for p in (p for col in reads.paths for p in col) if p and not os.path.exists(p)]
    note = None
    if missing:
        reason = f"{len(missing)} of the view's mask files are missing: {_some(missing)}."
        try:
            return _fallback(view, reader_set, statistic, reason)
        except NoMatrix:  # no stored run either: compute without them, and say so
            note = reason[:-1] + "; those reads are left out."
    r = view_mask_agreement(view, reader_set, n_boot=n_boot, level=level, seed=seed, reads=reads)
    if r["errors"]:
        bad = [f"{e['sample_id']} ({e['reason']})" for e in r["errors"]]
        more = f"{len(bad)} masks could not be compared and are left out: {_some(bad)}."
        note = f"{note} {more}" if note else more
    pw = r[statistic]
    return AgreementMatrix(
        readers=r["readers"],
        fields=r["fields"],
        classes=[],
        level="slice",
        statistic=statistic,
        value=pw["value"],
        ci_low=pw["ci_low"],
        ci_high=pw["ci_high"],
        n=pw["n"],
        n_disagree=None,
        diag=r["diag"],
        n_items=r["n_items"],
        overall=[_entry(lab, r["overall"][k]) for lab, k in _MASK_OVERALL],
        source={
            "kind": "view",
            "n_items_rated": r["n_rated"],
            "n_masks": r["n_masks"],
            "note": note,
        },
        ci_level=level,
        n_boot=n_boot,
        unit=r["unit"],
    )


def _box_iou_threshold(dataset) -> float:
    """The IoU threshold of the newest stored run that matched boxes (else 0.5)."""
    from multireader.core import runs

    key = newest_run_with(dataset, "boxes")
    if key is None:
        return DEFAULT_IOU_THRESHOLD
    try:
        res = runs.load(dataset, key)["results"]["kinds"]["boxes"]
        return float(res.get("iou_threshold", DEFAULT_IOU_THRESHOLD))
    except Exception:  # a run another version wrote: the default
        return DEFAULT_IOU_THRESHOLD


def _box_matrix(view, reader_set, statistic, n_boot, level, seed, max_samples):
    from fiftyone import ViewField as VF

    exprs = [VF(f).exists().to_int() for f in reader_set.fields]
    total = exprs[0]
    for e in exprs[1:]:
        total = total + e
    n_rated = view.match(total >= 2).count()
    if n_rated > max_samples:
        return _fallback(
            view,
            reader_set,
            statistic,
            f"This view has {n_rated} samples with two or more readers' boxes; box F1 is "
            f"computed on views of up to {max_samples}. Narrow the view to compute it on it.",
        )
    thr = _box_iou_threshold(view._dataset)
    r = view_box_agreement(
        view, reader_set, iou_threshold=thr, n_boot=n_boot, level=level, seed=seed
    )
    pw = r["f1"]
    return AgreementMatrix(
        readers=r["readers"],
        fields=r["fields"],
        classes=[],
        level="slice",
        statistic=statistic,
        value=pw["value"],
        ci_low=pw["ci_low"],
        ci_high=pw["ci_high"],
        n=pw["n"],
        n_disagree=None,
        diag=r["diag"],
        n_items=r["n_items"],
        overall=[_entry("mean pairwise F1", r["overall"]["mean_pairwise_f1"])],
        source={"kind": "view", "n_items_rated": r["n_rated"], "iou_threshold": thr},
        ci_level=level,
        n_boot=n_boot,
        unit=r["unit"],
    )


def newest_run_with(dataset, kind: str) -> str | None:
    """The key of the newest stored agreement run that measured ``kind`` labels."""
    from multireader.core import runs

    best, best_time = None, ""
    for key in runs.list_runs(dataset, "agreement"):
        try:
            r = runs.load(dataset, key)
        except Exception:  # a run another version wrote: skip it, never fail the panel
            continue
        if kind in (r.get("results") or {}).get("kinds", {}):
            t = str((r.get("config") or {}).get("created_at") or "")
            if best is None or t > best_time:
                best, best_time = key, t
    return best


def _run_matrix(view, reader_set, statistic):
    from multireader.core import runs

    stat = STATISTICS[statistic]
    dataset = view._dataset
    key = newest_run_with(dataset, stat.kind)
    if key is None:
        raise NoMatrix(
            f"No agreement run has measured the readers' {stat.label.split(' (')[0]} "
            f"yet. Run 'Compute agreement' with the {stat.kind} labels.",
            action="compute_agreement",
        )
    run = runs.load(dataset, key)
    res = run["results"]["kinds"][stat.kind]
    pw = res["pairwise"][statistic]
    want = list(reader_set.readers)
    have = list(res["readers"])
    idx = [have.index(r) for r in want if r in have]
    readers = [have[i] for i in idx]
    fields = [res["fields"][i] for i in idx]
    if len(readers) < 2:
        raise NoMatrix(
            f"The agreement run {key!r} has fewer than two of these readers; run "
            "'Compute agreement' again.",
            action="compute_agreement",
        )
    sub = np.ix_(idx, idx)
    try:
        run_view = dataset.load_run_view(key)
        of_this_view = view_key(run_view._serialize()) == view_key(view._serialize())
    except Exception:
        of_this_view = False
    overall = {
        "mask": [
            ("mean pairwise Dice", "mean_pairwise_dice"),
            ("generalised Dice", "generalized_dice"),
        ],
        "boxes": [("mean pairwise F1", "mean_pairwise_f1")],
    }[stat.kind]
    cfg = run.get("config") or {}
    return AgreementMatrix(
        readers=readers,
        fields=fields,
        classes=[],
        level="slice",
        statistic=statistic,
        value=_nan(pw["value"])[sub],
        ci_low=_nan(pw["ci_low"])[sub],
        ci_high=_nan(pw["ci_high"])[sub],
        n=np.asarray(pw["n"], dtype=np.int64)[sub],
        n_disagree=None,
        diag=np.diag(np.asarray(pw["n"], dtype=np.int64)[sub]).copy(),
        n_items=int(res.get("n_items", 0)),
        overall=[_entry(lab, res["overall"].get(k)) for lab, k in overall],
        source={
            "kind": "run",
            "run_key": key,
            "created_at": cfg.get("created_at"),
            "n_samples": int(run["results"].get("n_samples", res.get("n_items", 0))),
            "of_this_view": of_this_view,
        },
        ci_level=float(cfg.get("level", 0.95)),
        n_boot=int(cfg.get("n_boot", 0)),
        unit=str(cfg.get("bootstrap_unit", "sample")),
    )


def _labelled(field: str, classes: list[str]):
    from fiftyone import ViewField as VF

    return VF(f"{field}.label").is_in(list(classes))


def pair_view(view, field_a: str, field_b: str, classes: list[str]):
    """Samples of ``view`` that both readers labelled, with different labels."""
    from fiftyone import ViewField as VF

    return view.match(
        _labelled(field_a, classes)
        & _labelled(field_b, classes)
        & (VF(f"{field_a}.label") != VF(f"{field_b}.label"))
    )


def reader_view(view, field: str, classes: list[str]):
    """Samples of ``view`` that the reader labelled (with a class of the schema)."""
    return view.match(_labelled(field, classes))


def class_pair_view(view, field_a: str, field_b: str, classes: list[str], class_name: str):
    """Samples both readers labelled where exactly one of them called ``class_name``."""
    from fiftyone import ViewField as VF

    return view.match(
        _labelled(field_a, classes)
        & _labelled(field_b, classes)
        & ((VF(f"{field_a}.label") == class_name) != (VF(f"{field_b}.label") == class_name))
    )


def _exists(field: str):
    from fiftyone import ViewField as VF

    return VF(field).exists()


def cell_view(view, state: dict, reader_x: str, reader_y: str):
    """The view behind the clicked cell (column ``reader_x``, row ``reader_y``).

    Class statistics: off the diagonal, the samples both readers labelled differently
    (with a class chosen: where exactly one called it); on the diagonal, the samples the
    reader labelled (called the class). Mask and box statistics: the samples both
    readers labelled, least agreeing first (``mean_pairwise_dice`` /
    ``mean_pairwise_box_f1`` where stored); the diagonal, the reader's samples.
    """
    readers, fields = state["readers"], state["fields"]
    if reader_x not in readers or reader_y not in readers:
        raise KeyError(f"no reader {reader_x!r} or {reader_y!r} in {readers}")
    fx, fy = fields[readers.index(reader_x)], fields[readers.index(reader_y)]
    kind = state.get("kind", "classification")
    if kind != "classification":
        if fx == fy:
            return view.match(_exists(fx))
        out = view.match(_exists(fx) & _exists(fy))
        sort = _SORT_FIELD.get(kind)
        return out.sort_by(sort) if sort and view.has_field(sort) else out
    c = state.get("class_name")
    if fx == fy:
        if c is not None:
            from fiftyone import ViewField as VF

            return view.match(VF(f"{fx}.label") == c)
        return reader_view(view, fx, state["classes"])
    if c is not None:
        return class_pair_view(view, fy, fx, state["classes"], c)
    return pair_view(view, fy, fx, state["classes"])


def cell_description(state: dict, reader_x: str, reader_y: str) -> str:
    """What the clicked cell's view shows, for the panel's header."""
    kind, c = state.get("kind", "classification"), state.get("class_name")
    if kind != "classification":
        what = "segmented" if kind == "mask" else "drew boxes on"
        if reader_x == reader_y:
            return f"{reader_x} {what}"
        return f"both {reader_y} and {reader_x} {what}, least agreeing first"
    if reader_x == reader_y:
        return f"{reader_x} called {c}" if c else f"labelled by {reader_x}"
    if c:
        return f"only one of {reader_y} and {reader_x} called {c}"
    return f"{reader_y} and {reader_x} labelled differently"


def view_key(stages: list | None) -> str:
    """A comparable key of serialized view stages (the stage uuids left out)."""
    clean = [{k: v for k, v in s.items() if k != "_uuid"} for s in stages or []]
    return json.dumps(clean, sort_keys=True, default=str)


def heatmap_trace(m: AgreementMatrix) -> dict:
    """The Plotly heatmap: the statistic off the diagonal, each reader's count on it.

    Hover gives the value with its confidence interval, the number of items both
    readers labelled and (class statistics) how many they labelled differently. The
    diagonal has no value (a gap, drawn in the background colour) so the colour scale
    stays the statistic's own. Chance-corrected statistics (kappa) get a diverging
    scale centred at 0 (chance); shares (percent agreement, Dice, IoU, F1) a
    sequential one from 0 to 1.
    """
    stat = STATISTICS[m.statistic]
    items = "series" if m.level == "series" else "samples"
    R = len(m.readers)
    pct = int(round(100 * m.ci_level))
    diag = m.diag if m.diag is not None else np.diag(m.n)
    if stat.kind == "classification":
        diag_word = "calls" if m.class_name else "labels"
    else:
        diag_word = "masks" if stat.kind == "mask" else "boxed"
    name = stat.short + (f", {m.class_name} vs rest" if m.class_name else "")
    diag_hover = {
        "classification": f"called {m.class_name} on" if m.class_name else "labelled",
        "mask": "segmented",
        "boxes": "drew boxes on",
    }[stat.kind]
    z, text, hover = [], [], []
    for i in range(R):
        zr, tr, hr = [], [], []
        for j in range(R):
            if i == j:
                zr.append(None)
                tr.append(f"{int(diag[i])}<br>{diag_word}")
                hr.append(f"<b>{m.readers[i]}</b><br>{diag_hover} {int(diag[i])} {items}")
                continue
            k = float(m.value[i, j])
            zr.append(None if math.isnan(k) else round(k, 6))
            tr.append(fmt_num(k))
            lo, hi = float(m.ci_low[i, j]), float(m.ci_high[i, j])
            ci = "" if math.isnan(lo) or math.isnan(hi) else f"<br>{pct}% CI {lo:.2f} to {hi:.2f}"
            line = (
                f"<b>{m.readers[i]} vs {m.readers[j]}</b><br>{name} = {fmt_num(k)}{ci}"
                f"<br>n = {int(m.n[i, j])} {items} both labelled"
            )
            if m.n_disagree is not None and m.class_name:
                line += f"<br>{int(m.n_disagree[i, j])} where only one called {m.class_name}"
            elif m.n_disagree is not None:
                line += f"<br>{int(m.n_disagree[i, j])} labelled differently"
            hr.append(line)
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    if stat.signed:
        scale = {"zmin": -1, "zmax": 1, "zmid": 0, "colorscale": KAPPA_COLORSCALE}
        ticks = {
            "tickvals": [-1, -0.5, 0, 0.5, 1],
            "ticktext": ["−1", "−0.5", "0 chance", "0.5", "1 perfect"],
        }
    else:
        scale = {"zmin": 0, "zmax": 1, "colorscale": UNIT_COLORSCALE}
        ticks = {"tickvals": [0, 0.25, 0.5, 0.75, 1], "ticktext": ["0", ".25", ".5", ".75", "1"]}
    return {
        "type": "heatmap",
        "name": m.statistic,
        "x": list(m.readers),
        "y": list(m.readers),
        "z": z,
        **scale,
        "text": text,
        "texttemplate": "%{text}",
        "textfont": {"size": 15},
        "customdata": hover,
        "hovertemplate": "%{customdata}<extra></extra>",
        "hoverongaps": True,
        "xgap": 3,
        "ygap": 3,
        "colorbar": {
            # below the matrix, so it stays beside it however wide the panel is
            "orientation": "h",
            "x": 0.5,
            "xanchor": "center",
            "y": -0.04,
            "yanchor": "top",
            "len": 0.8,
            "thickness": 12,
            "title": {"text": name, "side": "top"},
            **ticks,
            "tickfont": {"size": 13},
        },
    }


def overall_text(m: AgreementMatrix) -> str:
    """The line under the matrix: all readers at once, each value with its CI and n."""
    items = "series" if m.level == "series" else "samples"
    parts = [f"{e['label']} {fmt_ci(e['value'], e['ci'])}" for e in m.overall]
    n = next((e["n"] for e in m.overall if e.get("n") is not None), None)
    ci = (
        f"{int(round(100 * m.ci_level))}% CIs from {m.n_boot} bootstrap replicates over {m.unit}s"
        if m.n_boot
        else "no CIs"
    )
    head = "All readers" + (f" (n = {n} {items})" if n is not None else "")
    return f"**{head}:** " + " · ".join(parts) + f" — {ci}."


def heatmap_height(n_readers: int) -> int:
    """Pixels for the figure: about 90 px per reader, between 320 and 720."""
    return int(min(760, max(360, 150 + 90 * n_readers)))


def heatmap_layout(n_readers: int) -> dict:
    """Axes that read like a matrix: first reader top-left, reader ids as categories."""
    axis = {
        "type": "category",  # reader ids such as "1", "2" must not become numbers
        "showgrid": False,
        "zeroline": False,
        "tickfont": {"size": 16},
        "automargin": True,
    }
    return {
        "xaxis": {**axis, "side": "top", "title": {"text": ""}, "constrain": "domain"},
        "yaxis": {
            **axis,
            "autorange": "reversed",
            "title": {"text": ""},
            "scaleanchor": "x",  # square cells
            "constrain": "domain",
        },
        "height": heatmap_height(n_readers),
        "margin": {"t": 40, "l": 60, "b": 90, "r": 30},
        "hovermode": "closest",
        "dragmode": False,
    }
