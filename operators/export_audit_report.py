"""Operator ``export_audit_report``: the self-contained HTML + JSON report for auditors."""

from __future__ import annotations

import datetime as dt
import json
import os

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common
from . import _inputs as I
from ._base import MultireaderOperator


def default_path(dataset_name: str, directory: str | None = None) -> str:
    """``<cwd>/audit_report_<dataset>_<yyyymmdd>.html``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset_name)
    name = f"audit_report_{safe}_{dt.date.today():%Y%m%d}.html"
    return os.path.join(directory or os.getcwd(), name)


class ExportAuditReport(MultireaderOperator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_audit_report",
            risk_level=types.RiskLevel.MEDIUM,
            label="Export audit report",
            description=(
                "A self-contained HTML report (and the same content as JSON) for auditors: "
                "data and provenance, readers, agreement with CIs by subgroup, contested "
                "cases, consensus and reader profiles, model performance, frozen training "
                "sets verified now, and the audit log with its chain verified"
            ),
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        name = ctx.dataset.name if ctx.dataset is not None else "dataset"
        inputs.str(
            "path",
            default=default_path(name),
            required=True,
            label="HTML file",
            description="On the machine running the operation; the JSON goes beside it",
        )
        inputs.str(
            "title",
            default=f"Audit report: {name}",
            label="Title",
        )
        inputs.int(
            "contested_limit",
            default=100,
            min=1,
            label="Contested cases to list",
            description="The most disputed first; the count always covers them all",
        )
        I.delegation_input(inputs)
        return types.Property(inputs, view=types.View(label="Export audit report"))

    def execute(self, ctx):
        from multireader.lineage import report as audit_report

        p = ctx.params
        path = os.path.abspath(os.path.expanduser((p.get("path") or "").strip()))
        if not path or path.endswith(os.sep):
            path = default_path(ctx.dataset.name, path or None)
        html_path, json_path = audit_report.write_report(
            ctx.dataset,
            path,
            title=(p.get("title") or "").strip() or None,
            contested_limit=int(p.get("contested_limit") or 100),
            progress=_common.progress_for(ctx),
        )
        with open(json_path, encoding="utf-8") as f:
            sections = audit_report.summary(json.load(f))
        return {"html": html_path, "json": json_path, "sections": sections}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("html", label="HTML report (opens offline in any browser)")
        outputs.str("json", label="The same content as JSON")
        _common.table(outputs, "sections", "Sections", {"section": "Section", "summary": "Holds"})
        return types.Property(outputs, view=types.View(label="Audit report written"))

    def __call__(
        self,
        sample_collection,
        *,
        path: str | None = None,
        title: str | None = None,
        contested_limit: int = 100,
        delegate: bool = I.DEFAULTS["delegate"],
    ):
        """Write the report from the SDK; returns ``{"html", "json", "sections"}``.

        ``path`` defaults to ``<cwd>/audit_report_<dataset>_<yyyymmdd>.html``.
        """
        ds = getattr(sample_collection, "_dataset", sample_collection)
        name = ds if isinstance(ds, str) else ds.name
        path = path or default_path(name)
        title = title or f"Audit report: {name}"
        return self.run_sdk_with(locals())
