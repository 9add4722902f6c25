"""Operators for the audit trail and lineage: thin adapters over ``multireader.lineage.audit``,
``multireader.lineage.records``."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator


def _freeze_choice(inputs, ctx, name="name", label="Frozen training set"):
    from multireader.lineage import records as lineage

    names = [h["name"] for h in lineage.list_training_sets(ctx.dataset)] if ctx.dataset else []
    if not names:
        inputs.view(
            "none",
            types.Warning(
                label="No frozen training sets",
                description="Freeze one first: 'Freeze training set'",
            ),
        )
        return None
    choice = types.DropdownView()
    for n in names:
        choice.add_choice(n, label=n)
    inputs.enum(name, names, default=names[-1], required=True, label=label, view=choice)
    return names


def _sample_changes(changes: dict) -> dict:
    """The relabelled, removed and added samples of a verification or a diff, as rows."""
    return {
        "relabelled": changes["relabelled"],
        "removed": [{"sample_id": i} for i in changes["removed"]],
        "added": [{"sample_id": i} for i in changes["added"]],
    }


def _sample_change_tables(outputs: types.Object) -> None:
    """The tables of :func:`_sample_changes`."""
    _common.table(outputs, "relabelled", "Relabelled", {"sample_id": "Sample", "field": "Field"})
    _common.table(outputs, "removed", "Removed", {"sample_id": "Sample"})
    _common.table(outputs, "added", "Added", {"sample_id": "Sample"})


class VerifyAuditLog(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="verify_audit_log",
            risk_level=types.RiskLevel.LOW,
            label="Verify audit log",
            description="Check the hash chain of this dataset's audit log; say where it breaks",
            allow_immediate_execution=True,
        )

    def execute(self, ctx):
        from multireader.lineage import audit

        v = audit.verify(ctx.dataset)
        return {
            "ok": v["ok"],
            "verdict": (
                f"Chain verified: {v['n_entries']} entries, head {str(v['head_hash'])[:16]}"
                if v["ok"]
                else f"Chain broken at entry {v['first_break']}: {v['problems'][0]['message']}"
            ),
            "n_entries": v["n_entries"],
            "head_hash": v["head_hash"],
            "problems": v["problems"],
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("verdict", label="Verdict")
        outputs.int("n_entries", label="Entries")
        outputs.str("head_hash", label="Head hash (keep a copy elsewhere)")
        _common.table(
            outputs,
            "problems",
            "Problems",
            {"seq": "Entry", "problem": "Problem", "message": "What is wrong"},
        )
        return types.Property(outputs, view=types.View(label="Audit log"))

    def __call__(self, sample_collection):
        """Verify the dataset's audit log from the SDK."""
        return self.run_sdk(sample_collection)


class ExportAuditLog(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_audit_log",
            risk_level=types.RiskLevel.MEDIUM,
            label="Export audit log",
            description="Write this dataset's audit log, with its verification, to a file",
            dynamic=True,
            allow_immediate_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        default = f"audit_log_{ctx.dataset.name}.json" if ctx.dataset else "audit_log.json"
        inputs.str(
            "path",
            default=default,
            required=True,
            label="File",
            description="Ends in .json (with the verification), .jsonl or .csv",
        )
        return types.Property(inputs, view=types.View(label="Export audit log"))

    def execute(self, ctx):
        import os

        from multireader.lineage import audit

        path = os.path.abspath(ctx.params.get("path") or f"audit_log_{ctx.dataset.name}.json")
        audit.export(ctx.dataset, path)
        return {"path": path, "n_entries": len(audit.entries(ctx.dataset))}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("path", label="Written to")
        outputs.int("n_entries", label="Entries")
        return types.Property(outputs, view=types.View(label="Audit log exported"))

    def __call__(self, sample_collection, *, path: str):
        return self.run_sdk(sample_collection, path=path)


class ReviseLabel(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="revise_label",
            risk_level=types.RiskLevel.HIGH,
            label="Revise a reader's label",
            description=(
                "A reader's new version of one label, with a reason; every earlier version "
                "is kept in the label history"
            ),
            dynamic=True,
            allow_immediate_execution=True,
        )

    def resolve_placement(self, ctx):
        return types.Placement(
            types.Places.SAMPLES_VIEWER_ACTIONS,
            types.Button(label="Revise a reader's label", icon="history_edu", prompt=True),
        )

    def resolve_input(self, ctx):
        from multireader.core.fields import reader_fields
        from multireader.core.schema import get_label_schema

        inputs = types.Object()
        sample_id = ctx.params.get("sample_id") or (
            ctx.current_sample or (ctx.selected[0] if len(ctx.selected or []) == 1 else None)
        )
        sample_prop = inputs.str(
            "sample_id",
            default=sample_id,
            required=True,
            label="Sample",
            description="Open or select one sample in the App; without the App, its id",
        )
        if sample_id and ctx.dataset is not None:
            from bson import ObjectId

            valid = isinstance(sample_id, str) and ObjectId.is_valid(sample_id)
            if not valid or not len(ctx.dataset.select([sample_id])):
                sample_prop.invalid = True
                sample_prop.error_message = (
                    f"parameter sample_id: no sample {sample_id!r} on dataset {ctx.dataset.name!r}"
                )
        found = sorted(reader_fields(ctx.dataset, ["classification"])) if ctx.dataset else []
        field_view = types.DropdownView()
        for f in found:
            field_view.add_choice(f, label=f)
        inputs.enum("field", found, required=True, label="Reader field", view=field_view)
        classes = (get_label_schema(ctx.dataset) or {}).get("classes") or []
        class_view = types.DropdownView()
        for c in classes:
            class_view.add_choice(c, label=c)
        inputs.enum("label", classes, required=True, label="New label", view=class_view)
        inputs.str("reason", required=True, label="Reason", description="Kept with the version")
        return types.Property(inputs, view=types.View(label="Revise a reader's label"))

    def execute(self, ctx):
        from multireader.lineage import records as lineage

        p = ctx.params
        doc = lineage.revise_label(
            ctx.dataset, p["sample_id"], p["field"], p["label"], reason=p.get("reason")
        )
        self.reload(ctx)
        return {"version": doc["version"], "field": doc["field"], "label": p["label"]}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("field", label="Field")
        outputs.int("version", label="New version")
        return types.Property(outputs, view=types.View(label="Label revised"))

    def __call__(self, sample_collection, *, sample_id, field, label, reason):
        return self.run_sdk_with(locals())


class FreezeTrainingSet(MultireaderOperator):
    on_samples = True

    @property
    def config(self):
        return foo.OperatorConfig(
            name="freeze_training_set",
            risk_level=types.RiskLevel.LOW,
            label="Freeze training set",
            description=(
                "Record exactly which samples and labels train a model version: ids, a "
                "hash of every label, the consensus and its run, the view"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from multireader.lineage import records as lineage

        inputs = types.Object()
        inputs.str("name", required=True, label="Name", description="Unique; freezes are final")
        inputs.str("model_name", required=True, label="Model name")
        inputs.str("model_version", required=True, label="Model version")
        inputs.str(
            "consensus_field",
            default=lineage.default_consensus_field(ctx.dataset) if ctx.dataset else None,
            label="Consensus field",
        )
        inputs.str("notes", label="Notes")
        I.target_input(inputs, default=I.ANALYSIS_TARGET, ctx=ctx)
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Freeze training set"))

    def execute(self, ctx):
        from multireader.lineage import records as lineage

        p = ctx.params
        h = lineage.freeze_training_set(
            I.target_view(ctx, I.ANALYSIS_TARGET),
            p.get("name"),
            model_name=p.get("model_name"),
            model_version=p.get("model_version"),
            consensus_field=p.get("consensus_field") or None,
            notes=p.get("notes") or None,
            progress=_common.progress_for(ctx),
        )
        return {
            "name": h["name"],
            "n_samples": h["n_samples"],
            "freeze_hash": h["freeze_hash"],
            "label_fields": h["label_fields"],
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("name", label="Frozen as")
        outputs.int("n_samples", label="Samples")
        outputs.str("freeze_hash", label="Freeze hash")
        return types.Property(outputs, view=types.View(label="Training set frozen"))

    def __call__(self, sample_collection, *, name, model_name, model_version,
                 consensus_field=None, notes=None, delegate=False):  # fmt: skip
        return self.run_sdk_with(locals())


class VerifyTrainingSet(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="verify_training_set",
            risk_level=types.RiskLevel.LOW,
            label="Verify training set",
            description="Every sample removed, relabelled or added since a freeze",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        _freeze_choice(inputs, ctx)
        inputs.bool(
            "show",
            default=True,
            label="Show the changed samples",
            view=types.CheckboxView(),
        )
        return types.Property(inputs, view=types.View(label="Verify training set"))

    def execute(self, ctx):
        from multireader.lineage import records as lineage

        r = lineage.verify_training_set(ctx.dataset, ctx.params["name"])
        changed = sorted(
            set(r["removed"]) | set(r["added"]) | {x["sample_id"] for x in r["relabelled"]}
        )
        if ctx.params.get("show", True) and not ctx.delegated:
            present = [i for i in changed if i not in set(r["removed"])]
            if present:
                ctx.ops.set_view(ctx.dataset.select(present))
        c = r["counts"]
        return {
            "ok": r["ok"],
            "verdict": (
                f"Unchanged: all {c['frozen']} samples and their labels as frozen"
                if r["ok"]
                else f"{c['relabelled_samples']} relabelled, {c['removed']} removed, "
                f"{c['added']} added since the freeze"
                + ("" if r["freeze_hash_ok"] else "; THE FREEZE RECORD WAS ALTERED")
            ),
            "freeze_hash_ok": r["freeze_hash_ok"],
            "counts": c,
            **_sample_changes(r),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("verdict", label="Verdict")
        outputs.bool("freeze_hash_ok", label="Freeze record intact")
        _sample_change_tables(outputs)
        return types.Property(outputs, view=types.View(label="Training set verified"))

    def __call__(self, sample_collection, *, name, show=False):
        return self.run_sdk_with(locals())


class DiffTrainingSets(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="diff_training_sets",
            risk_level=types.RiskLevel.LOW,
            label="Compare training sets",
            description="Samples added, removed or relabelled between two freezes",
            dynamic=True,
            allow_immediate_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        names = _freeze_choice(inputs, ctx, "a", "From")
        if names:
            _freeze_choice(inputs, ctx, "b", "To")
        return types.Property(inputs, view=types.View(label="Compare training sets"))

    def execute(self, ctx):
        from multireader.lineage import records as lineage

        d = lineage.diff_training_sets(ctx.dataset, ctx.params["a"], ctx.params["b"])
        return {
            "summary": f"{len(d['added'])} added, {len(d['removed'])} removed, "
            f"{len(d['relabelled'])} labels changed",
            **_sample_changes(d),
            "header_changes": d["header_changes"],
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("summary", label="Difference")
        _sample_change_tables(outputs)
        return types.Property(outputs, view=types.View(label="Training sets compared"))

    def __call__(self, sample_collection, *, a, b):
        return self.run_sdk_with(locals())


class DeleteTrainingSet(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="delete_training_set",
            risk_level=types.RiskLevel.HIGH,
            label="Delete training set",
            description="Delete a freeze; its record stays in the audit log",
            dynamic=True,
            allow_immediate_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        _freeze_choice(inputs, ctx)
        inputs.str("reason", required=True, label="Reason")
        return types.Property(inputs, view=types.View(label="Delete training set"))

    def execute(self, ctx):
        from multireader.lineage import records as lineage

        e = lineage.delete_training_set(
            ctx.dataset, ctx.params["name"], reason=ctx.params.get("reason")
        )
        return {"audit_seq": e["seq"]}

    def __call__(self, sample_collection, *, name, reason):
        return self.run_sdk_with(locals())
