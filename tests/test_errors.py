"""One error family: every exception class the package defines is a MultireaderError, so
panels and operators can tell a user's bad input from a bug with one ``except``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import multireader
from multireader.errors import MultireaderError


def _exception_classes() -> dict[str, type]:
    """``"module.Class"`` -> class, for every exception class a multireader module defines."""
    found = {}
    for info in pkgutil.walk_packages(multireader.__path__, "multireader."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                # warnings (e.g. ConvergenceWarning) are not errors: they are never raised
                and not issubclass(obj, Warning)
                and obj.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_exception_class_is_a_multireader_error():
    classes = _exception_classes()
    # the walk reaches every layer (a broken walk must not pass vacuously)
    assert {"multireader.core.runs.RunError", "multireader.io.dicom.DicomSkip"} <= set(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, MultireaderError))
    assert not outside, f"not derived from MultireaderError: {outside}"


def test_the_family_keeps_the_builtin_bases_callers_catch():
    from multireader.io.dicom import DicomSkip
    from multireader.lineage.audit import AuditError

    assert issubclass(MultireaderError, ValueError)
    assert issubclass(AuditError, RuntimeError)  # existing ``except RuntimeError`` still works
    assert issubclass(DicomSkip, Exception)
