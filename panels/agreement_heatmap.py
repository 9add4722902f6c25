"""Panel ``agreement_heatmap``: pairwise Cohen's kappa between readers, click to drill in.

A thin adapter over :mod:`multireader.panel_data`: the matrix is computed on the App's
current view, the Plotly trace goes to panel data (it can be large), and the few things
a click needs (readers, fields, classes, the view the matrix is of) go to panel state.

Clicking a cell sets the App's view to the samples behind it. The matrix does not
recompute for the panel's own drill-down view (it would then describe only the
disagreements just opened); any other view change recomputes it.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types
import fiftyone.server.view as fosv
from fiftyone.operators.operations import _serialize_view

from multireader import panel_data as PD

HELP = """Cohen's kappa between every two readers' class labels on the current view.
Off the diagonal: kappa (1 = perfect agreement, 0 = chance, below 0 = worse than
chance); hover for the number of samples both read. On the diagonal: each reader's
number of labels. Click a cell to see its samples: the samples the two readers
labelled differently, or the samples one reader labelled."""


class AgreementHeatmap(foo.Panel):
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
        self._compute(ctx)

    def on_change_view(self, ctx):
        drill = ctx.panel.state.drill
        if drill and PD.view_key(ctx.request_params.get("view")) == drill["key"]:
            return
        self._compute(ctx)

    def _compute(self, ctx):
        ctx.panel.state.drill = None
        try:
            matrix = PD.agreement_matrix(ctx.view)
        except PD.NoMatrix as e:
            ctx.panel.state.message = str(e)
            ctx.panel.state.matrix = None
            ctx.panel.data.heatmap = None
            return
        ctx.panel.state.message = None
        ctx.panel.state.matrix = {**matrix.state(), "view": _serialize_view(ctx.view)}
        ctx.panel.data.heatmap = PD.heatmap_trace(matrix)

    def _base_view(self, ctx):
        return fosv.get_view(ctx.dataset, stages=ctx.panel.state.matrix["view"])

    def on_cell_click(self, ctx):
        matrix = ctx.panel.state.matrix
        x, y = ctx.params.get("x"), ctx.params.get("y")
        if not matrix or x not in matrix["readers"] or y not in matrix["readers"]:
            return
        view = PD.cell_view(self._base_view(ctx), matrix, x, y)
        stages = _serialize_view(view)
        what = f"labelled by {x}" if x == y else f"{y} and {x} labelled differently"
        ctx.panel.state.drill = {"key": PD.view_key(stages), "what": what}
        ctx.ops.set_view(view)

    def on_back(self, ctx):
        ctx.panel.state.drill = None
        if ctx.panel.state.matrix:
            ctx.ops.set_view(self._base_view(ctx))

    def render(self, ctx):
        panel = types.Object()
        state = ctx.panel.state
        if state.message or not state.matrix:
            panel.md(state.message or "Loading reader agreement...", name="message")
            return types.Property(panel, view=types.GridView(orientation="vertical", gap=2, pad=2))
        matrix, drill = state.matrix, state.drill
        items = "series" if matrix["level"] == "series" else "samples"
        if drill:
            panel.md(f"Showing the samples {drill['what']}.", name="drill_text")
            panel.btn("back", label="Back to all samples", on_click=self.on_back)
        else:
            panel.md(
                f"Cohen's kappa between readers on the {matrix['n_items']} {items} of the "
                "current view. Click a cell to open its samples.",
                name="summary_text",
            )
        panel.plot(
            "heatmap",
            layout=PD.heatmap_layout(len(matrix["readers"])),
            config={"displayModeBar": False, "scrollZoom": False},
            on_click=self.on_cell_click,
            height=PD.heatmap_height(len(matrix["readers"])),
        )
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1, pad=2))
