"""What the panels share: colour scales and the button that opens the consensus operator."""

from __future__ import annotations

#: sequential scale for shares of a row (0 = white)
SHARE_SCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]
#: sequential scale for mean mistakenness (0 = white)
SHADE_SCALE = [[0.0, "#fff5eb"], [0.5, "#fd8d3c"], [1.0, "#7f2704"]]


class ConsensusButton:
    """A panel mixin: ``run_consensus`` opens compute_consensus's form (an empty state's
    button for panels that need a consensus field)."""

    def run_consensus(self, ctx):
        ctx.prompt("@multireader/disagreement/compute_consensus")
