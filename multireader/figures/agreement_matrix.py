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
from dataclasses import dataclass

import numpy as np

from multireader.core import collect as C
from multireader.errors import MultireaderError
from multireader.stats import agreement as A
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
) -> AgreementMatrix:
    """The reader x reader matrix of ``statistic`` on ``view``.

    Class statistics (Cohen's kappa, Cohen 1960; weighted kappa, Cohen 1968; percent
    agreement) are computed on the view itself, with percentile bootstrap intervals
    over patients where a ``patient_key`` exists (:func:`multireader.stats.agreement.
    categorical_summary`, ``n_boot`` replicates). ``class_name`` compares the readers
    on that class against all others (each label recoded "class" / "not class"): the
    overall line then gives Fleiss' kappa_j for the class (Fleiss 1971) and its
    specific agreement. Mask and box statistics (Dice, IoU, F1) come from the newest
    stored agreement run that has them: reading every mask of a large view on each view
    change would be too slow for a panel, so ``source`` says which run, and whether it
    was computed on this view.

    Raises :class:`NoMatrix` when the view has no samples, no reader labels of the
    statistic's kind, a single reader, or (masks, boxes) no agreement run yet.
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
    return _run_matrix(view, reader_set, statistic)


def _entry(label: str, e: dict | None) -> dict:
    e = e or {}
    return {"label": label, "value": e.get("value"), "ci": e.get("ci"), "n": e.get("n")}


def _nan(m) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in m], float)


def _class_matrix(view, reader_set, statistic, class_name, n_boot, level, seed):
    reads = C.categorical_reads(view, reader_set, scores=False, sessions=False)
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
