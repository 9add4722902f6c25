"""The one shape of this plugin's operators: delegation, the App reload, the SDK call."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterable

import fiftyone as fo
import fiftyone.operators as foo


class MultireaderOperator(foo.Operator):
    """Base of every operator here.

    ``resolve_delegation`` honours the form's "Delegate" choice, :meth:`reload` refreshes
    the App after an immediate run, and :meth:`run_sdk` is what each ``__call__`` does:
    run the operator through FiftyOne's executor, as the App would, so the SDK, the App
    and delegated workers all validate the same form and reach the same ``execute``.
    """

    #: the operator's form offers the "Samples" choice (dataset or current view); from
    #: the SDK it then works on exactly the collection it is given
    on_samples = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "resolve_input" in cls.__dict__:
            cls.resolve_input = _filling_required_defaults(cls.__dict__["resolve_input"])

    def resolve_delegation(self, ctx):
        # None lets the App offer both "Execute" and "Schedule"
        return ctx.params.get("delegate", None)

    @staticmethod
    def reload(ctx) -> None:
        """Reload the App's dataset after an immediate run (a delegated one has no App)."""
        if not ctx.delegated:
            ctx.trigger("reload_dataset")

    def run_sdk(self, sample_collection, delegate: bool = False, **params):
        """Run from the SDK on ``sample_collection`` (or a dataset name) with ``params``.

        Tuples, sets and other iterables become lists and paths become strings, as the
        form's JSON would hold them. Returns the dict ``execute`` returned, or the queued
        delegated operation when ``delegate=True``.
        """
        if isinstance(sample_collection, str):
            sample_collection = fo.load_dataset(sample_collection)
        params = {k: _as_form_value(v) for k, v in params.items()}
        if self.on_samples:
            params.setdefault("target", "CURRENT_VIEW")
        ctx = {"view": sample_collection.view(), "params": {**params, "delegate": delegate}}
        return foo.execute_operator(self.uri, ctx).result

    def run_sdk_with(self, arguments: dict):
        """:meth:`run_sdk` with the arguments of this operator's ``__call__`` taken from
        ``arguments`` (its ``locals()``): each becomes the form parameter of its name."""
        names = inspect.signature(type(self).__call__).parameters
        return self.run_sdk(**{name: arguments[name] for name in names if name != "self"})


def _filling_required_defaults(resolve_input):
    """``resolve_input`` that also puts the form's default into ``ctx.params`` for each
    required field the caller left unset, as the App's form sends it.

    FiftyOne's executor validates the params, not the form: an agent (the MCP server's
    ``execute_operator``) or a script that sends only what it wants to change would
    otherwise be refused with "Required property" for a field that has a default.
    """

    @functools.wraps(resolve_input)
    def wrapper(self, ctx):
        prop = resolve_input(self, ctx)
        props = getattr(getattr(prop, "type", None), "properties", None) or {}
        params = ctx.params if isinstance(ctx.params, dict) else None
        for name, field in props.items():
            if params is None or not field.required or field.default is None:
                continue
            if params.get(name) is None:
                params[name] = field.default
        return prop

    return wrapper


def _as_form_value(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, dict, list)):
        return list(value)
    return value
