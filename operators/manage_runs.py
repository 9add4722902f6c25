"""Operator ``manage_runs``: list, rename and delete this plugin's stored runs in the App."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

ACTIONS = {
    "list": "List runs",
    "rename": "Rename a run",
    "delete": "Delete a run",
}


def _run_rows(dataset) -> list[dict]:
    from multireader.core import runs

    rows = []
    for key in runs.list_runs(dataset):
        info = dataset.get_run_info(key)
        cfg = info.config.serialize()
        rows.append(
            {
                "key": key,
                "kind": (info.config.method or "").split(".", 1)[-1],
                "created": info.timestamp.strftime("%Y-%m-%d %H:%M") if info.timestamp else "",
                "readers": ", ".join(cfg.get("readers") or []),
                "samples": cfg.get("n_samples"),
                "detail": cfg.get("algorithm") or ", ".join(cfg.get("kinds") or []),
            }
        )
    return rows


class ManageRuns(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="manage_runs",
            risk_level=types.RiskLevel.HIGH,
            label="Manage agreement and consensus runs",
            description="List, rename or delete the stored agreement and consensus runs",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        from multireader.core import runs

        inputs = types.Object()
        keys = runs.list_runs(ctx.dataset)
        if not keys:
            inputs.view(
                "none",
                types.Warning(
                    label="No runs yet",
                    description="Run 'Compute reader agreement' or 'Compute consensus labels' first",
                ),
            )
            return types.Property(inputs, view=types.View(label="Manage runs"))
        action = types.RadioGroup()
        for k, label in ACTIONS.items():
            action.add_choice(k, label=label)
        inputs.enum("action", action.values(), default="list", label="Action", view=action)
        if ctx.params.get("action", "list") != "list":
            choice = types.Dropdown()
            for k in keys:
                choice.add_choice(k, label=k)
            inputs.enum("run_key", keys, required=True, label="Run", view=choice)
        if ctx.params.get("action") == "rename":
            I.run_key_input(inputs, ctx, None, None, name="new_key", label="New key")
        return types.Property(inputs, view=types.View(label="Manage runs"))

    def execute(self, ctx):
        from multireader.core import runs

        action = ctx.params.get("action", "list")
        key = ctx.params.get("run_key")
        if action == "rename":
            runs.rename(ctx.dataset, key, ctx.params["new_key"].strip())
        elif action == "delete":
            runs.delete(ctx.dataset, key)
        return {"runs": _run_rows(ctx.dataset)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        _common.table(
            outputs,
            "runs",
            "Stored runs",
            {
                "key": "Key",
                "kind": "Kind",
                "detail": "Method / labels",
                "readers": "Readers",
                "samples": "Samples",
                "created": "Created (UTC)",
            },
        )
        return types.Property(outputs, view=types.View(label="Runs"))

    def __call__(self, sample_collection, action: str = "list", run_key=None, new_key=None):
        """From the SDK: ``manage_runs(dataset)`` lists; ``action="rename"|"delete"``."""
        return self.run_sdk(sample_collection, action=action, run_key=run_key, new_key=new_key)
