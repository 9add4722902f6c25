"""Operator ``delete_study``: delete a dataset with everything this plugin wrote for it."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._base import MultireaderOperator


class DeleteStudy(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="delete_study",
            risk_level=types.RiskLevel.HIGH,
            label="Delete study",
            description=(
                "Delete the dataset and every file and record this plugin wrote for it; "
                "its audit trail is archived and stays exportable"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            # the queue entry of a delegated run would be deleted with the dataset
            allow_delegated_execution=False,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if ctx.dataset is None:
            inputs.view("no_dataset", types.Warning(label="Open the dataset to delete first"))
            return types.Property(inputs)
        inputs.view(
            "what",
            types.Warning(
                label=f"Delete {ctx.dataset.name!r} for good",
                description=(
                    "Removes the samples, renders, native arrays, reader and consensus "
                    "masks, lesion volumes, runs, label history, training-set freezes "
                    "and the audit log. The source DICOM and label files stay. The "
                    "audit trail is archived with the reason given below."
                ),
            ),
        )
        inputs.str("reason", required=True, label="Reason", description="Kept in the audit trail")
        return types.Property(inputs, view=types.View(label="Delete study"))

    def execute(self, ctx):
        from multireader.lineage import deletion

        tomb = deletion.delete_study(ctx.dataset, reason=ctx.params.get("reason"))
        return {k: v for k, v in tomb.items() if k in _RESULT_KEYS}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("dataset", label="Deleted")
        outputs.int("n_files_removed", label="Files removed")
        outputs.int("n_audit_entries", label="Audit entries archived")
        outputs.str("head_hash", label="Archived chain head")
        return types.Property(outputs, view=types.View(label="Study deleted"))

    def __call__(self, dataset, *, reason: str):
        """Delete ``dataset`` (or the dataset of that name) from the SDK; returns its
        tombstone (see :func:`multireader.lineage.deletion.delete_study`)."""
        return self.run_sdk(dataset, False, reason=reason)


_RESULT_KEYS = (
    "dataset",
    "dataset_id",
    "reason",
    "user",
    "deleted_at",
    "status",
    "n_files",
    "n_files_removed",
    "n_audit_entries",
    "head_seq",
    "head_hash",
)
