"""Operator ``declare_label_schema``: the classes and ordinal scale readers use."""

from __future__ import annotations

import json

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._base import MultireaderOperator


class DeclareLabelSchema(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="declare_label_schema",
            risk_level=types.RiskLevel.MEDIUM,
            label="Declare label schema",
            description=(
                "Declare once per dataset the class names, whether they are "
                "ordered, the score range and mask values; imports validate against it"
            ),
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if ctx.dataset is None:
            inputs.view("no_dataset", types.Warning(label="Open a dataset first"))
            return types.Property(inputs)
        from multireader.core import schema

        current = schema.get_label_schema(ctx.dataset) or {}
        inputs.list(
            "classes",
            types.String(),
            required=True,
            default=current.get("classes") or [],
            label="Classes",
            description="In order from least to most severe when the scale is ordinal",
            view=types.AutocompleteView(multiple=True, allow_user_input=True),
        )
        inputs.bool(
            "ordered",
            default=bool(current.get("ordered", False)),
            label="Ordinal scale",
            description="The classes are ordered (e.g. benign < suspicious < malignant)",
            view=types.CheckboxView(),
        )
        score_range = current.get("score_range") or [None, None]
        inputs.float("score_min", default=score_range[0], required=False, label="Lowest score")
        inputs.float("score_max", default=score_range[1], required=False, label="Highest score")
        inputs.str(
            "mask_targets",
            required=False,
            default=json.dumps(current.get("mask_targets") or {}),
            label="Mask values",
            description='JSON, e.g. {"1": "lesion", "2": "nodule"}',
        )
        inputs.bool(
            "overwrite",
            default=False,
            label="Replace an existing schema",
            description="Needed when reader labels were already validated against another schema",
            view=types.CheckboxView(),
        )
        return types.Property(inputs, view=types.View(label="Declare label schema"))

    def execute(self, ctx):
        from multireader.core import schema

        lo, hi = ctx.params.get("score_min"), ctx.params.get("score_max")
        mask_targets = ctx.params.get("mask_targets") or None
        if isinstance(mask_targets, str):
            mask_targets = json.loads(mask_targets) or None
        declared = schema.declare_label_schema(
            ctx.dataset,
            list(ctx.params["classes"]),
            ordered=bool(ctx.params.get("ordered", False)),
            score_range=[lo, hi] if lo is not None and hi is not None else None,
            mask_targets={int(k): v for k, v in mask_targets.items()} if mask_targets else None,
            overwrite=bool(ctx.params.get("overwrite", False)),
        )
        self.reload(ctx)
        return {"label_schema": declared}

    def __call__(
        self,
        dataset,
        classes,
        *,
        ordered: bool = False,
        score_range=None,
        mask_targets=None,
        overwrite: bool = False,
    ):
        """Declare the label schema from the SDK; returns the stored schema."""
        params = dict(
            classes=list(classes),
            ordered=ordered,
            score_min=score_range[0] if score_range else None,
            score_max=score_range[1] if score_range else None,
            mask_targets=json.dumps({str(k): v for k, v in (mask_targets or {}).items()}),
            overwrite=overwrite,
        )
        return self.run_sdk(dataset, **params)
