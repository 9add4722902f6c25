"""Operator ``compute_lesion_agreement``: lesions in 3-D, matched across readers."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {
    **I.DEFAULTS,
    "rule": "dice",
    "min_overlap": 0.1,
    "max_distance_mm": 10.0,
    "connectivity": 26,
    "instances": "components",
    "nsd_tolerance_mm": 2.0,
    "consensus": ["staple", "majority"],
    "run_key": "lesions",
}

RULE_LABELS = {
    "dice": "Overlap: Dice at least the threshold",
    "iou": "Overlap: IoU at least the threshold",
    "centroid": "Centroids within a distance (small lesions)",
}
CONNECTIVITY_LABELS = {26: "26 (faces, edges, corners)", 18: "18 (faces, edges)", 6: "6 (faces)"}
INSTANCE_LABELS = {
    "components": "3-D connected components of each reader's mask",
    "labels": "The reader's own instances (SEG segments, RTSTRUCT ROIs, NIfTI labels)",
}
FORM_LABEL = "Compute lesion agreement (3-D)"


class ComputeLesionAgreement(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_lesion_agreement",
            risk_level=types.RiskLevel.LOW,
            label=FORM_LABEL,
            description=(
                "Each reader's 3-D lesions per series, matched across readers: who found "
                "which lesion, Dice/HD95/NSD in mm, volumes in mL (ICC, Bland-Altman, CV), "
                "3-D STAPLE; stored as a run"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.core import fields

        inputs = types.Object()
        masks = fields.reader_fields(ctx.dataset, kinds=["mask"])
        if len({m["reader"] for m in masks.values()}) < 2:
            return I.warning_form(
                inputs,
                FORM_LABEL,
                "Needs masks from at least two readers",
                "Import each reader's outlines first (Import reader labels: masks, "
                "DICOM-SEG, RTSTRUCT or NIfTI volumes)",
            )
        I.reader_choices_input(inputs, ctx.dataset, kinds=["mask"])
        rule = types.RadioGroup()
        for k, label in RULE_LABELS.items():
            rule.add_choice(k, label=label)
        inputs.enum(
            "rule", rule.values(), default=DEFAULTS["rule"], label="Match lesions by", view=rule
        )
        if I.value(ctx, "rule", DEFAULTS) == "centroid":
            inputs.float(
                "max_distance_mm",
                default=DEFAULTS["max_distance_mm"],
                min=0.1,
                label="Centroid tolerance (mm)",
                description="Two readers' lesions whose centroids lie within this match",
            )
        else:
            inputs.float(
                "min_overlap",
                default=DEFAULTS["min_overlap"],
                min=0.001,
                max=1.0,
                label="Minimum overlap",
                description="Two lesions match when their Dice (or IoU) is at least this",
            )
        conn = types.Dropdown()
        for k, label in CONNECTIVITY_LABELS.items():
            conn.add_choice(k, label=label)
        inputs.enum(
            "connectivity",
            list(CONNECTIVITY_LABELS),
            default=DEFAULTS["connectivity"],
            label="Connectivity",
            description="Voxels that touch this way belong to one lesion",
            view=conn,
        )
        inst = types.RadioGroup()
        for k, label in INSTANCE_LABELS.items():
            inst.add_choice(k, label=label)
        inputs.enum(
            "instances",
            inst.values(),
            default=DEFAULTS["instances"],
            label="Lesions are",
            view=inst,
        )
        inputs.float(
            "nsd_tolerance_mm",
            default=DEFAULTS["nsd_tolerance_mm"],
            min=0.01,
            label="NSD tolerance (mm)",
            description="Normalised surface distance counts boundary within this distance",
        )
        I.level_input(inputs)
        I.n_boot_input(inputs, min=0)
        I.run_key_input(
            inputs,
            ctx,
            "lesions",
            DEFAULTS["run_key"],
            description="Stored under this key (an existing lesion run is replaced)",
        )
        I.analysis_target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label=FORM_LABEL))

    def execute(self, ctx):
        from multireader.analyses import lesions as AL

        p = ctx.params
        results = AL.compute_lesion_agreement(
            I.analysis_target_view(ctx),
            readers=p.get("readers") or None,
            rule=I.value(ctx, "rule", DEFAULTS),
            min_overlap=float(I.value(ctx, "min_overlap", DEFAULTS)),
            max_distance_mm=float(I.value(ctx, "max_distance_mm", DEFAULTS)),
            connectivity=int(I.value(ctx, "connectivity", DEFAULTS)),
            instances=I.value(ctx, "instances", DEFAULTS),
            nsd_tolerance_mm=float(I.value(ctx, "nsd_tolerance_mm", DEFAULTS)),
            consensus=I.value(ctx, "consensus", DEFAULTS),
            level=float(I.value(ctx, "level", DEFAULTS)),
            n_boot=int(I.value(ctx, "n_boot", DEFAULTS)),
            run_key=I.run_key_param(ctx, DEFAULTS["run_key"]),
            progress=_common.progress_for(ctx),
        )
        self.reload(ctx)
        return results.summary()

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Stored as run")
        outputs.int("n_series", label="Series analysed")
        outputs.int("n_lesions", label="Lesions (matched across readers)")
        outputs.str("found_by", label="Found by k of n readers")
        outputs.str("fleiss_kappa_found", label="Fleiss' kappa on found / not found")
        _common.table(
            outputs,
            "readers",
            "Readers",
            {
                "reader": "Reader",
                "n_lesions": "Lesions",
                "sensitivity": "Found of the others' lesions",
                "volume_ratio": "Volume vs others",
                "flags": "Flags",
            },
        )
        _common.table(
            outputs,
            "pairs",
            "Reader pairs (matched lesions)",
            {
                "pair": "Pair",
                "f1": "Detection F1",
                "dice": "Dice",
                "hd95": "HD95 mm",
                "nsd": "NSD",
                "n": "n",
            },
        )
        _common.table(
            outputs, "skipped", "Series not analysed", {"series": "Series", "reason": "Why"}
        )
        return types.Property(outputs, view=types.View(label="Lesion agreement"))

    def __call__(
        self,
        sample_collection,
        *,
        readers=None,
        rule: str = DEFAULTS["rule"],
        min_overlap: float = DEFAULTS["min_overlap"],
        max_distance_mm: float = DEFAULTS["max_distance_mm"],
        connectivity: int = DEFAULTS["connectivity"],
        instances: str = DEFAULTS["instances"],
        nsd_tolerance_mm: float = DEFAULTS["nsd_tolerance_mm"],
        consensus=DEFAULTS["consensus"],
        level: float = DEFAULTS["level"],
        n_boot: int = DEFAULTS["n_boot"],
        run_key: str = DEFAULTS["run_key"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Lesion agreement in 3-D from the SDK on a dataset or view; returns the summary.

        ``rule``: "dice" or "iou" (lesions match at an overlap of at least
        ``min_overlap``) or "centroid" (within ``max_distance_mm``). Lesions are 3-D
        connected components (``connectivity`` 6, 18 or 26) or, with
        ``instances="labels"``, each reader's own label values. The full results are
        stored as run ``run_key``: ``multireader.core.runs.load(dataset, run_key)``.
        """
        return self.run_sdk_with(locals())
