"""Panel ``lesion_agreement``: the lesions of a stored lesion run, reader by reader.

A thin adapter over :mod:`multireader.figures.lesion_matrix`: a lesion x reader matrix
(volume or Dice; missed and unread cells in grey), a Bland-Altman plot of two readers'
volumes and each lesion's spread of volumes, for the lesions whose series are in the
App's view. A click on a cell opens the lesion's slices (where the reader found it) or
the series (where the reader missed it); the figures stay put while that drill-down is
shown (:class:`panels._common.DrillDown`).
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from multireader.figures import lesion_matrix as LM

from ._common import SHOWN_ERRORS, DrillDown, OperatorButtons, take_choice

HELP = """Lesions matched across readers in 3-D, from the stored lesion run.

Each row is a lesion, each column a reader. Colour by the reader's volume against the
lesion's median volume (blue smaller, red larger; the cell gives mL), or by the reader's
mean Dice with the other readers who found the lesion. Dark grey cells: the reader read
the series and missed the lesion; light grey: the reader did not read the series. The
row label gives how many readers found the lesion of how many read the series.

Below: a Bland-Altman plot of two readers' volumes (bias and 95% limits of agreement)
and each lesion's volumes across readers. Click a cell or point to open the lesion's
slices, or the series where a reader missed it. The numbers follow the view's series;
run "Compute lesion agreement" again after the outlines change."""

OPERATOR = "@multireader/disagreement/compute_lesion_agreement"


class LesionAgreement(DrillDown, OperatorButtons, foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="lesion_agreement",
            label="Lesion agreement",
            icon="bubble_chart",
            help_markdown=HELP,
            surfaces="grid",
        )

    # --- events -----------------------------------------------------------------
    def on_load(self, ctx):
        self._compute(ctx)

    def on_change_dataset(self, ctx):
        for name in ("run_key", "reader_a", "reader_b"):
            ctx.panel.state.set(name, None)
        self._compute(ctx)

    def on_change_view(self, ctx):
        if self.view_unchanged(ctx):
            return
        self._compute(ctx)

    def on_change_choice(self, ctx):
        if not take_choice(ctx):
            return
        if ctx.panel.state.drill:  # new figures are of the figures' view: go back to it
            self.on_back(ctx)
            self._compute(ctx, view=self.base_view(ctx))
        else:
            self._compute(ctx)

    def run_lesions(self, ctx):
        ctx.prompt(OPERATOR)

    def on_cell_click(self, ctx):
        matrix = ctx.panel.state.matrix
        lesion, reader = ctx.params.get("y"), ctx.params.get("x")
        if not matrix or lesion not in matrix["lesions"] or reader not in matrix["readers"]:
            return
        view = LM.cell_view(self.base_view(ctx), matrix, lesion, reader)
        self.drill(ctx, view, LM.cell_description(matrix, lesion, reader))

    def on_ba_click(self, ctx):
        """A Bland-Altman point (its x is a mean volume): its lesion's slices."""
        idx, ids = ctx.params.get("idx"), ctx.panel.state.ba_ids or []
        if ctx.params.get("trace") == "lesions" and isinstance(idx, int) and 0 <= idx < len(ids):
            self._open_lesion(ctx, ids[idx])

    def on_spread_click(self, ctx):
        """A reader's point in the spread plot (the k-th lesion drawn sits at x = k,
        each reader a little to the side): its lesion's slices."""
        x, ids = ctx.params.get("x"), ctx.panel.state.spread_ids or []
        if isinstance(x, (int, float)) and 0 <= round(x) < len(ids):
            self._open_lesion(ctx, ids[round(x)])

    def _open_lesion(self, ctx, lesion):
        matrix = ctx.panel.state.matrix
        if not matrix or lesion not in matrix["lesions"]:
            return
        row = LM.lesion_row(ctx.dataset, matrix["run_key"], lesion)
        view = LM.lesion_view(self.base_view(ctx), row, filter_labels=matrix.get("newest", True))
        self.drill(ctx, view, f"of lesion {lesion}'s slices, with its outlines")

    # --- state ------------------------------------------------------------------
    def _compute(self, ctx, view=None):
        st = ctx.panel.state
        if view is None:
            self.remember_view(ctx)
            view = ctx.view
        st.drill = None
        st.runs = LM.lesion_runs(ctx.dataset)
        if st.run_key not in st.runs:
            st.run_key = st.runs[0] if st.runs else None
        if st.value not in LM.VALUES:
            st.value = "volume"
        try:
            m = LM.lesion_matrix(view, st.run_key)
        except LM.NoLesions as e:
            st.message, st.action, st.matrix = str(e), e.action, None
            return
        except SHOWN_ERRORS as e:
            st.message, st.action, st.matrix = f"Cannot show the lesions: {e}", None, None
            return
        readers = m.readers
        if st.reader_a not in readers:
            st.reader_a = readers[0]
        if st.reader_b not in readers or st.reader_b == st.reader_a:
            st.reader_b = next(r for r in readers if r != st.reader_a)
        rows = LM.shown_rows(m)
        st.message, st.action = None, None
        st.matrix = m.state()
        st.summary = LM.summary_text(m)
        st.n_rows = len(rows)
        st.rows_note = (
            f"*Showing the {len(rows)} most contested of {len(m.lesion_ids)} lesions.*"
            if len(rows) < len(m.lesion_ids)
            else ""
        )
        ba = LM.bland_altman(m, st.reader_a, st.reader_b)
        st.ba_ids = ba["lesion_ids"]
        st.spread_ids = [m.lesion_ids[i] for i in rows]
        st.ba_text = LM.bland_altman_text(ba)
        st.layouts = {
            "heatmap": LM.heatmap_layout(m, rows),
            "ba": LM.bland_altman_layout(ba),
            "spread": LM.spread_layout(m, rows),
        }
        # a fresh property name per result: Plotly does not cleanly redraw a figure whose
        # traces or colour scale changed
        st.rev = (st.rev or 0) + 1
        ctx.panel.set_data(f"lesions_{st.rev}", LM.heatmap_traces(m, st.value, rows))
        ctx.panel.set_data(f"ba_{st.rev}", LM.bland_altman_traces(ba))
        ctx.panel.set_data(f"spread_{st.rev}", LM.spread_traces(m, rows))

    # --- layout -----------------------------------------------------------------
    def render(self, ctx):
        panel = types.Object()
        st = ctx.panel.state
        gv = types.GridView(orientation="vertical", gap=1, pad=2)
        if st.message or not st.matrix:
            panel.md(st.message or "Loading the lesions...", name="message")
            if st.action == "compute_lesion_agreement":
                panel.btn(
                    "action_compute_lesion_agreement",
                    label="Compute lesion agreement",
                    on_click=self.run_lesions,
                    variant="contained",
                )
            else:
                self.action_button(panel, st.action)
            return types.Property(panel, view=gv)
        readers = st.matrix["readers"]
        row = panel.h_stack("choices", gap=2, align_y="center")
        if len(st.runs or []) > 1:
            row.enum(
                "run_key",
                st.runs,
                default=st.run_key,
                label="Lesion run",
                view=types.DropdownView(),
                on_change=self.on_change_choice,
            )
        row.enum(
            "value",
            list(LM.VALUES),
            default=st.value,
            label="Colour by",
            view=_dropdown(LM.VALUES),
            on_change=self.on_change_choice,
        )
        if not self.drill_header(panel, ctx):
            panel.md(st.summary, name="summary_text")
        if st.rows_note:
            panel.md(st.rows_note, name="rows_note")
        layouts = st.layouts
        panel.plot(
            f"lesions_{st.rev}",
            layout=layouts["heatmap"],
            config={"displayModeBar": False, "scrollZoom": False, "responsive": True},
            on_click=self.on_cell_click,
        )
        ab = panel.h_stack("ba_choices", gap=2, align_y="center")
        ab.enum(
            "reader_a",
            readers,
            default=st.reader_a,
            label="Reader A",
            view=types.DropdownView(),
            on_change=self.on_change_choice,
        )
        ab.enum(
            "reader_b",
            [r for r in readers if r != st.reader_a],
            default=st.reader_b,
            label="Reader B",
            view=types.DropdownView(),
            on_change=self.on_change_choice,
        )
        panel.md(st.ba_text, name="ba_text")
        panel.plot(
            f"ba_{st.rev}",
            layout=layouts["ba"],
            config={"displayModeBar": False, "scrollZoom": False, "responsive": True},
            on_click=self.on_ba_click,
        )
        panel.md("**Each lesion's volume, reader by reader** (the bar spans min to max).")
        panel.plot(
            f"spread_{st.rev}",
            layout=layouts["spread"],
            config={"displayModeBar": False, "scrollZoom": False, "responsive": True},
            on_click=self.on_spread_click,
        )
        return types.Property(panel, view=gv)


def _dropdown(labels: dict[str, str]) -> types.DropdownView:
    view = types.DropdownView()
    for value, label in labels.items():
        view.add_choice(value, label=label)
    return view
