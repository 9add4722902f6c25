"""Operator ``render_window_presets``: re-render images with named CT windows."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .import_dicom import presets_input


class RenderWindowPresets(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="render_window_presets",
            risk_level=types.RiskLevel.LOW,
            label="Render window presets",
            description=(
                "Re-render images from their native values (HU) with named "
                "windows; each preset becomes a media field you can switch to"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        presets_input(
            inputs,
            required=True,
            default=["lung", "mediastinum"],
            label="Presets",
            description="Written to filepath_<preset>; the App's media settings switch between them",
        )
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Render window presets"))

    def execute(self, ctx):
        from multireader.ingest import importer

        target = I.target_view(ctx)
        result = importer.render_presets(
            target,
            list(ctx.params["presets"]),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return result if isinstance(result, dict) else {"rendered": result}

    def __call__(self, sample_collection, presets, *, delegate: bool = False):
        """Render presets from the SDK for a dataset or view."""
        return self.run_sdk_with(locals())
