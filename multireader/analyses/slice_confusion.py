"""Confusion matrices of any two label fields, one per slice of the data.

The numbers behind the ``slice_confusion`` panel, with no App code: which label fields
can be compared, how a slice field is cut (categories as they are, numbers into bins
the user can edit), the confusion matrix of field A (rows) against field B (columns)
in each slice with its sample count and Cohen's kappa with a bootstrap interval, and
the view behind any cell.

Reads three (or four, with mistakenness) columns in one aggregation
(:func:`multireader.core.collect.read_columns`: the same values as ``values()``, without
FiftyOne's per-document decoding) and counts with numpy, so it stays fast on 100,000
samples.
"""

from __future__ import annotations

import numpy as np

from multireader.core import collect as C
from multireader.core import fields as F
from multireader.core.schema import get_label_schema
from multireader.errors import MultireaderError
from multireader.stats.agreement import kappa_from_confusion, weight_matrix
from multireader.stats.bootstrap import bootstrap
from multireader.stats.estimates import finite

MISSING = "(missing)"
#: numeric slice fields with more distinct values than this are binned
MAX_CATEGORIES = 12
#: bootstrap resamples of each slice's table (multinomial over its cells)
N_BOOT = 500


class SliceError(MultireaderError):
    """The comparison cannot be made as asked; the message says why."""


def comparable_fields(dataset) -> list[str]:
    """Classification fields to compare: readers, consensus, then predictions."""
    import fiftyone as fo

    readers = sorted(F.reader_fields(dataset, ["classification"]))
    others = []
    for name, f in dataset.get_field_schema().items():
        if getattr(f, "document_type", None) is not fo.Classification or name in readers:
            continue
        role = ((getattr(f, "info", None) or {}).get(F.INFO_KEY) or {}).get("role")
        others.append((0 if role == "consensus" else 1 if role == "prediction" else 2, name))
    return readers + [n for _, n in sorted(others)]


def slice_fields(dataset) -> list[str]:
    """Fields a slice can be cut by: the metadata fields first, then other primitives."""
    schema = dataset.get_field_schema()
    first = [n for n in F.METADATA_FIELDS if n in schema]
    rest = sorted(
        n
        for n, f in schema.items()
        if type(f).__name__ in ("StringField", "BooleanField", "IntField", "FloatField")
        and n not in first
        and not n.startswith(("label_quality_", "mistakenness_", "quality_", "filepath"))
        and n not in ("id", "filepath")
    )
    return first + rest


def default_bins(values: list) -> list[float] | None:
    """Quartile edges for a numeric field with many values, else None (categories)."""
    nums = np.array(
        [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)], float
    )
    if len(nums) == 0 or len(np.unique(nums)) <= MAX_CATEGORIES:
        return None
    edges = np.unique(np.quantile(nums, [0, 0.25, 0.5, 0.75, 1.0]))
    return [float(e) for e in edges]


def bin_label(lo: float, hi: float, last: bool) -> str:
    return f"[{lo:g}, {hi:g}{']' if last else ')'}"


def slice_codes(values: list, bins: list[float] | None) -> tuple[np.ndarray, list[str], list]:
    """Per-sample slice index, the slice names, and each slice's filter spec."""
    if bins is None:
        names = sorted({MISSING if v is None else str(v) for v in values}, key=_order)
        index = {n: i for i, n in enumerate(names)}
        codes = np.array([index[MISSING if v is None else str(v)] for v in values])
        specs = []
        for n in names:
            raw = next((v for v in values if (MISSING if v is None else str(v)) == n), None)
            specs.append({"kind": "value", "value": raw})
        return codes, names, specs
    edges = sorted(float(e) for e in bins)
    if len(edges) < 2:
        raise SliceError("give at least two bin edges")
    names = [bin_label(edges[i], edges[i + 1], i == len(edges) - 2) for i in range(len(edges) - 1)]
    specs = [
        {"kind": "range", "lo": edges[i], "hi": edges[i + 1], "last": i == len(edges) - 2}
        for i in range(len(edges) - 1)
    ]
    x = np.array([np.nan if v is None else float(v) for v in values])
    k = np.searchsorted(edges, x, side="right") - 1
    k = np.where(x == edges[-1], len(edges) - 2, k)
    outside = np.isnan(x) | (k < 0) | (k > len(edges) - 2)
    codes = np.where(outside, len(names), k)
    if outside.any():
        names.append(MISSING if np.isnan(x[outside]).all() else "outside the bins")
        specs.append({"kind": "outside", "lo": edges[0], "hi": edges[-1]})
    return codes, names, specs


def _order(name: str):
    return (name == MISSING, name)


def slice_confusion(
    view,
    field_a: str,
    field_b: str,
    slice_field: str | None,
    *,
    bins: list[float] | None = None,
    shade_field: str | None = None,
    level: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict:
    """Confusion of ``field_a`` (rows) against ``field_b`` (columns) in each slice.

    ``bins``: edges for a numeric ``slice_field`` (default: quartiles when it has more
    than 12 values). ``shade_field``: a per-sample score (e.g. mistakenness) whose mean
    is reported for each cell. Samples missing either label are left out of the tables
    and counted. Returns JSON: ``classes``, ``slices`` (one entry per slice with
    ``name``, ``n``, ``confusion``, ``kappa`` {value, ci}, ``shade``), ``bins``.
    """
    dataset = view._dataset
    for f in (field_a, field_b):
        if not dataset.has_field(f):
            raise SliceError(f"no field {f!r} on dataset {dataset.name!r}")
    if field_a == field_b:
        raise SliceError("choose two different label fields")
    if slice_field and not dataset.has_field(slice_field):
        raise SliceError(f"no slice field {slice_field!r} on dataset {dataset.name!r}")
    schema = get_label_schema(dataset) or {}
    paths = [f"{field_a}.label", f"{field_b}.label"]
    if slice_field:
        paths.append(slice_field)
    if shade_field:
        if not dataset.has_field(shade_field):
            raise SliceError(f"no field {shade_field!r} to shade by")
        paths.append(shade_field)
    cols = C.read_columns(view, paths) if len(view) else {p: [] for p in paths}
    a_raw, b_raw = cols[paths[0]], cols[paths[1]]
    classes = list(schema.get("classes") or sorted({v for v in a_raw + b_raw if v is not None}))
    extra = sorted({v for v in a_raw + b_raw if v is not None} - set(classes))
    classes += extra  # a label outside the schema is shown, never dropped silently
    index = {c: i for i, c in enumerate(classes)}
    a = np.array([index.get(v, -1) if v is not None else -1 for v in a_raw], dtype=np.int64)
    b = np.array([index.get(v, -1) if v is not None else -1 for v in b_raw], dtype=np.int64)
    both = (a >= 0) & (b >= 0)
    k = len(classes)

    if slice_field:
        if bins is None:
            bins = default_bins(cols[slice_field])
        codes, names, specs = slice_codes(cols[slice_field], bins)
    else:
        codes, names, specs = np.zeros(len(a), dtype=np.int64), ["all samples"], [{"kind": "all"}]
    shade = np.array(cols[shade_field], dtype=float) if shade_field else None

    w = weight_matrix(k, None)
    rng = np.random.default_rng(seed)  # one stream through the slices, in order

    def kappa(sums: np.ndarray) -> np.ndarray:
        return kappa_from_confusion(sums.reshape(*sums.shape[:-1], k, k), w)

    out = []
    for s, name in enumerate(names):
        m = both & (codes == s)
        n = int(m.sum())
        conf = np.bincount(a[m] * k + b[m], minlength=k * k).reshape(k, k)
        entry = {
            "name": name,
            "filter": specs[s],
            "n": n,
            "n_missing_label": int(((codes == s) & ~both).sum()),
            "confusion": conf.tolist(),
            "agreement": float(np.trace(conf) / n) if n else None,
            "kappa": {"value": None, "ci": [None, None]},
        }
        if n >= 2:
            # samples resampled within the slice; identical (a, b) pairs share a row
            r = bootstrap(
                np.eye(k * k), kappa, rows=a[m] * k + b[m], n_boot=n_boot, level=level, seed=rng
            )
            entry["kappa"] = {"value": finite(r.value), "ci": [finite(r.ci_low), finite(r.ci_high)]}
        if shade is not None:
            sums = np.bincount(a[m] * k + b[m], weights=np.nan_to_num(shade[m]), minlength=k * k)
            cnt = np.bincount(a[m] * k + b[m], weights=np.isfinite(shade[m]), minlength=k * k)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(cnt > 0, sums / cnt, np.nan)
            entry["shade"] = [[finite(v) for v in row] for row in mean.reshape(k, k)]
        out.append(entry)
    return {
        "field_a": field_a,
        "field_b": field_b,
        "slice_field": slice_field,
        "bins": bins,
        "classes": classes,
        "n_samples": len(a),
        "n_compared": int(both.sum()),
        "shade_field": shade_field,
        "level": level,
        "ci_method": f"percentile bootstrap of the slice's table ({n_boot} multinomial resamples)",
        "slices": out,
    }


def cell_view(view, field_a: str, field_b: str, slice_field: str | None, spec: dict, a, b):
    """The samples behind one cell: ``field_a`` is ``a``, ``field_b`` is ``b``, in the slice."""
    from fiftyone import ViewField as VF

    expr = (VF(f"{field_a}.label") == a) & (VF(f"{field_b}.label") == b)
    kind = spec.get("kind")
    if slice_field and kind == "value":
        value = spec.get("value")
        expr = expr & (VF(slice_field) == value)
    elif slice_field and kind == "range":
        upper = VF(slice_field) <= spec["hi"] if spec.get("last") else VF(slice_field) < spec["hi"]
        expr = expr & (VF(slice_field) >= spec["lo"]) & upper
    elif slice_field and kind == "outside":
        expr = expr & (
            (VF(slice_field) == None)  # noqa: E711 - MongoDB null test
            | (VF(slice_field) < spec["lo"])
            | (VF(slice_field) > spec["hi"])
        )
    return view.match(expr)
