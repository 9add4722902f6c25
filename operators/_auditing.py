"""Every operator of this plugin appends an entry to the dataset's audit log.

:func:`audited` wraps an operator class's ``execute`` once, where the plugin registers
its operators, so the App, the operator browser, SDK ``__call__``s (which go through
FiftyOne's executor) and delegated workers all log the same way. A delegated operation
logs when the worker runs it, not when it is queued.

Per execution: the operator, its parameters, the dataset and view, who and when (in
:mod:`multireader.lineage.audit`), whether it was delegated, how long it took, what it wrote
(fields, runs and saved views that are new, plus the outputs it names) and the counts in
its result.

What an operation names as its outputs comes, when it can, from the operation itself:
an analysis operator returns its typed results' ``summary()``
(:class:`multireader.core.results.AnalysisResults`), whose ``outputs`` entry lists the
fields, runs and saved views it wrote; those are logged as they are
(``wrote["outputs"]``, ``wrote["outputs_source"] == "declared"``). Only an operator
without typed results, or one that failed before returning, has its outputs guessed
from the names of its result's and parameters' keys (``..._field``, ``run_key``, ...;
``outputs_source == "guessed"``). An operator that raises gets a "failed"
entry with the error, and every field it created or named as output is marked
``incomplete`` in its field info (never deleted, and never a reader's field), so a
half-written field cannot pass for a complete one; a later successful run that writes
the field clears the mark. The exception reaches the caller unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

from multireader.lineage import delegated

from . import _common

logger = logging.getLogger(__name__)

_OUTPUT_KEYS = ("field", "fields", "run_key", "brain_key", "view", "saved_view", "queue_view")
_MAX_LIST = 50


def _snapshot(dataset) -> dict:
    if dataset is None:
        return {"fields": set(), "runs": set(), "views": set()}
    with contextlib.suppress(Exception):
        dataset.reload()
    return {
        "fields": set(dataset.get_field_schema(flat=True)),
        "runs": set(dataset.list_runs()) | set(dataset.list_brain_runs()),
        "views": set(dataset.list_saved_views()),
    }


def _plain_params(params: dict) -> dict:
    out = {}
    for k, v in (params or {}).items():
        if k in ("panel_id", "panel_state"):
            continue
        if isinstance(v, (list, tuple)) and len(v) > _MAX_LIST:
            v = [*list(v)[:_MAX_LIST], f"... {len(v) - _MAX_LIST} more"]
        out[k] = v
    return out


_OUTPUT_KINDS = ("fields", "runs", "saved_views")


def _declared_outputs(result) -> dict[str, list[str]] | None:
    """``{"fields", "runs", "saved_views"}`` the result declares in its ``outputs``
    entry (a typed result's), or None when it declares none."""
    out = result.get("outputs") if isinstance(result, dict) else getattr(result, "outputs", None)
    if not isinstance(out, dict) or not any(k in out for k in _OUTPUT_KINDS):
        return None
    return {
        k: [str(x) for x in dict.fromkeys(out.get(k) or []) if isinstance(x, str) and x]
        for k in _OUTPUT_KINDS
    }


def _named_outputs(result, params) -> list[str]:
    """The fallback: names under output-like keys (``_OUTPUT_KEYS`` and their
    ``_<key>`` suffixes) of the result and the parameters."""
    names = []
    for source in (result or {}, params or {}):
        if not isinstance(source, dict):
            continue
        for k, v in source.items():
            if not any(k == key or k.endswith("_" + key) for key in _OUTPUT_KEYS):
                continue
            for item in v if isinstance(v, (list, tuple)) else [v]:
                if isinstance(item, str) and item and item not in names:
                    names.append(item)
    return names


def _counts(result) -> dict:
    out = {}
    for k, v in (result or {}).items() if isinstance(result, dict) else []:
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[f"n_{k}"] = len(v)
    return out


def _target_dataset(ctx, result):
    """The dataset the operation changed: ctx's, or one it created by name."""
    import fiftyone as fo

    for source in (result if isinstance(result, dict) else {}, ctx.params or {}):
        name = source.get("dataset_name") or source.get("dataset")
        if isinstance(name, str) and name and fo.dataset_exists(name):
            return fo.load_dataset(name)
    return ctx.dataset


def _left_by_failed_runs(dataset, entry: dict) -> list[str]:
    """Fields marked incomplete by a failed run of the same action with the same
    parameters as the completed run ``entry``: it redid what that one half-wrote (a
    re-run after a crash or a lost worker), so its marks go."""
    from multireader.lineage import audit

    marked = {}
    for name, field in dataset.get_field_schema().items():
        mark = ((field.info or {}).get("multireader") or {}).get("incomplete")
        if mark is not None:
            marked[name] = mark.get("audit_seq")
    if not marked:
        return []
    redone = {
        e["seq"]
        for e in audit.entries(dataset, action=entry["action"])
        if e["status"] == "failed" and e["params"] == entry["params"]
    }
    return [name for name, seq in marked.items() if seq in redone]


def _record(ctx, dataset, before, started, result, error, operator=None):
    from multireader.lineage import audit

    if dataset is None or getattr(dataset, "deleted", False):
        return None  # a deleted study's last entry is its library's own (delete_study)
    after = _snapshot(dataset)
    declared = _declared_outputs(result)
    if declared is not None:
        named = list(dict.fromkeys(n for k in _OUTPUT_KINDS for n in declared[k]))
        named_fields = declared["fields"]
    else:
        named = _named_outputs(result, ctx.params)
        named_fields = named
    # top-level fields only: a new label field's subfields (label, confidence, ...) are it
    new_fields = sorted(f for f in after["fields"] - before["fields"] if "." not in f)
    wrote = {
        "new_fields": new_fields,
        "new_runs": sorted(after["runs"] - before["runs"]),
        "new_saved_views": sorted(after["views"] - before["views"]),
        "named_outputs": named,
        "outputs_source": "declared" if declared is not None else "guessed",
    }
    if declared is not None:
        wrote["outputs"] = declared
    try:
        view = None if ctx.view is None or ctx.view._is_full_dataset() else ctx.view
    except Exception:
        view = None
    detail = {
        "delegated": bool(getattr(ctx, "delegated", False)),
        "duration_s": round(time.time() - started, 3),
    }
    try:
        entry = audit.append(
            dataset,
            ctx.operator_uri.split("/")[-1] if ctx.operator_uri else "unknown",
            # an operator may say what of its params the log keeps (import_dicom: no
            # source folder names)
            params=_plain_params(getattr(operator, "audit_params", dict)(ctx.params or {})),
            view=view,
            wrote=wrote,
            counts=_counts(result),
            status="failed" if error else "completed",
            error=error,
            detail=detail,
        )
    except Exception as e:  # never let the log hide the operation's own outcome
        logger.warning("could not append to the audit log of %r: %s", dataset.name, e)
        return None
    # fields this run created or names as output: flagged if it failed, cleared if not
    outputs = list(new_fields) + [n for n in named_fields if n in after["fields"]]
    if error is None:
        outputs += _left_by_failed_runs(dataset, entry)
    try:
        audit.mark_incomplete(dataset, outputs, entry, error)
    except Exception as e:
        logger.warning("could not mark the output fields of %s: %s", entry.get("action"), e)
    return entry


def audited(cls):
    """Wrap ``cls.execute`` so each execution appends an audit entry (idempotent)."""
    execute = cls.execute
    if getattr(execute, "_multireader_audited", False):
        return cls

    @functools.wraps(execute)
    def wrapper(self, ctx):
        started = time.time()
        dataset = _common.current_dataset(ctx)  # None: the operator creates it (import_dicom)
        before = _snapshot(dataset)
        # a delegated run records its worker and a heartbeat, so a run whose worker dies
        # is found and failed by multireader.lineage.delegated.reap_orphans
        op_id = ctx.request_params.get("run_doc") if ctx.delegated else None
        top = [f for f in before["fields"] if "." not in f]
        with delegated.track(op_id, top):
            try:
                result = execute(self, ctx)
            except Exception as e:
                _record(ctx, dataset, before, started, None, f"{type(e).__name__}: {e}", self)
                raise
            target = _target_dataset(ctx, result)
            if target is not None and (dataset is None or target.name != dataset.name):
                before = {"fields": set(), "runs": set(), "views": set()}
            _record(ctx, target, before, started, result, None, self)
        return result

    wrapper._multireader_audited = True
    cls.execute = wrapper
    return cls
