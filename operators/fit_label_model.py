"""Operator ``fit_label_model``: out-of-fold class probabilities from a stored embedding,
a real model for finding label errors with nothing downloaded."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator
from .compute_visualization import embedding_field_input

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {
    **I.DEFAULTS,
    "field": "predictions_label_model",
    "classifier": "random_forest",
    "n_folds": 5,
    "n_repeats": 3,
    "group_by_patient": True,
}

_CLASSIFIER_LABELS = {
    "random_forest": "Random forest (default; handles non-linear radiomics well)",
    "logistic": "Logistic regression (L2, standardised features)",
}


def label_field_input(inputs: types.Object, dataset) -> str | None:
    """A dropdown of the consensus and reader classification fields, consensus first."""
    from multireader.core.fields import reader_fields
    from multireader.embed.label_model import consensus_label_fields

    consensus = consensus_label_fields(dataset)
    readers = sorted(reader_fields(dataset, ["classification"]))
    choices = types.Dropdown()
    for name in consensus + readers:
        choices.add_choice(name, label=name + (" (consensus)" if name in consensus else ""))
    if not consensus + readers:
        inputs.view(
            "no_labels",
            types.Warning(
                label="No labels to train on",
                description="Import reader labels, then run 'Compute consensus'",
            ),
        )
        return None
    if not consensus:
        inputs.view(
            "no_consensus",
            types.Notice(
                label="No consensus yet: training on one reader's labels. Run 'Compute "
                "consensus' to train on the panel's labels instead."
            ),
        )
    default = (consensus + readers)[0]
    inputs.enum(
        "label_field",
        consensus + readers,
        default=default,
        label="Train on labels from",
        description="Consensus by default: the model learns the panel, then contests readers",
        view=choices,
    )
    return default


class FitLabelModel(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="fit_label_model",
            risk_level=types.RiskLevel.LOW,
            label="Fit label model (out-of-fold)",
            description=(
                "Train a scikit-learn classifier on a stored embedding with patient-grouped "
                "cross-validation; every sample is scored by a model that never saw its "
                "label (the standard set-up for finding label errors)"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.embed.label_model import CLASSIFIERS

        inputs = types.Object()
        embedding_field_input(inputs, ctx.dataset)
        label_field_input(inputs, ctx.dataset)
        clf = types.Dropdown()
        for name in CLASSIFIERS:
            clf.add_choice(name, label=_CLASSIFIER_LABELS.get(name, name))
        inputs.enum(
            "classifier",
            list(CLASSIFIERS),
            default=DEFAULTS["classifier"],
            label="Classifier",
            view=clf,
        )
        inputs.int(
            "n_folds",
            default=DEFAULTS["n_folds"],
            label="Folds",
            description="Each class needs at least this many labelled samples",
        )
        inputs.int(
            "n_repeats",
            default=DEFAULTS["n_repeats"],
            label="Repeats",
            description="Repeat the cross-validation with reshuffled folds and average (steadier scores)",
        )
        inputs.bool(
            "group_by_patient",
            default=DEFAULTS["group_by_patient"],
            label="Keep each patient's slices in one fold",
            description="Slices of one patient look alike; splitting them leaks labels",
            view=types.CheckboxView(),
        )
        inputs.str(
            "field",
            default=DEFAULTS["field"],
            label="Predictions field",
            description="Where the out-of-fold predictions go (never a reader's field)",
        )
        I.target_input(inputs, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Fit label model"))

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.core.fields import PATIENT_KEY
        from multireader.embed import label_model

        result = label_model.fit_label_model(
            I.target_view(ctx),
            ctx.params["embeddings"],
            ctx.params.get("label_field") or None,
            ctx.params.get("field") or DEFAULTS["field"],
            classifier=ctx.params.get("classifier") or DEFAULTS["classifier"],
            n_folds=int(ctx.params.get("n_folds") or DEFAULTS["n_folds"]),
            n_repeats=int(ctx.params.get("n_repeats") or DEFAULTS["n_repeats"]),
            group_by=PATIENT_KEY if I.value(ctx, "group_by_patient", DEFAULTS) else None,
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        result["class_rows"] = [{"class": c, "n": n} for c, n in result.pop("class_counts").items()]
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("field", label="Predictions written to")
        outputs.str("label_field", label="Trained on")
        outputs.int("n_labelled", label="Labelled samples (scored out of fold)")
        outputs.int("n_unlabelled", label="Unlabelled samples (scored by the full model)")
        outputs.float("oof_accuracy", label="Out-of-fold accuracy against the training labels")
        outputs.float("oof_kappa", label="Out-of-fold Cohen's kappa")
        outputs.float("oof_kappa_quadratic", label="Out-of-fold quadratic kappa (ordered scale)")
        outputs.float("oof_log_loss", label="Out-of-fold log loss")
        _common.table(
            outputs, "class_rows", "Training labels per class", {"class": "Class", "n": "Samples"}
        )
        return types.Property(outputs, view=types.View(label="Label model"))

    def __call__(
        self,
        sample_collection,
        embeddings: str,
        label_field: str | None = None,
        field: str = DEFAULTS["field"],
        *,
        classifier: str = DEFAULTS["classifier"],
        n_folds: int = DEFAULTS["n_folds"],
        n_repeats: int = DEFAULTS["n_repeats"],
        group_by_patient: bool = DEFAULTS["group_by_patient"],
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Fit from the SDK on a dataset or view; returns the summary dict."""
        return self.run_sdk_with(locals())
