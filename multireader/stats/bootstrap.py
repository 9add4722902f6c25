"""The percentile bootstrap of the package: over items, or over groups of items.

Every interval the package reports from resampling comes from here. A statistic is
written as a function of column sums of per-unit features (class counts, confusion
cells, a value and a count...), so a replicate never copies data: it draws how often
each unit is picked and re-weights the features. With ``groups`` (patient ids, one per
item) the features are first summed per group and whole groups are drawn, so every
item of a drawn patient comes along (Davison & Hinkley 1997, sec. 3.8). The interval is
the ``(1 - level)/2`` and ``(1 + level)/2`` percentiles of the defined replicates
(Efron & Tibshirani 1993, ch. 13). Seeded: the same seed gives the same interval.

References
----------
Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
Cambridge University Press.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

__all__ = [
    "BootstrapResult",
    "Units",
    "bootstrap",
    "check_level",
    "check_n_boot",
    "group_codes",
    "percentile_interval",
    "resampled_sums",
    "resampling_units",
]

#: dense resample-weight blocks are kept under this many cells
MAX_CELLS = 4_000_000

Method = Literal["multinomial", "draws", "auto"]
Seed = int | np.random.Generator


def check_n_boot(n_boot: Any) -> int:
    """``n_boot`` as an int >= 0, or a ``ValueError`` naming it."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer; got {n_boot!r}")
    return int(n_boot)


def check_level(level: Any, name: str = "level") -> float:
    """A confidence level strictly between 0 and 1, or a ``ValueError`` naming it."""
    if isinstance(level, bool) or not isinstance(level, float | int) or not 0 < level < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {level!r}")
    return float(level)


def group_codes(groups: Any, n_items: int, name: str = "groups") -> np.ndarray | None:
    """Group ids (one per item) as codes ``0..G-1`` in sorted-id order; None stays None.

    Examples
    --------
    >>> group_codes(["p2", "p1", "p2"], 3).tolist()
    [1, 0, 1]
    """
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n_items:
        raise ValueError(
            f"{name} must be 1-D with one entry per item ({n_items}); got shape {g.shape}"
        )
    try:
        _, inv = np.unique(g, return_inverse=True)
    except TypeError as e:
        raise ValueError(f"{name} must be sortable ids (e.g. patient ids): {e}") from None
    return inv.ravel()


@dataclass(frozen=True)
class Units:
    """What one replicate draws from.

    Attributes
    ----------
    blocks : feature blocks, each (U, p) dense or sparse (or None, passed through):
        row u holds the summed features of the original units that row stands for.
    freq : (U,) how many original units each row stands for; sums to ``n_units``.
    row_of : (n_units,) the row of each original unit.
    kind : "item" or "group".
    """

    blocks: tuple[Any, ...]
    freq: np.ndarray
    row_of: np.ndarray
    kind: str

    @property
    def n_units(self) -> int:
        return len(self.row_of)


def resampling_units(
    blocks: Sequence[Any],
    *,
    rows: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Units:
    """Resampling units from per-item feature blocks.

    ``blocks`` are feature arrays whose rows are items, or, with ``rows`` (the row of
    each item), distinct item rows that several identical items share (a compression:
    the bootstrap distribution is the same). With ``groups`` (codes ``0..G-1`` from
    :func:`group_codes`, one per item) the features are summed per group and the
    groups are the units.
    """
    blocks = tuple(blocks)
    first = next(b for b in blocks if b is not None)
    n_rows = first.shape[0]
    row_of = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64).ravel()
    if groups is None:
        freq = np.bincount(row_of, minlength=n_rows)
        return Units(blocks, freq, row_of, "item")
    g = np.asarray(groups, dtype=np.int64).ravel()
    n_groups = int(g.max()) + 1 if len(g) else 0
    M = sparse.csr_matrix((np.ones(len(row_of)), (g, row_of)), shape=(n_groups, n_rows))
    summed = tuple(
        None if b is None else (M @ b).tocsr() if sparse.issparse(b) else M @ b for b in blocks
    )
    return Units(summed, np.ones(n_groups, np.int64), np.arange(n_groups), "group")


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def resampled_sums(
    units: Units,
    n_boot: int,
    seed: Seed = 0,
    *,
    method: Method = "multinomial",
    max_cells: int = MAX_CELLS,
) -> Iterator[tuple[Any, ...]]:
    """Chunks of bootstrap sums of every feature block: tuples of (b, p) arrays.

    A replicate draws ``n`` units uniformly with replacement; since the statistics only
    depend on feature sums, what matters is how often each row is drawn, which is
    Multinomial(n, freq / n). ``method="multinomial"`` draws those counts directly
    (cost per replicate ~ rows), ``"draws"`` draws n unit indices and counts them (cost
    ~ n), ``"auto"`` takes the multinomial when rows are few (n >= 8 rows).
    ``seed`` is a seed or a ``numpy.random.Generator`` to continue.
    """
    rng = _rng(seed)
    U, n = len(units.freq), int(units.freq.sum())
    direct = method == "multinomial" or (method == "auto" and n >= U * 8)
    chunk = max(1, min(n_boot, max_cells // max(U if direct else n, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        if direct:
            W = rng.multinomial(n, units.freq / n, size=b).astype(np.float64)
        else:
            rows = units.row_of[rng.integers(0, n, size=(b, n))]
            rows += (np.arange(b) * U)[:, None]
            W = np.bincount(rows.ravel(), minlength=b * U).reshape(b, U).astype(np.float64)
        yield tuple(
            None if B is None else np.asarray(B.T @ W.T).T if sparse.issparse(B) else W @ B
            for B in units.blocks
        )
        done += b


def percentile_interval(
    replicates: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bounds over the finite replicates (axis 0), per entry, and their count.

    Entries without any finite replicate (or no replicates at all) get NaN bounds.

    Examples
    --------
    >>> lo, hi, n = percentile_interval(np.array([1.0, 2, 3, 4, np.nan]), 0.5)
    >>> float(lo), float(hi), int(n)
    (1.75, 3.25, 4)
    """
    reps = np.asarray(replicates, dtype=np.float64)
    finite = np.isfinite(reps)
    n_valid = finite.sum(0)
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan.copy(), n_valid
    a = (1 - level) / 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries: NaN bounds
        lo, hi = np.nanquantile(np.where(finite, reps, np.nan), [a, 1 - a], axis=0)
    return lo, hi, n_valid


@dataclass
class BootstrapResult:
    """A statistic with its percentile bootstrap interval.

    Attributes
    ----------
    value : the point estimate (float, or an array for per-class / pairwise statistics;
        NaN where the statistic is undefined on the full data).
    ci_low, ci_high : percentile bounds at ``level`` over the finite replicates (same
        shape as value; NaN where no replicate was finite).
    n_valid : finite replicates per entry (a replicate can be undefined, e.g. a resample
        where every read is in one class).
    n_boot, level, seed : as requested.
    unit : "item" or "group".
    n_units : items (with at least one read) or groups resampled.
    replicates : (n_boot, ...) array of the replicate values.
    """

    value: float | np.ndarray
    ci_low: float | np.ndarray
    ci_high: float | np.ndarray
    n_valid: int | np.ndarray
    n_boot: int
    level: float
    seed: Seed
    unit: str
    n_units: int
    replicates: np.ndarray

    @classmethod
    def from_replicates(
        cls,
        value: Any,
        replicates: Sequence[np.ndarray],
        *,
        level: float,
        seed: Seed,
        unit: str,
        n_units: int,
    ) -> BootstrapResult:
        """The result of a point estimate and its chunks of replicates (possibly none)."""
        shape = np.shape(value)
        r = np.concatenate(replicates) if len(replicates) else np.zeros((0, *shape))
        lo, hi, nv = percentile_interval(r, level)
        scalar = shape == ()
        return cls(
            value=float(value) if scalar else np.asarray(value),
            ci_low=float(lo) if scalar else lo,
            ci_high=float(hi) if scalar else hi,
            n_valid=int(nv) if scalar else nv,
            n_boot=len(r),
            level=level,
            seed=seed,
            unit=unit,
            n_units=n_units,
            replicates=r,
        )


def bootstrap(
    features: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    rows: np.ndarray | None = None,
    groups: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: Seed = 0,
    method: Method = "multinomial",
) -> BootstrapResult:
    """Percentile bootstrap interval of a statistic of feature sums.

    ``statistic(S)`` maps summed features ``S`` of shape (..., p) to the statistic,
    vectorised over the leading axes (one per replicate). The point estimate is the
    statistic of the full sums.

    Parameters
    ----------
    features : float array (n_items, p) of additive per-item features, or, with
        ``rows``, one row per distinct item (identical items share a row).
    statistic : callable, see above.
    rows : optional int array (n_items,), the row of ``features`` of each item.
    groups : optional array (n_items,) of group ids (e.g. patient ids): whole groups
        are resampled.
    n_boot : replicates; 0 gives the point estimate with NaN bounds.
    level : confidence level.
    seed : seed of ``numpy.random.default_rng``, or a Generator to continue.
    method : how replicate counts are drawn, see :func:`resampled_sums`.

    Returns
    -------
    BootstrapResult

    References
    ----------
    Efron & Tibshirani (1993), ch. 13; Davison & Hinkley (1997), sec. 3.8.

    Examples
    --------
    The mean of five values, resampling items:

    >>> x = np.array([1.0, 2, 3, 4, 10])
    >>> r = bootstrap(np.c_[x, np.ones(5)], lambda s: s[..., 0] / s[..., 1], n_boot=2000)
    >>> r.value, bool(r.ci_low < 4 < r.ci_high)
    (4.0, True)
    """
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (n_items, n_features); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"features must have at least one row and column; got {X.shape}")
    n_boot = check_n_boot(n_boot)
    level = check_level(level)
    n_items = X.shape[0] if rows is None else len(np.asarray(rows))
    g = group_codes(groups, n_items)
    # one block per feature column: each replicate sum is then the plain dot product
    # ``counts @ column``, the same numbers as resampling that column by hand
    columns = [np.ascontiguousarray(c) for c in X.T]
    units = resampling_units(columns, rows=rows, groups=g)
    reps = [
        statistic(np.stack(sums, axis=-1))
        for sums in resampled_sums(units, n_boot, seed, method=method)
    ]
    return BootstrapResult.from_replicates(
        statistic(np.stack([units.freq @ c for c in units.blocks], axis=-1)),
        reps,
        level=level,
        seed=seed,
        unit=units.kind,
        n_units=units.n_units,
    )
