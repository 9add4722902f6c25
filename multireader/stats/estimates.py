"""One record for a value with its interval, and the one way numbers are printed.

Every stored statistic is ``{"value", "ci", "n", "note"}`` with None (never NaN) for
what is undefined and a note saying why: :class:`Estimate` is that record.
:func:`finite` is the JSON number (a finite float or None); :func:`fmt_num`,
:func:`fmt_ci` and :func:`fmt_p` are how the report, the panels and the headlines print
a number, a value with its interval, and a p-value. Pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Estimate", "finite", "fmt_num", "fmt_ci", "fmt_p", "fmt_pct"]

#: printed for a value that is missing or undefined
NA = "n/a"
#: p-values below this are printed as "< 0.0001"
P_FLOOR = 1e-4


def finite(v: Any, digits: int | None = None) -> float | None:
    """A finite Python float (rounded to ``digits`` decimals when given), or None.

    Examples
    --------
    >>> finite(float("nan")), finite(2), finite(0.123456, 3)
    (None, 2.0, 0.123)
    """
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return round(f, digits) if digits is not None else f


@dataclass(frozen=True)
class Estimate:
    """A statistic's value with its confidence interval, sample size and a note.

    Attributes
    ----------
    value : the estimate, None (or NaN) when undefined.
    ci : (low, high) or None when there is no interval.
    n : the number of items (or reads) it is computed on.
    note : why a value or interval is missing, or how it was computed.
    """

    value: float | None
    ci: tuple[float | None, float | None] | None = None
    n: int | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"value", "ci", "n", "note"}`` of plain floats, ints and None (never NaN).

        Examples
        --------
        >>> Estimate(0.5, (0.25, 0.75), 40).to_json()
        {'value': 0.5, 'ci': [0.25, 0.75], 'n': 40, 'note': None}
        """
        ci = None if self.ci is None else [finite(self.ci[0]), finite(self.ci[1])]
        return {
            "value": finite(self.value),
            "ci": ci,
            "n": None if self.n is None else int(self.n),
            "note": self.note,
        }


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_num(v: Any, digits: int = 2, *, significant: bool = False, missing: str = NA) -> str:
    """A number for people: ``digits`` decimals (or significant digits), ``missing``
    for None / NaN.

    Examples
    --------
    >>> fmt_num(0.5234), fmt_num(None), fmt_num(1234.5, 3, significant=True)
    ('0.52', 'n/a', '1.23e+03')
    """
    if _missing(v):
        return missing
    return f"{v:.{digits}g}" if significant else f"{v:.{digits}f}"


def fmt_ci(value: Any, ci: Any = None, digits: int = 2, *, missing: str = NA) -> str:
    """``0.52 [0.47, 0.57]``; ``missing`` for an undefined value; no brackets without a
    complete interval.

    ``value`` is a number with its ``ci``, or a stored estimate: an :class:`Estimate`,
    a ``{"value", "ci"}`` dict or None (then ``ci`` is taken from it).

    Examples
    --------
    >>> fmt_ci(0.5234, [0.47, 0.571]), fmt_ci(0.5, [None, None]), fmt_ci(None, [0.1, 0.2])
    ('0.52 [0.47, 0.57]', '0.50', 'n/a')
    >>> fmt_ci({"value": 0.61, "ci": [0.5, 0.7], "n": 9}), fmt_ci(Estimate(0.1))
    ('0.61 [0.50, 0.70]', '0.10')
    """
    if isinstance(value, Estimate):
        value, ci = value.value, value.ci
    elif isinstance(value, dict):
        value, ci = value.get("value"), value.get("ci")
    if _missing(value):
        return missing
    text = fmt_num(value, digits)
    if not ci or _missing(ci[0]) or _missing(ci[1]):
        return text
    return f"{text} [{fmt_num(ci[0], digits)}, {fmt_num(ci[1], digits)}]"


def fmt_p(p: Any, name: str | None = None) -> str:
    """A p-value: two significant digits, ``< 0.0001`` below that, ``n/a`` when missing.

    With ``name`` the result reads as a clause: ``p = 0.032``, ``p < 0.0001``.

    Examples
    --------
    >>> fmt_p(0.03217), fmt_p(3e-7), fmt_p(0.2, "p"), fmt_p(1e-9, "p")
    ('0.032', '< 0.0001', 'p = 0.2', 'p < 0.0001')
    """
    if _missing(p):
        return NA if name is None else f"{name} = {NA}"
    text = "< 0.0001" if p < P_FLOOR else f"{p:.2g}"
    if name is None:
        return text
    return f"{name} {text}" if p < P_FLOOR else f"{name} = {text}"


def fmt_pct(v: Any, *, missing: str = NA) -> str:
    """A share as a whole percentage: ``0.256`` -> ``26%``.

    Examples
    --------
    >>> fmt_pct(0.256), fmt_pct(None)
    ('26%', 'n/a')
    """
    return missing if _missing(v) else f"{100 * v:.0f}%"
