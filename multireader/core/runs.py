"""Analysis results stored as FiftyOne runs, so they are listed, reloaded, renamed and
deleted the way brain runs are, and panels and reports read them back by key.

A run's config holds what was asked (method, readers, fields, parameters, plugin
version); its results hold what was found (a JSON document). The view the run was
computed on is stored with it by FiftyOne, so ``load_run_view`` gives it back.

>>> save(view, "agreement", "agreement", config={...}, results={...})
>>> list_runs(dataset, "agreement")          # ['agreement']
>>> load(dataset, "agreement")["results"]    # the stored JSON
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re

from multireader import __version__
from multireader.errors import MultireaderError

#: run methods this plugin writes are this prefix and the kind, e.g. ``multireader.agreement``
METHOD_PREFIX = "multireader."
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RunError(MultireaderError):
    """A run key that is invalid, missing, or of another kind."""


def method_name(kind: str) -> str:
    return f"{METHOD_PREFIX}{kind}"


def check_key(run_key: str) -> str:
    """Run keys are identifiers (FiftyOne's rule): letters, digits and underscores."""
    if not isinstance(run_key, str) or not _KEY_RE.match(run_key):
        raise RunError(
            f"run key {run_key!r} is not valid: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return run_key


def jsonable(obj):
    """Plain JSON types only: numpy scalars and arrays become Python values, NaN None."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return obj


def save(
    view, run_key: str, kind: str, config: dict, results: dict, overwrite: bool = True
) -> None:
    """Register (or replace) run ``run_key`` of ``kind`` on ``view`` with its results."""
    check_key(run_key)
    dataset = view._dataset
    method = method_name(kind)
    if dataset.has_run(run_key):
        existing = dataset.get_run_info(run_key).config.method
        if existing != method:
            raise RunError(
                f"run key {run_key!r} already holds a {existing!r} run; choose another key"
            )
        if not overwrite:
            raise RunError(f"run {run_key!r} exists; pass overwrite=True to replace it")
        dataset.delete_run(run_key)
    reserved = {"method", "type", "cls"} & set(config)
    if reserved:
        raise RunError(f"run config keys {sorted(reserved)} are reserved by FiftyOne")
    cfg = dict(jsonable(config))
    cfg.setdefault("plugin_version", __version__)
    cfg.setdefault("created_at", dt.datetime.now(dt.UTC).isoformat())
    run_config = view.init_run(method=method, **cfg)
    view.register_run(run_key, run_config)
    # a JSON string: FiftyOne serialises results as is, and keys like "ICC(1,1)" or
    # reader ids must come back exactly
    res = view.init_run_results(run_key, payload=json.dumps(jsonable(results)))
    view.save_run_results(run_key, res)


def list_runs(dataset, kind: str | None = None) -> list[str]:
    """Keys of this plugin's runs on ``dataset`` (of one ``kind`` if given)."""
    if kind is not None:
        return sorted(dataset.list_runs(method=method_name(kind)))
    out = []
    for key in dataset.list_runs():
        method = dataset.get_run_info(key).config.method or ""
        if method.startswith(METHOD_PREFIX):
            out.append(key)
    return sorted(out)


def newest_first(dataset, kind: str) -> list[str]:
    """Keys of this plugin's ``kind`` runs, newest first by their ``created_at``.

    Reads the run records only (never the results). A run whose record cannot be read
    (written by another version) is listed last rather than failing the caller."""
    keys = list_runs(dataset, kind=kind)
    stamps = {}
    for k in keys:
        try:
            stamps[k] = str(dataset.get_run_info(k).config.serialize().get("created_at") or "")
        except Exception:  # noqa: BLE001 - listed last, never fails a panel
            stamps[k] = ""
    return sorted(keys, key=lambda k: stamps[k], reverse=True)


def _info(dataset, run_key: str, kind: str | None = None):
    """The run's info, after checking it exists and is one of this plugin's runs."""
    if not dataset.has_run(run_key):
        available = ", ".join(list_runs(dataset, kind)) or "none"
        raise RunError(f"no run {run_key!r} on dataset {dataset.name!r} (runs: {available})")
    info = dataset.get_run_info(run_key)
    method = info.config.method or ""
    if not method.startswith(METHOD_PREFIX) or (kind and method != method_name(kind)):
        raise RunError(f"run {run_key!r} is a {method!r} run, not {method_name(kind or '*')!r}")
    return info


def load(dataset, run_key: str, kind: str | None = None) -> dict:
    """``{"key", "kind", "config", "results", "timestamp"}`` of a stored run."""
    info = _info(dataset, run_key, kind)
    method = info.config.method
    cfg = {
        k: v
        for k, v in info.config.serialize().items()
        if k not in ("cls", "type", "method", "_method")
    }
    results = dataset.load_run_results(run_key, cache=False, load_view=False)
    return {
        "key": run_key,
        "kind": method[len(METHOD_PREFIX) :],
        "config": cfg,
        "results": json.loads(results.payload),
        "timestamp": info.timestamp,
    }


def rename(dataset, run_key: str, new_key: str) -> None:
    check_key(new_key)
    _info(dataset, run_key)  # a clear error when it is absent or not this plugin's
    if dataset.has_run(new_key):
        raise RunError(f"run key {new_key!r} is taken; delete that run or choose another key")
    dataset.rename_run(run_key, new_key)


def delete(dataset, run_key: str) -> None:
    """Delete the run record (never the fields or labels it wrote)."""
    _info(dataset, run_key)
    dataset.delete_run(run_key)
