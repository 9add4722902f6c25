"""Operator ``compute_quality_metrics``: brightness, contrast, sharpness, entropy, noise
and clipping of every image, measured on its native values (HU for CT)."""

from __future__ import annotations

import os

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: labels of the metric choices; the keys are multireader.analyses.quality.QUALITY_METRICS
_METRIC_LABELS = {
    "brightness": "Brightness (mean of the body)",
    "contrast": "Contrast (standard deviation of the body)",
    "contrast_window": "Contrast relative to the display window",
    "sharpness_laplacian": "Sharpness: variance of the Laplacian (lower = blurrier)",
    "sharpness_frequency": "Sharpness: high-frequency energy share (lower = blurrier)",
    "entropy": "Entropy of the grey levels (bits)",
    "noise": "Noise standard deviation (native units)",
    "clip_low": "Share of pixels at the minimum",
    "clip_high": "Share of pixels at the maximum",
    "foreground_fraction": "Share of pixels in the body / foreground",
}


class ComputeQualityMetrics(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_quality_metrics",
            risk_level=types.RiskLevel.LOW,
            label="Compute image quality metrics",
            description=(
                "Measure brightness, contrast, sharpness, entropy, noise and clipping "
                "of every image on its native values (HU for CT); writes quality_<metric> "
                "fields to sort and filter by"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.analyses.quality import QUALITY_METRICS

        inputs = types.Object()
        choices = types.Dropdown(multiple=True)
        for metric in QUALITY_METRICS:
            choices.add_choice(metric, label=_METRIC_LABELS.get(metric, metric))
        inputs.list(
            "metrics",
            types.String(),
            default=list(QUALITY_METRICS),
            required=True,
            label="Metrics",
            description="Each is written to the field quality_<metric>",
            view=choices,
        )
        I.target_input(inputs, ctx=ctx)
        inputs.bool(
            "skip_existing",
            default=False,
            label="Skip measured samples",
            description="Leave samples whose chosen metrics are all set already",
            view=types.CheckboxView(),
        )
        inputs.int(
            "num_workers",
            default=os.cpu_count() or 1,
            label="Worker processes",
            description="Processes that read and measure images in parallel",
        )
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Compute image quality metrics"))

    def execute(self, ctx):
        from multireader.analyses import quality
        from multireader.core import fields

        target = I.target_view(ctx)
        result = quality.compute_quality_metrics(
            target,
            metrics=ctx.params.get("metrics") or None,
            num_workers=ctx.params.get("num_workers"),
            skip_existing=bool(ctx.params.get("skip_existing", False)),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        return {**result, "n_errors": len(result["errors"])}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("n_computed", label="Images measured")
        outputs.int("n_skipped", label="Skipped (already measured)")
        outputs.int("n_errors", label="Images that could not be measured")
        outputs.list("fields", types.String(), label="Fields written")
        _common.table(
            outputs,
            "errors",
            "Images not measured, and why",
            {"sample_id": "Sample", "path": "Native array", "reason": "Reason"},
        )
        return types.Property(outputs, view=types.View(label="Image quality metrics"))

    def __call__(
        self,
        sample_collection,
        *,
        metrics=None,
        num_workers: int | None = None,
        skip_existing: bool = False,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Measure a dataset or view from the SDK; returns the report as a dict
        (or the queued operation when ``delegate=True``)."""
        from multireader.analyses.quality import QUALITY_METRICS

        # every metric by default: the form's list is required, as in the App
        metrics = list(QUALITY_METRICS) if metrics is None else metrics
        return self.run_sdk_with(locals())
