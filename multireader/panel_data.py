"""The numbers and views behind the ``agreement_heatmap`` panel, with no App code.

The panel shows pairwise Cohen's kappa between every two readers' class labels on the
App's current view, and turns a clicked cell into a view: off the diagonal, the samples
both readers labelled differently; on the diagonal, the samples that reader labelled.
Everything here is plain FiftyOne core and numpy so it can be tested without a browser;
the Plotly trace and layout are plain dicts for the same reason.

A label outside the dataset's label schema counts as missing in the statistics (see
:func:`multireader.collect.categorical_reads`), so the click views only count labels
from the schema's classes: the number a cell shows and the samples it opens agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from . import agreement as A
from . import collect as C

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


class NoMatrix(ValueError):
    """There is nothing to draw for this view; the message says why, for the user."""


@dataclass
class AgreementMatrix:
    """Pairwise Cohen's kappa of R readers on one view."""

    readers: list[str]
    fields: list[str]
    classes: list[str]
    level: str  # "slice" (one item = one sample) or "series"
    kappa: np.ndarray  # (R, R) float, NaN where undefined; diagonal 1.0
    n: np.ndarray  # (R, R) int, items both read; diagonal = that reader's labels
    n_disagree: np.ndarray  # (R, R) int, items both read with different labels
    n_items: int

    def state(self) -> dict:
        """What the panel keeps in its (small) state to answer clicks."""
        return {
            "readers": self.readers,
            "fields": self.fields,
            "classes": self.classes,
            "level": self.level,
            "n_items": self.n_items,
        }


def agreement_matrix(view) -> AgreementMatrix:
    """Cohen's kappa (Cohen 1960, unweighted) of every pair of readers on ``view``.

    Raises :class:`NoMatrix` when the view has no samples, no reader class labels, or
    labels of a single reader.
    """
    try:
        reader_set = C.select_readers(view, KIND)
    except C.ReaderSelectionError as e:
        raise NoMatrix(
            "This dataset has no reader class labels to compare. Import reader labels "
            "(one `reader_<id>` classification field per reader) first."
        ) from e
    if len(reader_set.fields) < 2:
        raise NoMatrix(
            f"Only one reader ({reader_set.readers[0]}) has class labels here; agreement "
            "needs at least two readers."
        )
    if view.count() == 0:
        raise NoMatrix("The current view has no samples. Clear or widen the view.")
    reads = C.categorical_reads(view, reader_set, scores=False, sessions=False)
    x = reads.codes
    kappa, n = A.pairwise_cohen_kappa(x, max(len(reads.classes), 1))
    read = x >= 0
    differ = np.zeros_like(n)
    for a in range(x.shape[1]):
        both = read[:, a : a + 1] & read
        differ[a] = (both & (x[:, a : a + 1] != x)).sum(0)
    return AgreementMatrix(
        readers=reads.readers,
        fields=reads.fields,
        classes=reads.classes,
        level=reader_set.level,
        kappa=kappa,
        n=n,
        n_disagree=differ,
        n_items=reads.n_items,
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


def cell_view(view, state: dict, reader_x: str, reader_y: str):
    """The view behind the clicked cell (column ``reader_x``, row ``reader_y``)."""
    readers, fields = state["readers"], state["fields"]
    if reader_x not in readers or reader_y not in readers:
        raise KeyError(f"no reader {reader_x!r} or {reader_y!r} in {readers}")
    fx, fy = fields[readers.index(reader_x)], fields[readers.index(reader_y)]
    if fx == fy:
        return reader_view(view, fx, state["classes"])
    return pair_view(view, fy, fx, state["classes"])


def view_key(stages: list | None) -> str:
    """A comparable key of serialized view stages (the stage uuids left out)."""
    clean = [{k: v for k, v in s.items() if k != "_uuid"} for s in stages or []]
    return json.dumps(clean, sort_keys=True, default=str)


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.2f}"


def heatmap_trace(m: AgreementMatrix) -> dict:
    """The Plotly heatmap: kappa off the diagonal, each reader's label count on it.

    The diagonal has no kappa (a gap, drawn in the background colour) so the colour
    scale stays kappa's own; its text gives the reader's number of labels.
    """
    items = "series" if m.level == "series" else "samples"
    R = len(m.readers)
    z, text, hover = [], [], []
    for i in range(R):
        zr, tr, hr = [], [], []
        for j in range(R):
            if i == j:
                zr.append(None)
                tr.append(f"{int(m.n[i, i])}<br>labels")
                hr.append(f"<b>{m.readers[i]}</b><br>labelled {int(m.n[i, i])} {items}")
                continue
            k = float(m.kappa[i, j])
            zr.append(None if math.isnan(k) else round(k, 6))
            tr.append(_fmt(k))
            hr.append(
                f"<b>{m.readers[i]} vs {m.readers[j]}</b><br>Cohen's kappa = {_fmt(k)}"
                f"<br>n = {int(m.n[i, j])} {items} both read"
                f"<br>{int(m.n_disagree[i, j])} labelled differently"
            )
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    return {
        "type": "heatmap",
        "name": "kappa",
        "x": list(m.readers),
        "y": list(m.readers),
        "z": z,
        "zmin": -1,
        "zmax": 1,
        "zmid": 0,
        "colorscale": KAPPA_COLORSCALE,
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
            "title": {"text": "Cohen's κ", "side": "top"},
            "tickvals": [-1, -0.5, 0, 0.5, 1],
            "ticktext": ["−1", "−0.5", "0 chance", "0.5", "1 perfect"],
            "tickfont": {"size": 13},
        },
    }


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
