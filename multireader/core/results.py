"""Typed results of the analyses, in the manner of FiftyOne's ``ClassificationResults``:
one object per stored run that knows what the run found, what it wrote, and how it is
shown.

An analysis function (``compute_agreement``, ``compute_lesion_agreement``, ...) returns
its results object; ``AnalysisResults.from_run(dataset, run_key)`` gives the same object
back from the stored run. Each object holds the results dict the run stores, with its
``run_key``, ``kind`` and ``config``, and says:

- :attr:`~AnalysisResults.outputs`: the fields, runs and saved views it wrote, so the
  audit log records them instead of guessing them from result key names;
- :meth:`~AnalysisResults.summary`: the small JSON-safe dict an operator returns;
- :meth:`~AnalysisResults.rows`: the rows of one of its tables (``sections`` names
  them), for an operator's table or the audit report.

The concrete classes live beside their analyses (``analyses/agreement.py``:
``AgreementResults``, ``ConsensusResults``; ``analyses/lesions.py``:
``LesionAgreementResults``; ...), which this layer cannot import: each registers its run
``kind`` here when its module is imported, and :meth:`AnalysisResults.from_run` on the
base class returns the registered class of the run's kind (the base class when that
module was not imported).

Read-only mapping access to the results dict (``results["kinds"]``,
``results.get("run_key")``) keeps code written for the plain dicts working.

>>> res = compute_agreement(dataset)                     # an AgreementResults
>>> res.summary()["n_disagree"], res.outputs["fields"]
>>> AnalysisResults.from_run(dataset, "agreement").rows("statistics")
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from multireader.core import runs as RUNS
from multireader.errors import MultireaderError

#: run kind -> the results class of that kind (filled as analysis modules are imported)
_REGISTRY: dict[str, type[AnalysisResults]] = {}


class ResultsError(MultireaderError):
    """A results object asked for something it does not hold (e.g. an unknown table)."""


class AnalysisResults(Mapping):
    """The results of one analysis run: the stored dict, its run key, kind and config.

    Subclasses set :attr:`run_kind` (the ``kind`` passed to :func:`runs.save`), list
    their tables in :attr:`sections`, and override :attr:`outputs`, :meth:`summary` and
    :meth:`_rows`.
    """

    #: the kind of run this class reads (None: any of this plugin's runs)
    run_kind: ClassVar[str | None] = None
    #: table names :meth:`rows` accepts
    sections: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("run_kind"):
            _REGISTRY[cls.run_kind] = cls

    def __init__(
        self,
        results: dict,
        *,
        run_key: str | None = None,
        config: dict | None = None,
        kind: str | None = None,
        timestamp=None,
    ):
        self.results = RUNS.jsonable(dict(results or {}))
        self.run_key = run_key if run_key is not None else self.results.get("run_key")
        self.kind = kind or self.run_kind
        self.config = RUNS.jsonable(dict(config or {}))
        self.timestamp = timestamp

    # --- the stored run --------------------------------------------------------------

    @classmethod
    def from_run(cls, dataset, run_key: str) -> AnalysisResults:
        """The results of stored run ``run_key`` (:func:`multireader.core.runs.load`).

        On a subclass the run must be of its kind (a :class:`runs.RunError` says what it
        is otherwise); on this base class the run's kind picks the class."""
        run = RUNS.load(dataset, run_key, cls.run_kind)
        target = cls if cls.run_kind else _REGISTRY.get(run["kind"], AnalysisResults)
        return target(
            run["results"],
            run_key=run_key,
            config=run["config"],
            kind=run["kind"],
            timestamp=run.get("timestamp"),
        )

    @classmethod
    def newest(cls, dataset, kind: str | None = None) -> AnalysisResults | None:
        """The most recently created stored run of this class's kind (or ``kind``), or
        None when there is none."""
        kind = kind or cls.run_kind
        best, when = None, ""
        for key in RUNS.list_runs(dataset, kind):
            try:
                res = cls.from_run(dataset, key)
            except MultireaderError:
                continue
            created = str(res.created_at or "")
            if best is None or created >= when:
                best, when = res, created
        return best

    @property
    def created_at(self) -> str | None:
        """When the run was stored (ISO 8601, UTC), from its config."""
        return self.config.get("created_at")

    def to_json(self) -> dict:
        """``{"run_key", "kind", "config", "results"}``, JSON-safe."""
        return {
            "run_key": self.run_key,
            "kind": self.kind,
            "config": self.config,
            "results": self.results,
        }

    # --- what it wrote and how it is shown -------------------------------------------

    @property
    def outputs(self) -> dict[str, list[str]]:
        """``{"fields", "runs", "saved_views"}`` this analysis wrote (names)."""
        return self._outputs(fields=self.results.get("fields_written") or [])

    def _outputs(self, fields=(), saved_views=()) -> dict[str, list[str]]:
        return {
            "fields": [str(f) for f in dict.fromkeys(fields or []) if f],
            "runs": [self.run_key] if self.run_key else [],
            "saved_views": [str(v) for v in dict.fromkeys(saved_views or []) if v],
        }

    def summary(self) -> dict:
        """The small JSON-safe dict an operator returns (the run holds everything);
        ``outputs`` names what was written, for the audit log."""
        return {"run_key": self.run_key, "outputs": self.outputs}

    def rows(self, section: str) -> list[dict]:
        """The rows of table ``section`` (one of :attr:`sections`), JSON-safe dicts."""
        if section not in self.sections:
            raise ResultsError(
                f"{type(self).__name__} has no table {section!r}; "
                f"choose one of {list(self.sections) or 'none'}"
            )
        return RUNS.jsonable(self._rows(section))

    def _rows(self, section: str) -> list[dict]:
        return []

    # --- read-only mapping over the results dict -------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in self.results:
            return self.results[key]
        if key == "run_key":
            return self.run_key
        if key == "config":
            return self.config
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __contains__(self, key) -> bool:
        return key in self.results or (key == "run_key" and self.run_key is not None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} run_key={self.run_key!r} kind={self.kind!r}>"


def results_class(kind: str) -> type[AnalysisResults]:
    """The registered results class of run ``kind`` (the base class if none)."""
    return _REGISTRY.get(kind, AnalysisResults)
