"""Reader profiles on any view: the numbers behind the ``reader_profiles`` panel.

Recomputes :func:`multireader.stats.profiles.reader_profiles` on the samples of a view, against
a stored consensus field (never re-fitted here, so the reference does not move when the
view is filtered), and builds the view behind any bar, cell or point: a reader's calls
of one class, the images where the reader said A and consensus said B, a reader's
labels of one session. Reads with one aggregation (:mod:`multireader.core.collect`); no
App code.
"""

from __future__ import annotations

import numpy as np

from multireader.core import collect as C
from multireader.core import fields as F
from multireader.errors import MultireaderError
from multireader.stats.profiles import reader_profiles


def profile_scale(ordered: bool) -> str:
    """The scale test: "ordinal" on an ordered label schema, else "nominal"."""
    from multireader.analyses.agreement import profile_scale as scale

    return scale(ordered)


class ReportError(MultireaderError):
    """The profiles cannot be computed as asked; the message says why."""


def consensus_fields(dataset) -> list[str]:
    from multireader.embed.label_model import consensus_label_fields

    return consensus_label_fields(dataset)


def profiles_for_view(view, consensus_field: str | None = None, alpha: float = 0.05) -> dict:
    """Per-reader confusion against ``consensus_field``, call rates with the bias test and
    agreement by session with the drift test, on the samples of ``view``.

    Adds ``reader_fields`` (reader -> field) and ``consensus_field`` to the result of
    :func:`multireader.stats.profiles.reader_profiles`, run with ``scale="ordinal"`` on
    an ordered label schema (else "nominal"), so its ordinal-bias or marginal-homogeneity
    flags join the prevalence-bias ones; and ``consensus_run`` (the convergence sentence
    of the newest stored Dawid-Skene run that wrote the field, or None).
    """
    dataset = view._dataset
    found = consensus_fields(dataset)
    consensus_field = consensus_field or (found[0] if found else None)
    if consensus_field is None:
        raise ReportError("no consensus field yet: run compute_consensus first")
    if not dataset.has_field(consensus_field):
        raise ReportError(f"no consensus field {consensus_field!r} on {dataset.name!r}")
    rs = C.select_readers(dataset, "classification")
    if rs.level == "series":
        raise ReportError("series-level reads: profiles are drawn per image")
    # the consensus labels come in the same database pass as the readers'
    path = f"{consensus_field}.label"
    # session names without read times (a third less to read); their order comes from
    # the stored consensus run where there is one (see _in_stored_order)
    # (coded against the classes in the database: -1 where missing or not a class)
    reads = C.categorical_reads(
        view, rs, scores=False, sessions="names", coded=[path], ids=False, groups=False
    )
    ref = reads.extra_codes[path]
    sessions = reads.sessions if (reads.sessions >= 0).any() else None
    session_names = reads.session_names
    if sessions is not None:
        sessions, session_names = _in_stored_order(
            dataset, consensus_field, sessions, session_names
        )
    prof = reader_profiles(
        reads.codes,
        ref,
        len(reads.classes),
        sessions=sessions,
        reader_names=reads.readers,
        class_names=reads.classes,
        session_names=session_names if sessions is not None else None,
        alpha=alpha,
        reference_name=consensus_field,
        scale=profile_scale(reads.ordered),
    )
    prof["reader_fields"] = dict(zip(rs.readers, rs.fields, strict=True))
    prof["consensus_field"] = consensus_field
    prof["n_samples"] = reads.n_items
    prof["consensus_run"] = consensus_convergence(dataset, consensus_field)
    return prof


def consensus_convergence(dataset, consensus_field: str) -> str | None:
    """Whether the newest consensus run that wrote ``consensus_field`` converged (its
    :meth:`ConsensusResults.convergence_text`), None without such a Dawid-Skene run."""
    from multireader.analyses.agreement import ConsensusResults
    from multireader.core import runs

    best, when = None, ""
    for key in runs.list_runs(dataset, "consensus"):
        try:
            res = ConsensusResults.from_run(dataset, key)
        except Exception:  # a run another version wrote: never fail the panel over it
            continue
        if res.output_field != consensus_field:
            continue
        t = str(res.created_at or "")
        if best is None or t >= when:
            best, when = res, t
    return best.convergence_text() if best is not None else None


def stored_session_order(dataset, consensus_field: str) -> list[str]:
    """Session names in the order the stored consensus run put them (by first read),
    from the newest consensus run that wrote ``consensus_field``; [] if there is none."""
    from multireader.core import runs

    best, best_time = [], ""
    for key in runs.list_runs(dataset, "consensus"):
        try:
            run = runs.load(dataset, key)
        except Exception:  # a run another version wrote: never fail the panel over it
            continue
        cfg = run.get("config") or {}
        if cfg.get("output_field") != consensus_field:
            continue
        order: list[str] = []
        per = ((run.get("results") or {}).get("profiles") or {}).get("per_reader") or {}
        for prof in per.values():
            for row in (prof.get("drift") or {}).get("sessions") or []:
                if row.get("session") not in order:
                    order.append(row.get("session"))
        t = str(cfg.get("created_at") or "")
        if order and t >= best_time:
            best, best_time = order, t
    return best


def _in_stored_order(dataset, consensus_field, sessions, names):
    """Re-index sessions so they follow the stored run's order (time of first read),
    not their names: the panel reads names only (a third faster) yet shows the same
    order as the stored profiles. Sessions the run did not see follow, by name."""
    stored = stored_session_order(dataset, consensus_field)
    if not stored:
        return sessions, names
    order = [n for n in stored if n in names] + [n for n in names if n not in stored]
    remap = np.array([order.index(n) for n in names], dtype=np.int64)
    out = np.where(sessions >= 0, remap[np.maximum(sessions, 0)], -1)
    return out, order


def reader_field(dataset, reader: str) -> str:
    fields = {str(m["reader"]): n for n, m in F.reader_fields(dataset, ["classification"]).items()}
    if reader not in fields:
        raise ReportError(f"no classification field for reader {reader!r}")
    return fields[reader]


def calls_view(view, field: str, label: str):
    """Samples where ``field`` (a reader's or the consensus) says ``label``."""
    from fiftyone import ViewField as VF

    return view.match(VF(f"{field}.label") == label)


def confusion_view(view, reader_field_name: str, consensus_field: str, a: str, b: str):
    """Samples where the reader said ``a`` and consensus ``b``."""
    from fiftyone import ViewField as VF

    return view.match(
        (VF(f"{reader_field_name}.label") == a) & (VF(f"{consensus_field}.label") == b)
    )


def session_view(view, reader_field_name: str, session: str):
    """The samples a reader labelled in one session (the ``session`` of their label)."""
    from fiftyone import ViewField as VF

    return view.match(
        (VF(f"{reader_field_name}.session") == session) & (VF(f"{reader_field_name}.label") != None)  # noqa: E711 - MongoDB null test
    )
