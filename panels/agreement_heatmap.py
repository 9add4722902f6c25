"""Panel ``agreement_heatmap``: a reader x reader matrix of agreement, click to drill in.

A thin adapter over :mod:`multireader.figures.agreement_matrix`: the matrix of the chosen statistic
(kappa, weighted kappa, percent agreement, Dice, IoU, F1, all on the current view; Dice,
IoU and F1 from the stored agreement run only when the view has too many masks or boxes
to read, or mask files are missing), overall or for one class against the rest, with the
all-reader line (Fleiss, Krippendorff, AC1; mean pairwise and generalised Dice; mean
pairwise F1) under it. The Plotly trace goes to panel data, the few
things a click needs to panel state.

Clicking a cell sets the App's view to the samples behind it; the matrix stays put while
that drill-down is shown (:class:`panels._common.DrillDown`) and recomputes on any other
view change.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from multireader.figures import agreement_matrix as PD

from ._common import DrillDown, OperatorButtons, take_choice

HELP = f"""Agreement between every two readers on the current view.

Choose the statistic: Cohen's kappa (1 = perfect, 0 = chance, below 0 = worse than
chance), weighted kappa for ordered classes, percent agreement, Dice / IoU (masks) or
F1 (boxes), all on the current view (a view with more than {PD.MAX_VIEW_MASKS:,} masks
or {PD.MAX_VIEW_BOX_SAMPLES:,} boxed samples shows the stored agreement run instead, and
says so). Choose a class to compare the readers on that class against all others.
Hover a cell for its confidence interval and the number of samples both read; the
diagonal gives each reader's number of labels. The line under the matrix gives Fleiss'
kappa, Krippendorff's alpha and Gwet's AC1 over all readers (for masks: mean pairwise
and generalised Dice; for boxes: mean pairwise F1). Click a cell to see its samples."""

ALL_CLASSES = "All classes"


class AgreementHeatmap(DrillDown, OperatorButtons, foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="agreement_heatmap",
            label="Reader agreement",
            icon="grid_on",
            help_markdown=HELP,
            surfaces="grid",
        )

    def on_load(self, ctx):
        self._compute(ctx)

    def on_change_dataset(self, ctx):
        ctx.panel.state.statistic = None
        ctx.panel.state.class_choice = None
        self._compute(ctx)

    def on_change_view(self, ctx):
        if self.view_unchanged(ctx):
            return
        self._compute(ctx)

    def on_change_choice(self, ctx):
        if not take_choice(ctx):
            return
        if ctx.panel.state.drill:  # a new statistic is of the figure's view: go back to it
            self.on_back(ctx)
            self._compute(ctx, view=self.base_view(ctx))
        else:
            self._compute(ctx)

    def _compute(self, ctx, view=None):
        """Recompute on ``view`` (default: the App's view) for the chosen statistic."""
        st = ctx.panel.state
        stats = PD.available_statistics(ctx.dataset)
        st.statistics = stats
        if st.statistic not in stats:
            st.statistic = stats[0] if stats else "cohen_kappa"
        kind = PD.STATISTICS[st.statistic].kind
        # written only when it must change: a state write from an event that started
        # before a newer choice would undo that choice
        if st.class_choice is None or (kind != "classification" and st.class_choice != ALL_CLASSES):
            st.class_choice = ALL_CLASSES
        if view is None:
            self.remember_view(ctx)
            view = ctx.view
        st.drill = None
        try:
            class_name = None if st.class_choice == ALL_CLASSES else st.class_choice
            matrix = PD.agreement_matrix(view, st.statistic, class_name)
        except PD.NoMatrix as e:
            st.message, st.action, st.matrix = str(e), e.action, None
            return
        st.message, st.action = None, None
        st.matrix = {
            **matrix.state(),
            "overall": PD.overall_text(matrix),
            "source": matrix.source,
        }
        # a fresh property name per result: Plotly does not cleanly redraw a heatmap
        # whose colour scale changed, so each result gets its own plot
        st.rev = (st.rev or 0) + 1
        ctx.panel.set_data(f"heatmap_{st.rev}", [PD.heatmap_trace(matrix)])

    def on_cell_click(self, ctx):
        matrix = ctx.panel.state.matrix
        x, y = ctx.params.get("x"), ctx.params.get("y")
        if not matrix or x not in matrix["readers"] or y not in matrix["readers"]:
            return
        view = PD.cell_view(self.base_view(ctx), matrix, x, y)
        self.drill(ctx, view, PD.cell_description(matrix, x, y))

    def render(self, ctx):
        panel = types.Object()
        st = ctx.panel.state
        stats = st.statistics or []
        if stats:
            row = panel.h_stack("choices", gap=2, align_y="center")
            row.enum(
                "statistic",
                stats,
                default=st.statistic,
                label="Statistic",
                view=_dropdown({k: PD.STATISTICS[k].label for k in stats}),
                on_change=self.on_change_choice,
            )
            classes = (st.matrix or {}).get("classes") or []
            if PD.STATISTICS[st.statistic].kind == "classification" and classes:
                row.enum(
                    "class_choice",
                    [ALL_CLASSES, *classes],
                    default=st.class_choice or ALL_CLASSES,
                    label="Class",
                    view=types.DropdownView(),
                    on_change=self.on_change_choice,
                )
        if st.message or not st.matrix:
            panel.md(st.message or "Loading reader agreement...", name="message")
            self.action_button(panel, st.action)
            return types.Property(panel, view=types.GridView(orientation="vertical", gap=2, pad=2))
        matrix = st.matrix
        items = "series" if matrix["level"] == "series" else "samples"
        if not self.drill_header(panel, ctx):
            stat = PD.STATISTICS[matrix["statistic"]]
            on = f" on {matrix['class_name']} vs all other classes" if matrix["class_name"] else ""
            source = matrix["source"]
            if source["kind"] == "view" and stat.kind != "classification":
                did = "segmented" if stat.kind == "mask" else "read for boxes"
                where = (
                    f"the {source['n_items_rated']} samples of the current view that two or "
                    f"more readers {did}"
                )
                if stat.kind == "boxes":
                    where += f" (boxes match at IoU ≥ {source['iou_threshold']:g})"
            elif source["kind"] == "view":
                where = f"the {matrix['n_items']} {items} of the current view"
            else:
                where = (
                    f"the {source['n_samples']} samples of stored run "
                    f"'{source['run_key']}' ({(source.get('created_at') or '')[:16]})"
                )
            panel.md(
                f"{stat.label}{on} between readers, on {where}. Hover for the CI; "
                "click a cell to open its samples.",
                name="summary_text",
            )
            if source["kind"] == "run":
                why = source.get("reason") or "These numbers could not be computed on the view."
                which = "" if source.get("of_this_view") else ", which is not of this view"
                panel.md(
                    f"*{why} Showing the stored run '{source['run_key']}'{which}.*",
                    name="run_note",
                )
                self.action_button(panel, "compute_agreement")
            elif source.get("note"):
                panel.md(f"*{source['note']}*", name="view_note")
        # the all-reader line first: it is the headline, and below the figure it would
        # sit under the plot's reserved height, out of sight
        panel.md(matrix["overall"], name="overall_text")
        panel.plot(
            f"heatmap_{st.rev}",
            layout=PD.heatmap_layout(len(matrix["readers"])),
            config={"displayModeBar": False, "scrollZoom": False},
            on_click=self.on_cell_click,
            height=PD.heatmap_height(len(matrix["readers"])),
        )
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1, pad=2))


def _dropdown(labels: dict[str, str]) -> types.DropdownView:
    view = types.DropdownView()
    for value, label in labels.items():
        view.add_choice(value, label=label)
    return view
