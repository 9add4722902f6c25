"""Panel ``audit_log``: the dataset's audit log, its chain verified, newest first.

A thin adapter over :mod:`multireader.lineage.audit`: on load (and on "Verify again") the chain
is verified and the newest entries are shown in a table; "Export" opens the
``export_audit_log`` operator.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

#: entries shown in the panel (the export has them all)
SHOWN = 200


def rows(dataset, limit: int = SHOWN) -> tuple[dict, list[dict]]:
    """(verification, table rows newest first) for the panel."""
    from multireader.lineage import audit

    v = audit.verify(dataset)
    out = []
    for e in audit.entries(dataset, newest_first=True, limit=limit):
        wrote = e.get("wrote") or {}
        names = []
        for k in ("new_fields", "new_runs", "new_saved_views", "named_outputs", "fields"):
            names += [n for n in wrote.get(k) or [] if n not in names]
        out.append(
            {
                "seq": e["seq"],
                "time": e["time"][:19].replace("T", " "),
                "user": e["user"],
                "action": e["action"],
                "status": e["status"] + (f": {e['error']}" if e.get("error") else ""),
                "wrote": ", ".join(names)[:120],
                "counts": ", ".join(f"{k}={v}" for k, v in (e.get("counts") or {}).items())[:120],
            }
        )
    return v, out


class AuditLog(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="audit_log",
            label="Audit log",
            icon="receipt_long",
            surfaces="grid",
            help_markdown=(
                "Every operation of this plugin on this dataset: who, when, what it "
                "wrote. Each entry is hash-chained to the one before, so an edit or a "
                "deletion shows up here as a broken chain."
            ),
        )

    def on_load(self, ctx):
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        self._refresh(ctx)

    def on_verify(self, ctx):
        self._refresh(ctx)

    def on_export(self, ctx):
        ctx.prompt("@multireader/disagreement/export_audit_log")

    def _refresh(self, ctx):
        v, table = rows(ctx.dataset)
        if v["ok"]:
            head = str(v["head_hash"] or "")[:16]
            ctx.panel.state.verdict = (
                f"**Chain verified:** {v['n_entries']} entries, unbroken; head hash `{head}`."
                if v["n_entries"]
                else "No entries yet: the log starts with the first operator run."
            )
        else:
            ctx.panel.state.verdict = "**Chain broken.** " + " ".join(
                p["message"] for p in v["problems"][:5]
            )
        ctx.panel.state.ok = v["ok"]
        ctx.panel.state.n_entries = v["n_entries"]
        ctx.panel.data.entries = table

    def render(self, ctx):
        panel = types.Object()
        st = ctx.panel.state
        if st.ok is False:
            panel.view("broken", types.Error(label="Audit log", description=st.verdict or ""))
        else:
            panel.md(st.verdict or "Verifying...", name="verdict")
        row = panel.h_stack("actions", gap=2)
        row.btn("verify", label="Verify again", on_click=self.on_verify)
        row.btn("export", label="Export", on_click=self.on_export)
        if (st.n_entries or 0) > SHOWN:
            panel.md(f"The newest {SHOWN} of {st.n_entries} entries; Export has them all.")
        table = types.TableView()
        for key, label in (("seq", "#"), ("time", "Time (UTC)"), ("user", "Who"),
                           ("action", "Operation"), ("status", "Status"),
                           ("wrote", "Wrote"), ("counts", "Counts")):  # fmt: skip
            table.add_column(key, label=label)
        panel.list("entries", types.Object(), view=table)
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1, pad=2))
