"""The numbers and views behind the ``lesion_agreement`` panel, with no App code.

Everything comes from a stored lesion run (:func:`multireader.analyses.lesions.
compute_lesion_agreement`): the run holds one row per lesion matched across readers,
with who found it, each reader's volume and every matched pair's Dice. Recomputing the
3-D analysis on each view change would take minutes, so the panel reads the run and
keeps the lesions whose series are in the App's view.

Three figures, each a list of plain Plotly trace dicts with a layout dict:

- the lesion x reader matrix: each cell the reader's volume (coloured by its ratio to
  the lesion's median volume over the readers who found it) or the reader's mean Dice
  with the other readers who found the lesion; a cell is "missed" where the reader read
  the series and did not find the lesion, "not read" where the reader did not read it;
- a Bland-Altman plot of two readers' volumes (Bland & Altman 1986): means against
  differences, with the bias and the limits of agreement;
- each lesion's spread of volumes across readers (the range, and one point per reader).

A click becomes a view: a lesion's slices (:func:`lesion_view`) or the series a reader
missed it in (:func:`series_view`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from multireader.core import fields as FLD
from multireader.errors import MultireaderError

RUN_KIND = "lesions"
LESIONS_FIELD = FLD.LESIONS

#: what a cell of the matrix can be
FOUND, MISSED, NOT_READ, ALONE = "found", "missed", "not read", "alone"

#: the matrix's colourings, in the order of the panel's drop-down
VALUES = {
    "volume": "Volume (vs the lesion's median)",
    "dice": "Dice with the other readers",
}

#: the rows the matrix shows at most; beyond, the most contested lesions
MAX_ROWS = 120

#: volume ratio to the lesion's median: blue smaller, white equal, red larger (log2
#: ratio from -1, half the median, to +1, twice the median)
RATIO_COLORSCALE = [
    [0.0, "#2166ac"],
    [0.25, "#92c5de"],
    [0.5, "#f7f7f7"],
    [0.75, "#f4a582"],
    [1.0, "#b2182b"],
]
#: Dice from 0 (white) to 1 (dark blue)
DICE_COLORSCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]
#: status cells: missed (dark grey), not read (light grey), found alone (pale)
STATUS_COLORS = {MISSED: "#616161", NOT_READ: "#cfcfcf", ALONE: "#eeeeee"}
_STATUS_CODE = {MISSED: 0, NOT_READ: 1, ALONE: 2}
#: one colour per reader, the same in every figure
READER_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
]


class NoLesions(MultireaderError):
    """Nothing to draw; the message says why and ``action`` names what fixes it:
    ``"compute_lesion_agreement"``, ``"clear_view"`` or None."""

    def __init__(self, message: str, action: str | None = None):
        super().__init__(message)
        self.action = action


@dataclass
class LesionMatrix:
    """The lesions of one stored run whose series are in a view.

    ``volume`` and ``dice``: (L, R) floats, NaN where the reader did not find the
    lesion (``dice`` also where no other reader found it). ``status``: (L, R) of
    :data:`FOUND`, :data:`MISSED`, :data:`NOT_READ`. ``bland_altman``: the run's stored
    Bland-Altman per reader pair, used when the view holds all of the run's lesions.
    """

    run_key: str
    created_at: str
    readers: list[str]
    lesion_ids: list[str]
    series: list[str]
    patients: list[str]
    found_by: list[int]
    n_present: list[int]
    volume: np.ndarray
    dice: np.ndarray
    status: np.ndarray
    n_run_lesions: int
    n_series: int
    level: float
    bland_altman: dict = field(default_factory=dict)
    newest: bool = True  # this run wrote the ``lesions`` field last

    @property
    def complete(self) -> bool:
        """The view holds every lesion of the run."""
        return len(self.lesion_ids) == self.n_run_lesions

    def state(self) -> dict:
        """What the panel keeps in its state to answer clicks."""
        return {
            "run_key": self.run_key,
            "readers": self.readers,
            "lesions": {
                lid: {"series": s, "status": list(st)}
                for lid, s, st in zip(
                    self.lesion_ids, self.series, self.status.tolist(), strict=True
                )
            },
            "newest": self.newest,
        }


# --------------------------------------------------------------------- the run


def lesion_runs(dataset) -> list[str]:
    """The keys of the stored lesion runs, newest first."""
    from multireader.core import runs

    return runs.newest_first(dataset, RUN_KIND)


def _reader_dice(lesion: dict, readers: list[str]) -> list[float]:
    """Each reader's mean Dice with the other readers who found the lesion (NaN if none)."""
    out = []
    for r in readers:
        vals = [
            p["dice"]
            for key, p in (lesion.get("pairs") or {}).items()
            if r in key.split("|") and p.get("dice") is not None
        ]
        out.append(float(np.mean(vals)) if vals else math.nan)
    return out


def lesion_matrix(view, run_key: str | None = None) -> LesionMatrix:
    """The lesion x reader matrix of stored run ``run_key`` (default: the newest lesion
    run), restricted to the lesions whose series are in ``view``.

    Raises :class:`NoLesions` when there is no lesion run, the view is empty, or none of
    the run's lesions lies in the view's series.
    """
    from multireader.core import runs

    dataset = view._dataset
    keys = lesion_runs(dataset)
    if not keys:
        raise NoLesions(
            "No lesion analysis is stored on this dataset yet. Compute lesion agreement "
            "(3-D) to match each reader's lesions across readers.",
            action="compute_lesion_agreement",
        )
    if run_key is None:
        run_key = keys[0]
    if run_key not in keys:
        raise NoLesions(f"There is no lesion run {run_key!r}; choose one of {keys}.")
    if len(view) == 0:
        raise NoLesions("The current view is empty: clear it to see the lesions.", "clear_view")
    run = runs.load(dataset, run_key, kind=RUN_KIND)
    res = run["results"]
    readers = list(res["readers"])
    in_view = set(view.distinct(FLD.SERIES_UID)) if dataset.has_field(FLD.SERIES_UID) else set()
    rows = [x for x in res["lesions"] if x["series"] in in_view]
    if not rows:
        what = (
            f"Run '{run_key}' found no lesions."
            if not res["lesions"]
            else f"None of the {len(res['lesions'])} lesions of run '{run_key}' is in a "
            "series of the current view."
        )
        raise NoLesions(what, action="clear_view" if res["lesions"] else None)
    R = len(readers)
    vol = np.array(
        [[math.nan if v is None else v for v in x["volume_ml"]] for x in rows], float
    ).reshape(len(rows), R)
    status = np.full((len(rows), R), FOUND, dtype=object)
    for i, x in enumerate(rows):
        for r in range(R):
            if not x["present"][r]:
                status[i, r] = NOT_READ
            elif not x["found"][r]:
                status[i, r] = MISSED
    return LesionMatrix(
        run_key=run_key,
        created_at=str(run["config"].get("created_at") or ""),
        readers=readers,
        lesion_ids=[x["lesion_id"] for x in rows],
        series=[x["series"] for x in rows],
        patients=[str(x.get("patient") or "") for x in rows],
        found_by=[int(x["found_by"]) for x in rows],
        n_present=[int(sum(x["present"])) for x in rows],
        volume=vol,
        dice=np.array([_reader_dice(x, readers) for x in rows], float).reshape(len(rows), R),
        status=status,
        n_run_lesions=len(res["lesions"]),
        n_series=len({x["series"] for x in rows}),
        level=float(res.get("level") or 0.95),
        bland_altman=(res.get("volume") or {}).get("bland_altman") or {},
        newest=run_key == keys[0],
    )


def shown_rows(m: LesionMatrix, max_rows: int = MAX_ROWS) -> list[int]:
    """The rows the matrix draws, in run order: all, or the ``max_rows`` most contested
    (fewest readers finding it, then lowest mean Dice)."""
    L = len(m.lesion_ids)
    if max_rows >= L:
        return list(range(L))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            md = np.nanmean(m.dice, 1)
    share = np.array(m.found_by) / np.maximum(np.array(m.n_present), 1)
    order = np.lexsort((np.nan_to_num(md, nan=1.0), share))
    return sorted(order[:max_rows].tolist())


def summary_text(m: LesionMatrix) -> str:
    """One line: how many lesions, of how many series, from which run."""
    missed = int((m.status == MISSED).sum())
    all_found = sum(1 for i in range(len(m.lesion_ids)) if m.found_by[i] == m.n_present[i])
    of = "" if m.complete else f" (of the run's {m.n_run_lesions})"
    return (
        f"**{len(m.lesion_ids)} lesions**{of} in {m.n_series} series of the current view, "
        f"from run '{m.run_key}' ({m.created_at[:16].replace('T', ' ')}): "
        f"{all_found} found by every reader who read the series; {missed} "
        f"{'miss' if missed == 1 else 'misses'} (dark grey). Click a cell to open the lesion's slices, or the series a reader missed "
        f"it in."
    )


# --------------------------------------------------------------------- statistics


def bland_altman(m: LesionMatrix, reader_a: str, reader_b: str) -> dict:
    """Bland-Altman of two readers' volumes on the lesions both found.

    Points: ``lesion_ids``, ``mean`` = (a + b) / 2, ``diff`` = a - b (mL). Bias and
    limits of agreement (bias -/+ 1.96 SD at level 0.95; Bland & Altman 1986) are the
    run's stored ones when the view holds all of its lesions, else recomputed on the
    view's lesions with :func:`multireader.stats.agreement.bland_altman`. ``stats`` is
    None (and ``note`` says why) with fewer than two lesions found by both.
    """
    from multireader.stats import agreement as A

    for r in (reader_a, reader_b):
        if r not in m.readers:
            raise ValueError(f"reader {r!r} is not one of {m.readers}")
    if reader_a == reader_b:
        raise ValueError("choose two different readers")
    a = m.volume[:, m.readers.index(reader_a)]
    b = m.volume[:, m.readers.index(reader_b)]
    both = np.isfinite(a) & np.isfinite(b)
    out = {
        "reader_a": reader_a,
        "reader_b": reader_b,
        "lesion_ids": [m.lesion_ids[i] for i in np.flatnonzero(both)],
        "mean": ((a[both] + b[both]) / 2).tolist(),
        "diff": (a[both] - b[both]).tolist(),
        "stats": None,
        "source": None,
        "note": None,
    }
    stored = m.bland_altman.get(f"{reader_a}|{reader_b}")
    flipped = m.bland_altman.get(f"{reader_b}|{reader_a}")
    if m.complete and (stored or flipped) and "bias" in (stored or flipped):
        s = dict(stored or flipped)
        if stored is None:  # the run stores b - a for this order: mirror it
            s = {
                **s,
                "bias": -s["bias"],
                "loa_low": -s["loa_high"],
                "loa_high": -s["loa_low"],
                "bias_ci": [-s["bias_ci"][1], -s["bias_ci"][0]],
            }
        out.update(stats=s, source="run")
        return out
    try:
        out.update(stats=A.bland_altman(a, b, level=m.level), source="view")
    except ValueError as e:  # fewer than two lesions both found
        out["note"] = str(e)
    return out


def spread(m: LesionMatrix) -> list[dict]:
    """Per lesion: the volumes of the readers who found it, their min, max and median."""
    out = []
    for i, lid in enumerate(m.lesion_ids):
        v = m.volume[i]
        ok = np.isfinite(v)
        out.append(
            {
                "lesion_id": lid,
                "volumes": {m.readers[r]: float(v[r]) for r in np.flatnonzero(ok)},
                "min": float(v[ok].min()) if ok.any() else None,
                "max": float(v[ok].max()) if ok.any() else None,
                "median": float(np.median(v[ok])) if ok.any() else None,
            }
        )
    return out


# --------------------------------------------------------------------- click views


def lesion_row(dataset, run_key: str, lesion_id: str) -> dict:
    """The stored row of one lesion of a run."""
    from multireader.core import runs

    res = runs.load(dataset, run_key, kind=RUN_KIND)["results"]
    for x in res["lesions"]:
        if x["lesion_id"] == lesion_id:
            return x
    raise NoLesions(f"run '{run_key}' has no lesion {lesion_id!r}")


def lesion_view(view, lesion: dict, filter_labels: bool = True):
    """The slices lesion ``lesion`` (a run row) spans, in slice order; with
    ``filter_labels`` its outlines are the only ``lesions`` labels shown (only right when
    the run is the one that last wrote the ``lesions`` field)."""
    from fiftyone import ViewField as F

    out = view.select(lesion["slice_ids"]).sort_by(FLD.SLICE_INDEX)
    if filter_labels and view.has_field(LESIONS_FIELD):
        out = out.filter_labels(
            LESIONS_FIELD, F("lesion_id") == lesion["lesion_id"], only_matches=False
        )
    return out


def series_view(view, series_uid: str):
    """Every slice of one series, in slice order."""
    from fiftyone import ViewField as F

    return view.match(F(FLD.SERIES_UID) == series_uid).sort_by(FLD.SLICE_INDEX)


def cell_description(state: dict, lesion_id: str, reader: str) -> str:
    """What a cell's click shows, for the panel's "Showing the samples ..." line."""
    row = state["lesions"][lesion_id]
    status = row["status"][state["readers"].index(reader)]
    if status == MISSED:
        return f"of the series where {reader} missed lesion {lesion_id}"
    if status == NOT_READ:
        return f"of the series of lesion {lesion_id}, which {reader} did not read"
    return f"of lesion {lesion_id}'s slices, with its outlines"


def cell_view(view, state: dict, lesion_id: str, reader: str):
    """A click on cell (``lesion_id``, ``reader``): the lesion's slices where the reader
    found it, else the lesion's whole series."""
    row = state["lesions"].get(lesion_id)
    if row is None or reader not in state["readers"]:
        raise NoLesions(f"no cell ({lesion_id}, {reader}) in this matrix")
    status = row["status"][state["readers"].index(reader)]
    if status == FOUND:
        lesion = lesion_row(view._dataset, state["run_key"], lesion_id)
        return lesion_view(view, lesion, filter_labels=state.get("newest", True))
    return series_view(view, row["series"])


# --------------------------------------------------------------------- figures


def _fmt_ml(v: float) -> str:
    return f"{v:.3g} mL" if v < 100 else f"{v:.0f} mL"


def _row_label(m: LesionMatrix, i: int) -> str:
    return f"{m.lesion_ids[i]} · {m.found_by[i]} of {m.n_present[i]} found"


def heatmap_traces(m: LesionMatrix, value: str = "volume", rows: list[int] | None = None) -> list:
    """Two heatmaps over the same cells: the values where the reader found the lesion,
    then the status cells (missed, not read, and in Dice mode found by this reader
    alone) in greys, each with its word in the cell. Gaps are not hoverable, so each
    cell has exactly one hover and one click, from the trace that fills it."""
    if value not in VALUES:
        raise ValueError(f"value: expected one of {list(VALUES)}, got {value!r}")
    rows = list(range(len(m.lesion_ids))) if rows is None else rows
    readers = m.readers
    y = [m.lesion_ids[i] for i in rows]
    z, text, hover = [], [], []
    sz, stext, shover = [], [], []
    for i in rows:
        lid = m.lesion_ids[i]
        v = m.volume[i]
        ok = np.isfinite(v)
        med = float(np.median(v[ok])) if ok.any() else math.nan
        zr, tr, hr, szr, str_, shr = [], [], [], [], [], []
        who = ", ".join(readers[r] for r in np.flatnonzero(m.status[i] == FOUND)) or "nobody"
        for r, reader in enumerate(readers):
            st = m.status[i, r]
            cell_z = cell_s = None
            t = h = ""
            if st == FOUND:
                ratio = v[r] / med if med > 0 else math.nan
                d = m.dice[i, r]
                h = (
                    f"<b>{lid}</b> · {reader}: {_fmt_ml(v[r])}"
                    + (f" ({ratio:.2f}× the lesion's median)" if np.isfinite(ratio) else "")
                    + (f"<br>mean Dice with the others {d:.2f}" if np.isfinite(d) else "")
                    + f"<br>found by {who}<br>click: the lesion's slices"
                )
                if value == "volume":
                    cell_z = math.log2(ratio) if np.isfinite(ratio) and ratio > 0 else 0.0
                    t = _fmt_ml(v[r]).replace(" mL", "")
                elif np.isfinite(d):
                    cell_z, t = float(d), f"{d:.2f}"
                else:
                    cell_s, t = _STATUS_CODE[ALONE], "alone"
                    h = h.replace("<br>found by", "<br>no other reader found it<br>found by")
            elif st == MISSED:
                cell_s, t = _STATUS_CODE[MISSED], "missed"
                h = f"<b>{lid}</b>: missed by {reader}<br>found by {who}<br>click: the series"
            else:
                cell_s, t = _STATUS_CODE[NOT_READ], "not read"
                h = f"<b>{lid}</b>: {reader} did not read this series<br>click: the series"
            zr.append(cell_z)
            szr.append(cell_s)
            if cell_z is not None:
                tr.append(t)
                hr.append(h)
                str_.append("")
                shr.append("")
            else:
                tr.append("")
                hr.append("")
                str_.append(t)
                shr.append(h)
        z.append(zr)
        text.append(tr)
        hover.append(hr)
        sz.append(szr)
        stext.append(str_)
        shover.append(shr)
    if value == "volume":
        scale = {
            "colorscale": RATIO_COLORSCALE,
            "zmin": -1,
            "zmid": 0,
            "zmax": 1,
            "colorbar_title": "volume vs the lesion's median",
            "ticks": {
                "tickvals": [-1, -0.5, 0, 0.5, 1],
                "ticktext": ["½×", "0.7×", "1×", "1.4×", "2×"],
            },
        }
    else:
        scale = {
            "colorscale": DICE_COLORSCALE,
            "zmin": 0,
            "zmax": 1,
            "colorbar_title": "mean Dice with the other readers",
            "ticks": {},
        }
    common = {
        "type": "heatmap",
        "x": readers,
        "y": y,
        "texttemplate": "%{text}",
        "hovertemplate": "%{customdata}<extra></extra>",
        "hoverongaps": False,
        "xgap": 3,
        "ygap": 3,
    }
    values = {
        **common,
        "name": "volume" if value == "volume" else "dice",
        "z": z,
        "text": text,
        "customdata": hover,
        "textfont": {"size": 13},
        "colorscale": scale["colorscale"],
        "zmin": scale["zmin"],
        "zmax": scale["zmax"],
        "colorbar": {
            "orientation": "h",
            "x": 0.5,
            "xanchor": "center",
            "y": -0.02,
            "yanchor": "top",
            "len": 0.8,
            "thickness": 10,
            "title": {"text": scale["colorbar_title"], "side": "top"},
            **scale["ticks"],
        },
    }
    if "zmid" in scale:
        values["zmid"] = scale["zmid"]
    codes = sorted(_STATUS_CODE.values())
    status = {
        **common,
        "name": "status",
        "z": sz,
        "text": stext,
        "customdata": shover,
        "textfont": {"size": 12, "color": "#ffffff"},
        # one flat colour per code (0 missed, 1 not read, 2 alone)
        "colorscale": [
            [0.0, STATUS_COLORS[MISSED]],
            [0.33, STATUS_COLORS[MISSED]],
            [0.34, STATUS_COLORS[NOT_READ]],
            [0.66, STATUS_COLORS[NOT_READ]],
            [0.67, STATUS_COLORS[ALONE]],
            [1.0, STATUS_COLORS[ALONE]],
        ],
        "zmin": codes[0],
        "zmax": codes[-1],
        "showscale": False,
    }
    # dark text on the light status cells
    status["textfont"]["color"] = "#212121"
    return [values, status]


def heatmap_height(n_rows: int) -> int:
    """Pixels: about 30 px per lesion, between 260 and 3,800."""
    return int(min(3800, max(260, 170 + 30 * n_rows)))


def heatmap_layout(m: LesionMatrix, rows: list[int] | None = None) -> dict:
    rows = list(range(len(m.lesion_ids))) if rows is None else rows
    axis = {"type": "category", "showgrid": False, "zeroline": False, "automargin": True}
    return {
        "xaxis": {**axis, "side": "top", "tickfont": {"size": 14}, "title": {"text": ""}},
        "yaxis": {
            **axis,
            "autorange": "reversed",
            "tickvals": [m.lesion_ids[i] for i in rows],
            "ticktext": [_row_label(m, i) for i in rows],
            "tickfont": {"size": 12},
            "title": {"text": ""},
        },
        "height": heatmap_height(len(rows)),
        "margin": {"t": 40, "l": 110, "b": 70, "r": 30},
        "hovermode": "closest",
        "dragmode": False,
    }


def reader_color(m: LesionMatrix, reader: str) -> str:
    return READER_COLORS[m.readers.index(reader) % len(READER_COLORS)]


def bland_altman_traces(ba: dict) -> list[dict]:
    """Points (one per lesion both found), then the bias and the two limits as lines."""
    pts = {
        "type": "scatter",
        "mode": "markers+text",
        "name": "lesions",
        "x": ba["mean"],
        "y": ba["diff"],
        "text": ba["lesion_ids"],
        "textposition": "top center",
        "marker": {"size": 10, "color": "#1f77b4", "line": {"width": 1, "color": "#ffffff"}},
        "hovertemplate": (
            "<b>%{text}</b><br>mean %{x:.3g} mL<br>"
            f"{ba['reader_a']} − {ba['reader_b']} "
            "%{y:.3g} mL<extra></extra>"
        ),
    }
    traces = [pts]
    s = ba.get("stats")
    if s and ba["mean"]:
        lo, hi = min(ba["mean"]), max(ba["mean"])
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 0.01)
        xs = [lo - pad, hi + pad]
        pct = int(round(100 * float(s.get("level") or 0.95)))
        for name, v, dash in (
            ("bias", s["bias"], "solid"),
            (f"upper {pct}% limit", s["loa_high"], "dash"),
            (f"lower {pct}% limit", s["loa_low"], "dash"),
        ):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": name,
                    "x": xs,
                    "y": [v, v],
                    "line": {"color": "#d62728" if name == "bias" else "#888888", "dash": dash},
                    "hovertemplate": f"{name} {v:.3g} mL<extra></extra>",
                }
            )
    return traces


def bland_altman_text(ba: dict) -> str:
    s = ba.get("stats")
    a, b = ba["reader_a"], ba["reader_b"]
    if not s:
        return (
            f"**Bland-Altman, {a} − {b}:** {len(ba['mean'])} lesion(s) found by both; "
            f"{ba.get('note') or 'too few for limits of agreement'}."
        )
    pct = int(round(100 * float(s.get("level") or 0.95)))
    where = "the run's" if ba["source"] == "run" else "recomputed on the view's"
    return (
        f"**Bland-Altman, {a} − {b}** ({s['n']} lesions found by both, {where} "
        f"numbers): bias {s['bias']:+.3g} mL [{s['bias_ci'][0]:.3g}, {s['bias_ci'][1]:.3g}], "
        f"{pct}% limits of agreement {s['loa_low']:.3g} to {s['loa_high']:.3g} mL."
    )


def bland_altman_layout(ba: dict) -> dict:
    return {
        "height": 300,
        "margin": {"t": 40, "l": 70, "b": 50, "r": 20},
        "xaxis": {"title": {"text": f"mean of {ba['reader_a']} and {ba['reader_b']} (mL)"}},
        "yaxis": {
            "title": {"text": f"{ba['reader_a']} − {ba['reader_b']} (mL)"},
            "zeroline": True,
        },
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "hovermode": "closest",
        "dragmode": False,
    }


def _offsets(n: int, width: float = 0.2) -> list[float]:
    """Side-by-side positions of ``n`` readers' points around a lesion's centre, so
    readers who drew the same volume stay visible."""
    if n <= 1:
        return [0.0] * n
    return [-width / 2 + width * k / (n - 1) for k in range(n)]


def spread_traces(m: LesionMatrix, rows: list[int] | None = None) -> list[dict]:
    """The range of each lesion's volumes (a grey bar from min to max), then one marker
    trace per reader. The x axis is numeric (the k-th lesion drawn at k, each reader a
    little to the side); each point's ``text`` is its lesion id."""
    rows = list(range(len(m.lesion_ids))) if rows is None else rows
    sp = spread(m)
    xs, ys = [], []
    for k, i in enumerate(rows):
        s = sp[i]
        if s["min"] is None:
            continue
        xs += [k, k, None]
        ys += [s["min"], s["max"], None]
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "range",
            "x": xs,
            "y": ys,
            "line": {"color": "#9e9e9e", "width": 10},
            "opacity": 0.6,
            "hoverinfo": "skip",
            "showlegend": False,
        }
    ]
    offsets = _offsets(len(m.readers))
    for r, reader in enumerate(m.readers):
        pts = [(k, i) for k, i in enumerate(rows) if np.isfinite(m.volume[i, r])]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": reader,
                "x": [k + offsets[r] for k, _ in pts],
                "y": [float(m.volume[i, r]) for _, i in pts],
                "text": [m.lesion_ids[i] for _, i in pts],
                "marker": {
                    "size": 10,
                    "color": reader_color(m, reader),
                    "line": {"width": 1, "color": "#ffffff"},
                },
                "hovertemplate": f"<b>%{{text}}</b> · {reader}: %{{y:.3g}} mL<extra></extra>",
            }
        )
    return traces


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks covering [lo, hi] (Plotly's own log ticks crowd a short range)."""
    out = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for d in (1, 2, 5):
            v = d * 10.0**e
            if lo / 2 <= v <= hi * 2:
                out.append(float(f"{v:.3g}"))
    return out


def spread_layout(m: LesionMatrix, rows: list[int] | None = None) -> dict:
    rows = list(range(len(m.lesion_ids))) if rows is None else rows
    v = m.volume[rows]
    pos = v[np.isfinite(v) & (v > 0)]
    log = bool(pos.size) and pos.max() / pos.min() > 20  # lesions of very different sizes
    yaxis = {"title": {"text": "volume (mL)" + (", log scale" if log else "")}}
    if log:
        ticks = _log_ticks(float(pos.min()), float(pos.max()))
        yaxis.update(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    else:
        yaxis.update(type="linear", rangemode="tozero")
    return {
        "height": 300,
        "margin": {"t": 40, "l": 70, "b": 50, "r": 20},
        "xaxis": {
            "tickvals": list(range(len(rows))),
            "ticktext": [m.lesion_ids[i] for i in rows],
            "range": [-0.5, len(rows) - 0.5],
            "showgrid": False,
            "zeroline": False,
            "title": {"text": "lesion"},
        },
        "yaxis": yaxis,
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "hovermode": "closest",
        "dragmode": False,
    }
