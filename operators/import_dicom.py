"""Operator ``import_dicom``: DICOM files, folders, globs or a DICOMDIR into a dataset."""

from __future__ import annotations

import os

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator

#: this operator's defaults: the form's, execute's and the SDK's
DEFAULTS = {**I.DEFAULTS, "include_identifiers": False, "include_study_date": False}

WINDOW_CHOICES = {
    "auto": "The file's own window (VOI), else a robust percentile window",
    "lung": "Lung (C -600 / W 1500)",
    "mediastinum": "Mediastinum (C 50 / W 350)",
    "bone": "Bone (C 400 / W 1800)",
    "brain": "Brain (C 40 / W 80)",
    "soft_tissue": "Soft tissue (C 40 / W 400)",
}


def presets_input(inputs: types.Object, **kwargs) -> None:
    """The multi-select of named window presets (every window but "auto")."""
    presets = types.Dropdown(multiple=True)
    for key, label in WINDOW_CHOICES.items():
        if key != "auto":
            presets.add_choice(key, label=label)
    inputs.list("presets", types.String(), view=presets, **kwargs)


class ImportDicom(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="import_dicom",
            risk_level=types.RiskLevel.MEDIUM,
            label="Import DICOM",
            description=(
                "Import DICOM files, folders, glob patterns or a DICOMDIR: every "
                "frame becomes a sample, series become ordered volumes, patient "
                "identifiers are not copied"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str(
            "inputs",
            required=True,
            label="DICOM files",
            description=(
                "Files, folders (searched recursively), glob patterns such as "
                "/data/study/**/*.dcm, or a DICOMDIR. Several: one per line"
            ),
            view=types.TextFieldView(multiline=True),
        )
        current = _common.current_dataset(ctx)
        if current is None:
            inputs.str(
                "dataset_name",
                # the name the request gave (an agent's), else the user types one
                default=ctx.dataset_name or None,
                required=True,
                label="New dataset name",
                description="The dataset to create",
            )
        else:
            inputs.str(
                "dataset_name",
                required=False,
                label="New dataset name (optional)",
                description=(
                    f"Leave empty to import into the current dataset "
                    f"({current.name}); files already imported are skipped"
                ),
            )
        window = types.Dropdown(label="Window")
        for key, label in WINDOW_CHOICES.items():
            window.add_choice(key, label=label)
        inputs.enum(
            "window",
            window.values(),
            default=DEFAULTS["window"],
            label="Window for the rendered images",
            description="Native values (HU for CT) are kept whatever you choose",
            view=window,
        )
        presets_input(
            inputs,
            default=[],
            required=False,
            label="Extra window presets",
            description=(
                "Also render these presets as extra media fields "
                "(filepath_<preset>), switchable in the App's media settings"
            ),
        )
        inputs.bool(
            "include_identifiers",
            default=DEFAULTS["include_identifiers"],
            label="Copy patient identifiers",
            description=(
                "Off by default: names, IDs, birth dates, addresses and "
                "institutions are never copied. A salted pseudonymous "
                "patient_key is always written for patient-level grouping"
            ),
            view=types.CheckboxView(),
        )
        inputs.bool(
            "include_study_date",
            default=DEFAULTS["include_study_date"],
            label="Store study dates",
            description="Off by default: a date can help re-identify a patient",
            view=types.CheckboxView(),
        )
        inputs.int(
            "num_workers",
            default=os.cpu_count() or 1,
            label="Worker processes",
            description="Processes that decode files in parallel",
        )
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Import DICOM"))

    def execute(self, ctx):
        from multireader.core import fields
        from multireader.ingest import importer

        name = (ctx.params.get("dataset_name") or "").strip()
        current = _common.current_dataset(ctx)
        if not name and current is None:
            name = (ctx.dataset_name or "").strip()  # the request named a new dataset
        dataset = _dataset_named(name) if name else current
        report = importer.import_dicom(
            dataset,
            _split_inputs(ctx.params["inputs"]),
            window=ctx.params.get("window") or DEFAULTS["window"],
            presets=ctx.params.get("presets") or (),
            include_identifiers=bool(I.value(ctx, "include_identifiers", DEFAULTS)),
            include_study_date=bool(I.value(ctx, "include_study_date", DEFAULTS)),
            num_workers=ctx.params.get("num_workers"),
            render_dir=ctx.params.get("render_dir"),
            progress=_common.progress_for(ctx),
        )
        fields.update_sidebar_groups(dataset)
        if not ctx.delegated:
            if name and (current is None or current.name != name):
                ctx.trigger("open_dataset", {"dataset": name})
            else:
                ctx.trigger("reload_dataset")
        return report.to_dict()

    def audit_params(self, params: dict) -> dict:
        """The params the audit log keeps: without ``include_identifiers``, the input
        paths as their source-path tokens, so no folder or file name reaches the log."""
        if params.get("include_identifiers", DEFAULTS["include_identifiers"]):
            return dict(params)
        from multireader.io import deid, source_paths

        inputs = _split_inputs(params.get("inputs") or "")
        return {**params, "inputs": source_paths.redact_inputs(inputs, deid.load_salt())}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("imported", label="Samples imported")
        outputs.int("duplicates", label="Already in the dataset (skipped)")
        outputs.int("series", label="Series")
        _common.table(
            outputs,
            "skipped",
            "Files skipped, and why",
            {"path": "File", "reason": "Reason"},
        )
        return types.Property(outputs, view=types.View(label="DICOM import"))

    def __call__(
        self,
        dataset_or_name,
        inputs,
        *,
        window: str = DEFAULTS["window"],
        presets=(),
        include_identifiers: bool = DEFAULTS["include_identifiers"],
        include_study_date: bool = DEFAULTS["include_study_date"],
        num_workers: int | None = None,
        render_dir: str | None = None,
        delegate: bool = DEFAULTS["delegate"],
    ):
        """Import DICOM from the SDK; returns the import report as a dict.

        ``dataset_or_name`` is a dataset, or the name of one (created, persistent,
        when it does not exist yet).
        """
        if isinstance(dataset_or_name, str):
            dataset_or_name = _dataset_named(dataset_or_name)
        return self.run_sdk(
            dataset_or_name,
            delegate,
            inputs=inputs if isinstance(inputs, str) else "\n".join(map(str, inputs)),
            window=window,
            presets=presets,
            include_identifiers=include_identifiers,
            include_study_date=include_study_date,
            num_workers=num_workers,
            render_dir=render_dir,
        )


def _dataset_named(name: str):
    """The dataset ``name``, created (persistent) when it does not exist yet."""
    return fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)


def _split_inputs(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [line.strip() for line in str(value).splitlines() if line.strip()]
