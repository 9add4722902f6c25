"""The ratings contract shared by every categorical statistic of the package.

Ratings are an int array ``(n_items, n_readers)`` of class codes ``0..n_classes-1``, with
``-1`` for a read that was not made. ``n_classes`` is explicit, so a class nobody used
still counts. :func:`validate_ratings` is the one place these rules are checked (the
agreement statistics, the consensus aggregators, the reader profiles and the model
evaluation all go through it), and :func:`class_counts` the one place the per-item
class counts are taken. Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MISSING", "check_n_classes", "validate_ratings", "class_counts"]

#: the code of a read that was not made
MISSING = -1


def check_n_classes(n_classes: Any, minimum: int = 1, name: str = "n_classes") -> int:
    """``n_classes`` as a Python int, or a ``ValueError`` naming it.

    Examples
    --------
    >>> check_n_classes(np.int64(3))
    3
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {n_classes!r}")
    if n_classes < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {n_classes}")
    return int(n_classes)


def validate_ratings(
    ratings: ArrayLike,
    n_classes: Any,
    name: str = "ratings",
    *,
    min_readers: int = 1,
    floats: bool = True,
    min_classes: int = 1,
) -> np.ndarray:
    """Check a ratings matrix and return it as a C-contiguous int64 array.

    Parameters
    ----------
    ratings : array-like of shape (n_items, n_readers)
        Class codes ``0..n_classes-1``; ``-1`` for a missing read. Integer and boolean
        arrays are taken as they are; with ``floats=True`` a float array is accepted
        when every value is a whole number (no NaN: a missing read is ``-1``).
    n_classes : int
        Number of classes, at least ``min_classes``.
    name : str
        The argument's name, used in every error message.
    min_readers : int
        Fewest reader columns accepted (agreement needs two).
    floats : bool
        Whether whole-numbered floats are accepted. The agreement statistics refuse
        them, because a float matrix there means continuous measurements.
    min_classes : int
        Fewest classes accepted (Gwet's AC needs two).

    Returns
    -------
    ndarray of shape (n_items, n_readers), int64, C-contiguous.

    Raises
    ------
    ValueError
        Naming ``name`` (or ``n_classes``) and what is wrong with it.

    Examples
    --------
    >>> validate_ratings([[0, 1], [-1, 2]], 3).dtype
    dtype('int64')
    >>> validate_ratings([[0, 3]], 3)
    Traceback (most recent call last):
    ...
    ValueError: ratings holds 3: code 3 is not -1 (not read) or one of 0..2
    """
    K = check_n_classes(n_classes, min_classes)
    arr = np.asarray(ratings)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_items, n_readers); got shape {arr.shape}")
    if arr.dtype.kind == "f" and floats:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} has NaN or infinite values; mark a missing read with -1")
        if np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold whole class codes, found a fractional value")
    elif arr.dtype.kind not in "iub":
        raise ValueError(
            f"{name} must hold integer class codes (-1 = not read) as an integer array; "
            f"got dtype {arr.dtype}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < MISSING or hi >= K:
            bad = lo if lo < MISSING else hi
            raise ValueError(
                f"{name} holds {bad}: code {bad} is not -1 (not read) or one of 0..{K - 1}"
            )
    if arr.shape[1] < min_readers:
        need = "two readers" if min_readers == 2 else f"{min_readers} reader column(s)"
        raise ValueError(f"{name} has {arr.shape[1]} reader column(s); it needs at least {need}")
    return arr


def class_counts(ratings: ArrayLike, n_classes: int) -> np.ndarray:
    """Items x classes read counts ``C[i, k]``: how many reads put item i in class k.

    One ``bincount``, linear in the number of reads; missing reads (-1) are not counted,
    so ``C.sum(1)`` is each item's number of reads.

    Parameters
    ----------
    ratings : int array (n_items, n_readers), -1 = not read (see :func:`validate_ratings`).
    n_classes : number of classes K.

    Returns
    -------
    int64 array (n_items, n_classes).

    Examples
    --------
    >>> class_counts(np.array([[0, 0, 1], [2, -1, 2]]), 3).tolist()
    [[2, 1, 0], [0, 0, 2]]
    """
    x = validate_ratings(ratings, n_classes)
    n = x.shape[0]
    valid = x >= 0
    idx = (np.arange(n, dtype=np.int64)[:, None] * n_classes + x)[valid]
    return np.bincount(idx, minlength=n * n_classes).reshape(n, n_classes)
