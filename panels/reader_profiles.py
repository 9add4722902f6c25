"""Panel ``reader_profiles``: one reader at a time, against consensus, on the current view.

Three plots over :mod:`multireader.analyses.reader_report`: the reader's call rate per class
beside the consensus rate (the bias test), the confusion against consensus, and
agreement with consensus by session (the drift test). Every bar, cell and point sets the
App's view to the samples behind it.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._common import (
    SHARE_SCALE,
    SHOWN_ERRORS,
    ConsensusButton,
    DrillDown,
    OperatorButtons,
    take_choice,
)

_READER = "#1f77b4"
_CONSENSUS = "#aaaaaa"
_FLAG = "#d62728"


class ReaderProfiles(DrillDown, OperatorButtons, ConsensusButton, foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="reader_profiles",
            label="Reader profiles",
            icon="person_search",
            surfaces="grid",
            help_markdown=(
                "Each reader against consensus: call rates per class (bias), the "
                "confusion matrix, and agreement over sessions (drift). Click any bar, "
                "cell or point to see its samples."
            ),
        )

    def on_load(self, ctx):
        self.remember_view(ctx)
        self._refresh(ctx, ctx.view)

    def on_change_view(self, ctx):
        if self.view_unchanged(ctx):  # the samples behind a click: keep the figures
            return
        self.remember_view(ctx)
        self._refresh(ctx, ctx.view)

    def on_change_choice(self, ctx):
        if not take_choice(ctx):
            return
        if ctx.panel.state.drill:  # new figures are of the figures' view: go back to it
            self.on_back(ctx)
        self._refresh(ctx, self.base_view(ctx))

    # --- clicks -------------------------------------------------------------------
    def on_click_rate(self, ctx):
        from multireader.analyses import reader_report as RR

        st = ctx.panel.state
        meta = st.meta or {}
        label = ctx.params.get("x")
        trace = ctx.params.get("trace_idx")
        if label is None or trace is None:
            return
        field = meta["reader_field"] if trace == 0 else meta["consensus_field"]
        who = ctx.panel.state.reader if trace == 0 else "consensus"
        self.drill(ctx, RR.calls_view(self.base_view(ctx), field, label), f"{who} called {label}")

    def on_click_cell(self, ctx):
        from multireader.analyses import reader_report as RR

        meta = ctx.panel.state.meta or {}
        a, b = ctx.params.get("y"), ctx.params.get("x")
        if a is None or b is None:
            return
        view = RR.confusion_view(
            self.base_view(ctx), meta["reader_field"], meta["consensus_field"], a, b
        )
        self.drill(ctx, view, f"{ctx.panel.state.reader} called {a} and consensus {b}")

    def on_click_session(self, ctx):
        from multireader.analyses import reader_report as RR

        meta = ctx.panel.state.meta or {}
        session = ctx.params.get("x")
        if session is None:
            return
        view = RR.session_view(self.base_view(ctx), meta["reader_field"], session)
        self.drill(ctx, view, f"{ctx.panel.state.reader} read in session {session}")

    # --- state --------------------------------------------------------------------
    def _refresh(self, ctx, view):
        from multireader.analyses import reader_report as RR

        st = ctx.panel.state
        st.message = None
        found = RR.consensus_fields(ctx.dataset)
        if not found:
            st.message = "no_consensus"
            return
        if st.consensus_field not in found:
            st.consensus_field = found[0]
        if len(view) == 0:
            st.message = "empty_view"
            return
        try:
            prof = RR.profiles_for_view(view, st.consensus_field)
        except SHOWN_ERRORS as e:
            st.message = f"error: {e}"
            return
        readers = prof["readers"]
        st.readers = readers
        if st.reader not in readers:
            flagged = [f["reader"] for f in prof.get("flags", [])]
            st.reader = flagged[0] if flagged else readers[0]
        per = prof["per_reader"][st.reader]
        st.rev = (st.rev or 0) + 1
        rates, rates_layout = _rates(prof, st.reader)
        conf, conf_layout = _confusion(prof, st.reader)
        drift, drift_layout = _drift(prof, st.reader)
        ctx.panel.set_data(f"rates_{st.rev}", rates)
        ctx.panel.set_data(f"confusion_{st.rev}", conf)
        ctx.panel.set_data(f"drift_{st.rev}", drift)
        st.layouts = {"rates": rates_layout, "confusion": conf_layout, "drift": drift_layout}
        st.meta = {
            "reader_field": prof["reader_fields"][st.reader],
            "consensus_field": prof["consensus_field"],
            "summary": _summary(prof, st.reader, per),
        }

    # --- layout -------------------------------------------------------------------
    def render(self, ctx):
        st = ctx.panel.state
        panel = types.Object()
        if st.message == "no_consensus":
            panel.md(
                "### Reader profiles\n\nProfiles compare each reader with a consensus "
                "label. There is no consensus field yet.",
                name="empty",
            )
            panel.btn("run_consensus", label="Compute consensus", on_click=self.run_consensus)
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        row = panel.h_stack("choices", gap=2, align_y="center")
        if st.readers:
            row.enum(
                "reader",
                st.readers,
                default=st.reader,
                label="Reader",
                view=types.DropdownView(),
                on_change=self.on_change_choice,
            )
        if st.consensus_field:
            from multireader.analyses.reader_report import consensus_fields

            row.enum(
                "consensus_field",
                consensus_fields(ctx.dataset),
                default=st.consensus_field,
                label="Against",
                view=types.DropdownView(),
                on_change=self.on_change_choice,
            )
        self.drill_header(panel, ctx)
        if st.message == "empty_view":
            panel.md("The current view is empty: clear the filters to see the profiles.")
            self.action_button(panel, "clear_view")
        elif st.message and st.message.startswith("error: "):
            panel.md(f"**Cannot draw profiles:** {st.message[7:]}")
        elif st.layouts:
            panel.md((st.meta or {}).get("summary", ""), name="summary")
            cfg = {"displayModeBar": False, "responsive": True}
            panel.plot(
                f"rates_{st.rev}",
                layout=st.layouts["rates"],
                config=cfg,
                on_click=self.on_click_rate,
            )
            panel.plot(
                f"confusion_{st.rev}",
                layout=st.layouts["confusion"],
                config=cfg,
                on_click=self.on_click_cell,
            )
            panel.plot(
                f"drift_{st.rev}",
                layout=st.layouts["drift"],
                config=cfg,
                on_click=self.on_click_session,
            )
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1))


def _base(title: str) -> dict:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 90},
        "height": 380,
        "font": {"size": 12},
    }


def _rates(prof: dict, reader: str) -> tuple[list, dict]:
    per = prof["per_reader"][reader]
    classes = prof["classes"]
    prev = per.get("prevalence") or {}
    mine = [prev.get(c, {}).get("rate") for c in classes]
    ref = [prev.get(c, {}).get("consensus_rate") for c in classes]
    flagged = [bool(prev.get(c, {}).get("flagged")) for c in classes]
    p_holm = [prev.get(c, {}).get("p_holm") for c in classes]
    traces = [
        {
            "type": "bar",
            "name": reader,
            "x": classes,
            "y": mine,
            "marker": {"color": [_FLAG if f else _READER for f in flagged]},
            "customdata": [[p] for p in p_holm],
            "hovertemplate": (
                f"{reader} calls %{{x}} on %{{y:.0%}} of images"
                "<br>Holm-adjusted p = %{customdata[0]:.2g}<extra></extra>"
            ),
        },
        {
            "type": "bar",
            "name": "consensus",
            "x": classes,
            "y": ref,
            "marker": {"color": _CONSENSUS},
            "hovertemplate": "consensus: %{x} on %{y:.0%} of the same images<extra></extra>",
        },
    ]
    layout = _base(f"Call rates: {reader} vs consensus (red = flagged bias)")
    layout.update(
        barmode="group",
        hovermode="closest",
        yaxis={"tickformat": ".0%", "title": {"text": "share of images"}},
        xaxis={"tickangle": -30},
        legend={"orientation": "h", "y": 1.08, "x": 1, "xanchor": "right"},
    )
    return traces, layout


def _confusion(prof: dict, reader: str) -> tuple[list, dict]:
    per = prof["per_reader"][reader]
    classes = prof["classes"]
    # the profile's table has consensus rows and reader columns; show the reader's rows
    ref_rows = per.get("confusion") or [[0] * len(classes) for _ in classes]
    conf = [list(col) for col in zip(*ref_rows, strict=True)]
    totals = [sum(r) for r in conf]
    share = [[(v / t if t else 0.0) for v in r] for r, t in zip(conf, totals, strict=True)]
    traces = [
        {
            "type": "heatmap",
            "x": classes,
            "y": classes,
            "z": share,
            "text": [[str(v) for v in r] for r in conf],
            "texttemplate": "%{text}",
            "colorscale": SHARE_SCALE,
            "zmin": 0,
            "zmax": 1,
            "xgap": 1,
            "ygap": 1,
            "colorbar": {"title": {"text": "share of row"}, "len": 0.8},
            "hovertemplate": (
                f"{reader} said %{{y}}, consensus %{{x}}: %{{text}} images"
                "<br>%{z:.0%} of the row<extra></extra>"
            ),
        }
    ]
    acc = per.get("accuracy")
    title = f"{reader} (rows) vs consensus (columns)"
    if acc is not None:
        title += f": {acc:.0%} agree"
    layout = _base(title)
    layout.update(
        yaxis={"autorange": "reversed", "title": {"text": reader}},
        xaxis={"tickangle": -30, "title": {"text": "consensus"}},
        margin={"l": 110, "r": 20, "t": 50, "b": 90},
    )
    return traces, layout


def _drift(prof: dict, reader: str) -> tuple[list, dict]:
    per = prof["per_reader"][reader]
    drift = per.get("drift") or {}
    sessions = drift.get("sessions") or []
    x = [s["session"] for s in sessions]
    y = [s["agreement"] for s in sessions]
    n = [s["n"] for s in sessions]
    color = _FLAG if drift.get("flagged") else _READER
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": x,
            "y": y,
            "customdata": [[v] for v in n],
            "marker": {"size": 10, "color": color},
            "line": {"color": color},
            "hovertemplate": (
                "session %{x}: %{y:.0%} agree with consensus (n = %{customdata[0]})<extra></extra>"
            ),
        }
    ]
    p = drift.get("p_holm")
    title = "Agreement with consensus by session"
    if p is not None:
        title += f" (trend p = {p:.2g}{', flagged' if drift.get('flagged') else ''})"
    elif not sessions:
        title += ": no sessions recorded"
    layout = _base(title)
    layout.update(
        yaxis={"range": [0, 1.05], "tickformat": ".0%", "title": {"text": "agreement"}},
        xaxis={"title": {"text": "session"}, "type": "category"},
    )
    return traces, layout


def _summary(prof: dict, reader: str, per: dict) -> str:
    flags = [f for f in prof.get("flags", []) if f.get("reader") == reader]
    head = (
        f"**{reader}**: {per.get('n_reads', 0)} reads on this view, compared with "
        f"**{prof['consensus_field']}**."
    )
    if flags:
        head += "\n\n" + "\n".join(f"- **{f['kind']}**: {f['detail']}" for f in flags)
    else:
        head += " No bias or drift flagged."
    scale = _scale_line(per)
    if scale:
        head += "\n\n" + scale
    if prof.get("consensus_run"):
        head += f"\n\n_{prof['consensus_run']}_"
    return head


def _scale_line(per: dict) -> str | None:
    """The reader's scale test in one line, flagged or not: the level shift with its
    interval on an ordered scale, Stuart-Maxwell's marginal homogeneity on a nominal one."""
    from multireader.stats.estimates import fmt_num, fmt_p

    ob, mh = per.get("ordinal_bias"), per.get("marginal_homogeneity")
    if ob and ob.get("n_items"):
        lo, hi = ob.get("shift_ci") or [None, None]
        d = ob.get("shift")
        sign = "+" if isinstance(d, int | float) and d > 0 else ""
        return (
            f"Level shift vs the other readers' median: **{sign}{fmt_num(d, 2)}** "
            f"levels [{fmt_num(lo, 2)}, {fmt_num(hi, 2)}] on {ob['n_items']} images "
            f"({ob.get('n_higher', 0)} higher, {ob.get('n_lower', 0)} lower; Wilcoxon "
            f"{fmt_p(ob.get('p_holm'), 'p')}, Holm)"
        )
    if mh and mh.get("n_items"):
        return (
            f"Marginal homogeneity vs consensus (Stuart-Maxwell): chi2 "
            f"{fmt_num(mh.get('statistic'), 2)}, df {mh.get('df')}, "
            f"{fmt_p(mh.get('p_holm'), 'p')} (Holm) on {mh['n_items']} images"
        )
    return None
