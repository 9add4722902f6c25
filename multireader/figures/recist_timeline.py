"""The numbers and views behind the ``recist_timeline`` panel, with no App code.

Everything comes from a stored RECIST run (:func:`multireader.analyses.recist.
compute_recist_agreement`, kind ``"recist"``): its ``patients`` table holds each
reader's sum of target diameters at every timepoint, the percent changes, the response
at every follow-up and the best overall response. The panel shows one patient at a time,
the patients whose readers disagree at some follow-up first.

One figure, a list of plain Plotly trace dicts with a layout dict: each reader's sum of
diameters across the timepoints (one line per reader, every point annotated with the
reader's call), with each reader's RECIST thresholds drawn in the reader's colour: the
partial-response line at 70 % of the reader's baseline sum, and the progression line at
each follow-up, the larger of 120 % of the reader's nadir before it and the nadir plus
5 mm (both from the run's rules). A point under the first is a PR by the sums, a point
on or over the second a PD. The calls side by side are a small table
(:func:`calls_table`).

A click on a reader's point becomes a view (:func:`point_view`): the samples of that
patient at that timepoint that hold the reader's measurements, showing the reader's
target lesions (and any new lesion) and none of the other readers' measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from multireader.core import fields as FLD
from multireader.errors import MultireaderError

RUN_KIND = "recist"

#: one colour per reader, the same as the other panels'
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
#: the sideways shift of each reader's points, so overlapping sums stay clickable
OFFSET = 0.06
#: a reader's threshold trace is named "<reader> PR line" / "<reader> PD line"
PR_LINE, PD_LINE = "PR line", "PD line"


class NoRecist(MultireaderError):
    """Nothing to draw; the message says why and ``action`` names what fixes it:
    ``"compute_recist_agreement"``, ``"clear_view"`` or None."""

    def __init__(self, message: str, action: str | None = None):
        super().__init__(message)
        self.action = action


def _num(v) -> float | None:
    """A stored number, or None for a missing one (a target not measured: NaN)."""
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------- the run


def recist_runs(dataset) -> list[str]:
    """The keys of the stored RECIST runs, newest first."""
    from multireader.core import runs

    return runs.newest_first(dataset, RUN_KIND)


def load_run(dataset, run_key: str | None = None):
    """The :class:`~multireader.analyses.recist.RecistAgreementResults` of ``run_key``
    (default: the newest RECIST run); :class:`NoRecist` when there is none."""
    from multireader.analyses.recist import RecistAgreementResults

    if run_key is None:
        keys = recist_runs(dataset)
        if not keys:
            raise NoRecist(
                "No RECIST analysis on this dataset yet. Run “Compute RECIST agreement” "
                "on the readers' measurements; this panel then shows each reader's sum of "
                "diameters over the timepoints, patient by patient.",
                action="compute_recist_agreement",
            )
        run_key = keys[0]
    return RecistAgreementResults.from_run(dataset, run_key)


def _given(calls: list, ne: str) -> list:
    return [c for c in calls if c is not None and (ne == "class" or c != "NE")]


def discordant_followups(res, patient: str) -> list[int]:
    """The follow-up timepoints of ``patient`` where the readers' calls differ (the
    run's own rule: at least two calls, not all equal; NE left out with ``ne="missing"``)."""
    row = res.patient(patient)
    ne = res.results.get("ne") or "class"
    out = []
    for k, t in enumerate(row["timepoints"][1:]):
        calls = [None if a is None else a["responses"][k] for a in row["readers"].values()]
        given = _given(calls, ne)
        if len(given) >= 2 and len(set(given)) > 1:
            out.append(t)
    return out


def patient_order(res, patients: list[str] | None = None) -> list[str]:
    """The run's patients (or those of ``patients`` in the run), the discordant ones
    first (most discordant follow-ups first), each group in patient-key order."""
    keys = res.patient_keys
    if patients is not None:
        wanted = set(patients)
        keys = [p for p in keys if p in wanted]
    n = {p: len(discordant_followups(res, p)) for p in keys}
    return sorted(keys, key=lambda p: (-n[p], str(p)))


def patient_labels(res, patients: list[str]) -> dict[str, str]:
    """The drop-down's label of each patient: its key, and where the readers disagree."""
    out = {}
    for p in patients:
        d = discordant_followups(res, p)
        out[p] = (
            f"{p} · discordant at follow-up {', '.join(str(t) for t in d)}"
            if d
            else f"{p} · readers agree"
        )
    return out


def view_patients(view, res) -> list[str]:
    """The run's patients with a sample in ``view``, discordant first; :class:`NoRecist`
    when the view holds none."""
    if not view._dataset.has_field(FLD.PATIENT_KEY):
        raise NoRecist("This dataset has no patient keys.", action=None)
    present = {p for p in view.distinct(FLD.PATIENT_KEY) if p is not None}
    keys = patient_order(res, sorted(present, key=str))
    if not keys:
        raise NoRecist(
            f"None of the {len(res.patient_keys)} patients of RECIST run "
            f"'{res.run_key}' has a sample in the current view.",
            action="clear_view",
        )
    return keys


# --------------------------------------------------------------------- one patient


@dataclass
class Timeline:
    """One patient of a RECIST run: per reader the sums, changes, calls and thresholds.

    ``sums[reader]``: one value per timepoint (None where a target was not measured or
    the reader did not read it); ``responses[reader]``: one call per follow-up;
    ``pr_line[reader]``: 70 % of the baseline sum (the run's ``pr_change_pct``);
    ``pd_line[reader]``: per follow-up, the sum from which the call is PD by the sums.
    """

    run_key: str
    patient: str
    readers: list[str]
    fields: list[str]
    timepoints: list[int]
    days: list | None
    sums: dict = field(default_factory=dict)
    pct_baseline: dict = field(default_factory=dict)
    responses: dict = field(default_factory=dict)
    bor: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)
    pr_line: dict = field(default_factory=dict)
    pd_line: dict = field(default_factory=dict)
    adjudicated: dict = field(default_factory=dict)
    discordant: list[int] = field(default_factory=list)
    rules: dict = field(default_factory=dict)

    def state(self) -> dict:
        """What the panel keeps in its state to answer clicks."""
        return {
            "run_key": self.run_key,
            "patient": self.patient,
            "readers": self.readers,
            "fields": self.fields,
            "timepoints": self.timepoints,
            "targets": self.targets,
            "sums": self.sums,
        }


def _rule(rules: dict, name: str, default: float) -> float:
    v = rules.get(name)
    return default if v is None else float(v)


def thresholds(sums: list, rules: dict) -> tuple[float | None, list]:
    """``(pr_line, pd_line)`` of one reader's sums: the sum at or under which a follow-up
    is a PR (baseline x (1 + pr_change_pct / 100)), and per follow-up the sum at or over
    which it is a PD (the larger of nadir x (1 + pd_change_pct / 100) and nadir +
    pd_min_increase_mm, the
    nadir the smallest sum before that follow-up)."""
    pr_dec = -_rule(rules, "pr_change_pct", -30.0) / 100
    pd_inc = _rule(rules, "pd_change_pct", 20.0) / 100
    pd_abs = _rule(rules, "pd_min_increase_mm", 5.0)
    vals = [_num(v) for v in sums]
    base = vals[0] if vals else None
    pr = None if base is None else base * (1 - pr_dec)
    pd = []
    for t in range(1, len(vals)):
        before = [v for v in vals[:t] if v is not None]
        if not before:
            pd.append(None)
            continue
        nadir = min(before)
        pd.append(max(nadir * (1 + pd_inc), nadir + pd_abs))
    return pr, pd


def timeline(res, patient: str) -> Timeline:
    """Patient ``patient`` of RECIST results ``res``."""
    row = res.patient(patient)
    readers = res.readers
    fields = list(res.results.get("fields") or [])
    rules = dict(res.results.get("rules") or {})
    tl = Timeline(
        run_key=res.run_key,
        patient=patient,
        readers=readers,
        fields=fields,
        timepoints=[int(t) for t in row["timepoints"]],
        days=row.get("days"),
        adjudicated=dict(row.get("adjudicated") or {}),
        discordant=discordant_followups(res, patient),
        rules=rules,
    )
    n = len(tl.timepoints)
    for w in readers:
        a = row["readers"].get(w)
        if a is None:
            tl.sums[w] = [None] * n
            tl.pct_baseline[w] = [None] * n
            tl.responses[w] = [None] * (n - 1)
            tl.bor[w] = None
            tl.targets[w] = []
            tl.pr_line[w], tl.pd_line[w] = None, [None] * (n - 1)
            continue
        tl.sums[w] = [_num(v) for v in a["sums"]]
        tl.pct_baseline[w] = [_num(v) for v in a.get("pct_baseline") or [None] * n]
        tl.responses[w] = list(a["responses"])
        tl.bor[w] = a.get("bor")
        tl.targets[w] = list(a.get("targets") or [])
        tl.pr_line[w], tl.pd_line[w] = thresholds(a["sums"], rules)
    return tl


def timepoint_label(tl: Timeline, k: int) -> str:
    t = tl.timepoints[k]
    name = "baseline" if k == 0 else f"follow-up {t}"
    days = tl.days[k] if tl.days and k < len(tl.days) else None
    return name if days is None or k == 0 else f"{name} (day {int(days)})"


def reader_color(tl: Timeline, reader: str) -> str:
    return READER_COLORS[tl.readers.index(reader) % len(READER_COLORS)]


def offsets(n: int) -> list[float]:
    return [(i - (n - 1) / 2) * OFFSET for i in range(n)]


def traces(tl: Timeline) -> list[dict]:
    """One line per reader (named by the reader, its points annotated with the calls),
    then each reader's PR line and PD line, dotted, in the reader's colour."""
    out, lines = [], []
    offs = offsets(len(tl.readers))
    n = len(tl.timepoints)
    for w, off in zip(tl.readers, offs, strict=True):
        color = reader_color(tl, w)
        calls = [""] + [c or "" for c in tl.responses[w]]
        pct = tl.pct_baseline[w]
        hover = []
        for k in range(n):
            s = tl.sums[w][k]
            what = "not measured" if s is None else f"{s:.1f} mm"
            if k and pct[k] is not None:
                what += f" ({pct[k]:+.1f} % from baseline)"
            call = f"<br>call {calls[k]}" if k and calls[k] else ""
            hover.append(f"<b>{w}</b> · {timepoint_label(tl, k)}<br>sum {what}{call}")
        out.append(
            {
                "type": "scatter",
                "mode": "lines+markers+text",
                "name": w,
                "legendgroup": w,
                "x": [k + off for k in range(n)],
                "y": list(tl.sums[w]),
                "text": calls,
                "textposition": "top center",
                "textfont": {"color": color, "size": 12},
                "marker": {"size": 11, "color": color, "line": {"width": 1, "color": "#ffffff"}},
                "line": {"color": color, "width": 2},
                "hovertext": hover,
                "hovertemplate": "%{hovertext}<extra></extra>",
            }
        )
        pr, pd = tl.pr_line[w], tl.pd_line[w]
        if pr is not None:
            lines.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{w} {PR_LINE}",
                    "legendgroup": w,
                    "showlegend": False,
                    "x": [-0.3, n - 0.7],
                    "y": [pr, pr],
                    "line": {"color": color, "dash": "dot", "width": 1},
                    "hovertemplate": f"{w}: PR at or under {pr:.1f} mm "
                    "(−30 % from baseline)<extra></extra>",
                }
            )
        if any(v is not None for v in pd):
            xs, ys = [], []
            for k, v in enumerate(pd, start=1):  # a step over each follow-up
                xs += [k - 0.3, k + 0.3, None]
                ys += [v, v, None]
            lines.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{w} {PD_LINE}",
                    "legendgroup": w,
                    "showlegend": False,
                    "x": xs,
                    "y": ys,
                    "line": {"color": color, "dash": "dash", "width": 1},
                    "hovertemplate": f"{w}: PD at or over %{{y:.1f}} mm "
                    "(+20 % and +5 mm from the nadir)<extra></extra>",
                }
            )
    return out + lines


def layout(tl: Timeline) -> dict:
    n = len(tl.timepoints)
    shapes = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": tl.timepoints.index(t) - 0.4,
            "x1": tl.timepoints.index(t) + 0.4,
            "y0": 0,
            "y1": 1,
            "fillcolor": "#fd8d3c",
            "opacity": 0.12,
            "line": {"width": 0},
            "layer": "below",
        }
        for t in tl.discordant
    ]
    return {
        "height": 420,
        "margin": {"t": 40, "l": 70, "b": 60, "r": 20},
        "xaxis": {
            "tickmode": "array",
            "tickvals": list(range(n)),
            "ticktext": [timepoint_label(tl, k) for k in range(n)],
            "range": [-0.5, n - 0.5],
            "zeroline": False,
        },
        "yaxis": {"title": {"text": "sum of target diameters (mm)"}, "rangemode": "tozero"},
        "shapes": shapes,
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "hovermode": "closest",
        "dragmode": False,
    }


def summary_text(tl: Timeline) -> str:
    if tl.discordant:
        where = ", ".join(str(t) for t in tl.discordant)
        head = f"**Patient {tl.patient}: the readers' calls differ at follow-up {where}**"
    else:
        head = f"**Patient {tl.patient}: the readers agree at every follow-up**"
    return (
        f"{head} (RECIST run '{tl.run_key}'). Dotted: each reader's PR line (−30 % from "
        "the baseline sum); dashed: the PD line (+20 % and +5 mm from the nadir). Click a "
        "point to open that reader's measured lesions at that timepoint."
    )


def _cell(tl: Timeline, w: str, k: int) -> str:
    s = tl.sums[w][k]
    text = "—" if s is None else f"{s:.1f} mm"
    if k == 0:
        return text
    pct = tl.pct_baseline[w][k]
    if s is not None and pct is not None:
        text += f" ({pct:+.0f} %)"
    call = tl.responses[w][k - 1]
    return f"**{call}** · {text}" if call else text


def calls_table(tl: Timeline) -> str:
    """The calls side by side, as a markdown table: a row per reader (sum, change from
    baseline and call per timepoint, best overall response), then the adjudicated calls;
    a discordant follow-up's header is marked."""
    n = len(tl.timepoints)
    heads = ["reader"]
    for k in range(n):
        label = timepoint_label(tl, k)
        heads.append(f"⚠ {label}" if tl.timepoints[k] in tl.discordant else label)
    heads.append("best overall")
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for w in tl.readers:
        cells = [w] + [_cell(tl, w, k) for k in range(n)] + [tl.bor[w] or "—"]
        lines.append("| " + " | ".join(cells) + " |")
    if tl.adjudicated:
        cells = ["adjudicated"]
        for k in range(n):
            a = tl.adjudicated.get(str(tl.timepoints[k])) if k else None
            cells.append(f"**{a['response']}** · {a.get('adjudicator') or '?'}" if a else "")
        cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------- click views


def point_of(state: dict, reader: str | None, idx) -> tuple[str, int] | None:
    """``(reader, timepoint)`` of a click on point ``idx`` of trace ``reader``, or None
    (a threshold line, a point without a sum)."""
    if reader not in (state or {}).get("readers", []) or not isinstance(idx, int):
        return None
    if not 0 <= idx < len(state["timepoints"]) or state["sums"][reader][idx] is None:
        return None
    return reader, state["timepoints"][idx]


def point_view(view, state: dict, reader: str, timepoint: int):
    """The samples of the timeline's patient at ``timepoint`` that hold ``reader``'s
    measurements, in study, series and slice order; only the reader's target lesions
    and new lesions shown in its measurement field, the other readers' measurement
    fields left out."""
    from fiftyone import ViewField as F

    i = state["readers"].index(reader)
    fld = state["fields"][i]
    out = view.match((F(FLD.PATIENT_KEY) == state["patient"]) & (F(FLD.TIMEPOINT) == timepoint))
    out = out.match(F(f"{fld}.polylines").length() > 0)
    others = [f for f in state["fields"] if f != fld and view.has_field(f)]
    if others:
        out = out.exclude_fields(others)
    targets = list(state["targets"].get(reader) or [])
    out = out.filter_labels(
        fld,
        F("lesion_id").is_in(targets) | (F("new_lesion") == True),  # noqa: E712
        only_matches=False,
    )
    return out.sort_by([(FLD.STUDY_UID, 1), (FLD.SERIES_UID, 1), (FLD.SLICE_INDEX, 1)])


def point_description(state: dict, reader: str, timepoint: int) -> str:
    what = "baseline" if timepoint == state["timepoints"][0] else f"follow-up {timepoint}"
    n = len(state["targets"].get(reader) or [])
    return (
        f"where {reader} measured patient {state['patient']} at {what} "
        f"({n} target lesion{'s' if n != 1 else ''} and any new lesion shown)"
    )
