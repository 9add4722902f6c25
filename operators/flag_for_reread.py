"""Operator ``flag_for_reread``: one click in the grid tags the selected samples for
re-reading and records whose label, and why; no reader's label is touched."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._base import MultireaderOperator


class FlagForReread(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="flag_for_reread",
            risk_level=types.RiskLevel.MEDIUM,
            label="Flag for re-read",
            description=(
                "Tag the selected samples 'reread' and record which reader's label is to be "
                "re-read (by default the one the evidence doubts most). A grid button in the "
                "App; without the App pass sample_ids"
            ),
            dynamic=True,
            allow_immediate_execution=True,
        )

    def resolve_placement(self, ctx):
        return types.Placement(
            types.Places.SAMPLES_GRID_SECONDARY_ACTIONS,
            types.Button(
                label="Flag for re-read",
                icon="flag",
                prompt=True,
            ),
        )

    def resolve_input(self, ctx):
        from multireader.core.fields import reader_fields

        inputs = types.Object()
        n = len(_sample_ids(ctx))
        if n == 0 or ctx.params.get("sample_ids"):
            # without the App's grid (an agent, a script) the samples come as sample_ids
            _sample_ids_input(inputs, ctx)
        if n == 0:
            inputs.view(
                "none",
                types.Warning(
                    label="No samples selected",
                    description="Select samples in the grid (e.g. in the label_error_queue view)",
                ),
            )
            return types.Property(inputs, view=types.View(label="Flag for re-read"))
        inputs.view(
            "count",
            types.Notice(label=f"Flag {n} selected sample{'s' if n > 1 else ''} for re-reading"),
        )
        readers = sorted(
            {str(m["reader"]) for m in reader_fields(ctx.dataset, ["classification"]).values()}
        )
        pick = types.Dropdown()
        pick.add_choice(
            "AUTO", label="The reader whose label is most in doubt (label_error_reader)"
        )
        for r in readers:
            pick.add_choice(r, label=r)
        inputs.enum("reader", ["AUTO"] + readers, default="AUTO", label="Whose label", view=pick)
        inputs.str("reason", default="", label="Reason (optional)")
        return types.Property(inputs, view=types.View(label="Flag for re-read"))

    def execute(self, ctx):
        from multireader.analyses import label_errors
        from multireader.core import fields

        ids = _sample_ids(ctx)
        error = _sample_ids_error(ctx, ids)
        if error:
            from multireader.errors import MultireaderError

            raise MultireaderError(error)
        reader = ctx.params.get("reader")
        result = label_errors.flag_for_reread(
            ctx.dataset,
            ids,
            reader=None if reader in (None, "", "AUTO") else reader,
            reason=ctx.params.get("reason") or "",
            requested_by=ctx.params.get("requested_by") or ctx.user_id or None,
        )
        fields.update_sidebar_groups(ctx.dataset)
        self.reload(ctx)
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("n_flagged", label="Samples flagged")
        outputs.str("tag", label="Tag added")
        outputs.list("readers", types.String(), label="Readers asked to re-read")
        return types.Property(outputs, view=types.View(label="Flagged for re-read"))

    def __call__(
        self,
        sample_collection,
        sample_ids: list[str],
        *,
        reader: str | None = None,
        reason: str = "",
        requested_by: str | None = None,
    ):
        """Flag ``sample_ids`` from the SDK; returns the counts."""
        return self.run_sdk_with(locals())


def _sample_ids(ctx) -> list:
    """The samples to flag: the App's selection, else the ``sample_ids`` param."""
    return list(ctx.selected or ctx.params.get("sample_ids") or [])


def _sample_ids_error(ctx, ids: list) -> str | None:
    if not ids:
        return (
            "parameter sample_ids: no samples to flag; select samples in the App's grid, "
            "or pass sample_ids (a list of sample ids)"
        )
    if ctx.selected:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return "parameter sample_ids: a list of sample id strings"
    from bson import ObjectId

    valid = [i for i in ids if ObjectId.is_valid(i)]
    found = set(ctx.dataset.select(valid).values("id")) if valid else set()
    missing = [i for i in ids if i not in found]
    if missing:
        return (
            f"parameter sample_ids: {len(missing)} not on dataset {ctx.dataset.name!r}, "
            f"e.g. {missing[0]!r}"
        )
    return None


def _sample_ids_input(inputs: types.Object, ctx) -> None:
    prop = inputs.list(
        "sample_ids",
        types.String(),
        required=False,
        label="Sample ids",
        description="Without the App's grid: the ids of the samples to flag",
    )
    error = _sample_ids_error(ctx, _sample_ids(ctx)) if ctx.dataset is not None else None
    if error:
        prop.invalid, prop.error_message = True, error
