"""Reader profiles on any view: the numbers behind the ``reader_profiles`` panel.

Recomputes :func:`multireader.profiles.reader_profiles` on the samples of a view, against
a stored consensus field (never re-fitted here, so the reference does not move when the
view is filtered), and builds the view behind any bar, cell or point: a reader's calls
of one class, the images where the reader said A and consensus said B, a reader's
labels of one session. Reads with ``values()``; no App code.
"""

from __future__ import annotations

import numpy as np

from . import collect as C
from . import fields as F
from .profiles import reader_profiles


class ReportError(ValueError):
    """The profiles cannot be computed as asked; the message says why."""


def consensus_fields(dataset) -> list[str]:
    from .label_model import consensus_label_fields

    return consensus_label_fields(dataset)


def profiles_for_view(view, consensus_field: str | None = None, alpha: float = 0.05) -> dict:
    """Per-reader confusion against ``consensus_field``, call rates with the bias test and
    agreement by session with the drift test, on the samples of ``view``.

    Adds ``reader_fields`` (reader -> field) and ``consensus_field`` to the result of
    :func:`multireader.profiles.reader_profiles`.
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
    # session names without read times: ordered by name, which saves a third of the read
    reads = C.categorical_reads(view, rs, scores=False, sessions="names", extra=[path])
    index = {c: k for k, c in enumerate(reads.classes)}
    labels = reads.extra[path]
    ref = np.array([index.get(v, -1) if v is not None else -1 for v in labels], dtype=np.int64)
    sessions = reads.sessions if (reads.sessions >= 0).any() else None
    prof = reader_profiles(
        reads.codes,
        ref,
        len(reads.classes),
        sessions=sessions,
        reader_names=reads.readers,
        class_names=reads.classes,
        session_names=reads.session_names if sessions is not None else None,
        alpha=alpha,
        reference_name=consensus_field,
    )
    prof["reader_fields"] = dict(zip(rs.readers, rs.fields, strict=True))
    prof["consensus_field"] = consensus_field
    prof["n_samples"] = len(labels)
    return prof


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
