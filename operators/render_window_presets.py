"""Operator ``render_window_presets``: re-render images with named CT windows."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from .import_dicom import presets_input


class RenderWindowPresets(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="render_window_presets",
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
        _common.target_input(inputs)
        _common.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Render window presets"))

    def resolve_delegation(self, ctx):
        return _common.resolve_delegation(ctx)

    def execute(self, ctx):
        from multireader.ingest import importer

        target = _common.target_view(ctx)
        result = importer.render_presets(
            target,
            list(ctx.params["presets"]),
            progress=_common.progress_for(ctx),
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result if isinstance(result, dict) else {"rendered": result}

    def __call__(self, sample_collection, presets, *, delegate: bool = False):
        """Render presets from the SDK for a dataset or view."""
        params = dict(presets=list(presets), target="CURRENT_VIEW")
        return _common.run_from_sdk(self, sample_collection, params, delegate=delegate)
