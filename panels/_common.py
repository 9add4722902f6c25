"""What the panels share: colour scales and the button that opens the consensus operator."""

from __future__ import annotations

import json

from multireader.errors import MultireaderError

#: errors a panel shows as its message instead of failing: the package's own, and the
#: plain ValueError the pure stats layer raises on data it cannot use (scikit-learn's
#: convention), e.g. a view that holds no reads
SHOWN_ERRORS = (MultireaderError, ValueError)

#: sequential scale for shares of a row (0 = white)
SHARE_SCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]
#: sequential scale for mean mistakenness (0 = white)
SHADE_SCALE = [[0.0, "#fff5eb"], [0.5, "#fd8d3c"], [1.0, "#7f2704"]]


def take_choice(ctx) -> bool:
    """Copy a changed input into the panel's top-level state; False if nothing changed.

    The App stores an input's value at its path in the layout (``choices.statistic``
    for an input inside the ``choices`` row), not at the top of the state, and fires
    ``on_change`` when the input first renders, with its default. Panels keep their
    choices at the top (``state.statistic``) and only recompute on a real change.
    """
    path, value = ctx.params.get("path"), ctx.params.get("value")
    if not path:
        return True
    name = str(path).split(".")[-1]
    if ctx.panel.state.get(name) == value:
        return False
    ctx.panel.state.set(name, value)
    return True


class ConsensusButton:
    """A panel mixin: ``run_consensus`` opens compute_consensus's form (an empty state's
    button for panels that need a consensus field)."""

    def run_consensus(self, ctx):
        ctx.prompt("@multireader/disagreement/compute_consensus")


class DrillDown:
    """A panel mixin: clicking a number opens its samples and the figure stays put.

    Every panel here recomputes on the App's current view. Without care, a click that
    sets the view to a cell's samples would recompute the figure on just those samples
    (a matrix of the disagreements one just opened). So a panel remembers the view its
    figure describes (``state.base_view``) and the drill-down view it opened
    (``state.drill``): while the App shows that drill-down, the figure is kept and a
    "Back" button returns to the figure's view; any other view change recomputes.
    Clicks build their views from the figure's view, never from a drill-down.
    """

    def remember_view(self, ctx) -> None:
        """Call when the figure is (re)computed on ``ctx.view``."""
        from fiftyone.operators.operations import _serialize_view

        ctx.panel.state.drill = None
        # as JSON text: stage dicts carry "_cls" keys, which the App's session state
        # (a database document) would try to resolve as document classes
        ctx.panel.state.base_view = json.dumps(_serialize_view(ctx.view))

    def showing_drill(self, ctx) -> bool:
        """True while the App shows the drill-down this panel opened last."""
        from multireader.figures.agreement_matrix import view_key

        drill = ctx.panel.state.drill
        return bool(drill) and view_key(ctx.request_params.get("view")) == drill["key"]

    def view_unchanged(self, ctx) -> bool:
        """True when a view change needs no recompute: the App shows this panel's own
        drill-down, or the very view the figure is of (the App fires view changes
        more than once while it loads; recomputing on each would also race a click)."""
        from multireader.figures.agreement_matrix import view_key

        if self.showing_drill(ctx):
            return True
        # (a drill-down is not cleared on a return to the figure's view: the App repeats
        # view events, and a late repeat must not erase a drill-down opened since; the
        # header shows only while the App's view is the drill-down, see drill_header)
        base = ctx.panel.state.base_view
        return base is not None and (
            view_key(ctx.request_params.get("view")) == view_key(json.loads(base))
        )

    def base_view(self, ctx):
        """The view the figure describes (the App's view when it was computed)."""
        import fiftyone.server.view as fosv

        stages = json.loads(ctx.panel.state.base_view or "[]")
        return fosv.get_view(ctx.dataset, stages=stages) if stages else ctx.dataset.view()

    def drill(self, ctx, view, what: str) -> None:
        """Set the App's view to ``view`` (the samples behind a click, ``what``)."""
        from fiftyone.operators.operations import _serialize_view

        from multireader.figures.agreement_matrix import view_key

        ctx.panel.state.drill = {"key": view_key(_serialize_view(view)), "what": what}
        ctx.ops.set_view(view)

    def on_back(self, ctx):
        ctx.panel.state.drill = None
        ctx.ops.set_view(self.base_view(ctx))

    def drill_header(self, panel, ctx) -> bool:
        """The "Showing ..." line and "Back" button while a drill-down is shown."""
        drill = ctx.panel.state.drill
        if not drill or not self.showing_drill(ctx):
            return False
        row = panel.h_stack("drill_row", gap=2, align_y="center")
        row.md(f"Showing the samples {drill['what']}.", name="drill_text")
        row.btn("back", label="Back to all samples", on_click=self.on_back)
        return True


class OperatorButtons:
    """A panel mixin: empty states' buttons that open the operator that fixes them."""

    def run_agreement(self, ctx):
        ctx.prompt("@multireader/disagreement/compute_agreement")

    def run_import_labels(self, ctx):
        ctx.prompt("@multireader/disagreement/import_reader_labels")

    def clear_view(self, ctx):
        ctx.ops.clear_view()

    def action_button(self, panel, action: str | None) -> None:
        """The button for a :class:`multireader.figures.agreement_matrix.NoMatrix` ``action``."""
        buttons = {
            "compute_agreement": ("Compute agreement", self.run_agreement),
            "import_reader_labels": ("Import reader labels", self.run_import_labels),
            "clear_view": ("Clear the view", self.clear_view),
        }
        if action in buttons:
            label, handler = buttons[action]
            panel.btn(f"action_{action}", label=label, on_click=handler, variant="contained")
