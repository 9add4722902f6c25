"""Read the readers' labels out of a FiftyOne view into the arrays the statistics take.

Every read goes through ``values()`` (one aggregation per batch of paths), never a loop
over samples, and nothing here writes: the readers' fields are only ever read. A label
the schema does not know is not silently dropped either: it is treated as a missing read
for the statistics and reported, with its sample and reader, in ``unknown``.

The array conventions are those of :mod:`multireader.stats.agreement`: categorical codes
``(n_items, n_readers)`` with ``-1`` for a missing read, continuous values with NaN.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

import numpy as np

from multireader.core import fields as F
from multireader.core import schema as S
from multireader.errors import MultireaderError

#: label kinds this module can read, as recorded in each reader field's metadata
CATEGORICAL_KINDS = ("classification", "series")


class ReaderSelectionError(MultireaderError):
    """The requested readers or label kind cannot be analysed on this view."""


@dataclass
class ReaderSet:
    """The reader fields chosen for one analysis, all of one label kind."""

    kind: str
    fields: list[str]
    readers: list[str]
    level: str = "slice"

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "fields": self.fields,
            "readers": self.readers,
            "level": self.level,
        }


@dataclass
class CategoricalReads:
    """Class calls of R readers on n items (samples, or series for series-level reads)."""

    item_ids: list[str]  # sample ids (the first sample of the series for series reads)
    readers: list[str]
    fields: list[str]
    classes: list[str]
    ordered: bool
    codes: np.ndarray  # (n, R) int, -1 missing
    scores: np.ndarray  # (n, R) float, NaN missing (the optional ordinal/continuous score)
    sessions: np.ndarray  # (n, R) int ordered session index, -1 unknown
    session_names: list[str]  # session index -> name, shared by all readers
    groups: np.ndarray | None  # (n,) int patient index, or None
    unknown: list[dict] = field(default_factory=list)
    # sample ids of every item, for series-level reads (all slices of the series)
    members: list[list[str]] | None = None
    # the ``extra`` paths asked for, read in the same pass (per item)
    extra: dict = field(default_factory=dict)
    # the ``coded`` label paths asked for, as class codes (per item, -1 missing)
    extra_codes: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])


def select_readers(
    dataset, kind: str, readers: list[str] | None = None, fields: list[str] | None = None
) -> ReaderSet:
    """The reader fields of one ``kind``, optionally restricted to ``readers`` or ``fields``.

    Raises :class:`ReaderSelectionError` naming what is missing, e.g. a reader with no
    field of this kind.
    """
    all_fields = F.reader_fields(dataset)
    known_kinds = sorted({m["kind"] for m in all_fields.values()})
    if kind not in F.READER_KIND_SUFFIX:
        raise ReaderSelectionError(
            f"unknown label kind {kind!r}; expected one of {sorted(F.READER_KIND_SUFFIX)}"
        )
    of_kind = {n: m for n, m in all_fields.items() if m["kind"] == kind}
    if not of_kind:
        raise ReaderSelectionError(
            f"dataset {dataset.name!r} has no reader fields of kind {kind!r}"
            + (
                f" (it has: {', '.join(known_kinds)})"
                if known_kinds
                else "; import reader labels first"
            )
        )
    if fields:
        missing = [f for f in fields if f not in of_kind]
        if missing:
            raise ReaderSelectionError(
                f"not reader fields of kind {kind!r}: {', '.join(missing)}; "
                f"available: {', '.join(sorted(of_kind))}"
            )
        chosen = {f: of_kind[f] for f in fields}
    elif readers:
        by_reader = {str(m["reader"]): n for n, m in of_kind.items()}
        by_slug = {F.reader_slug(r): n for r, n in by_reader.items()}
        chosen = {}
        missing = []
        for r in readers:
            name = by_reader.get(str(r)) or by_slug.get(F.reader_slug(str(r)))
            if name is None:
                missing.append(str(r))
            else:
                chosen[name] = of_kind[name]
        if missing:
            raise ReaderSelectionError(
                f"no {kind} labels for reader(s) {', '.join(missing)}; readers with {kind} "
                f"labels: {', '.join(sorted(by_reader))}"
            )
    else:
        chosen = dict(sorted(of_kind.items(), key=lambda kv: str(kv[1]["reader"])))
    levels = {m.get("level") or "slice" for m in chosen.values()}
    return ReaderSet(
        kind=kind,
        fields=list(chosen),
        readers=[str(m["reader"]) for m in chosen.values()],
        level="series" if "series" in levels else "slice",
    )


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _order_sessions(names: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Index each read's session in time order (earliest read first, then by name).

    Without a session name a read falls into a weekly window counted from the reader's
    first read, so drift can still be tested on timestamps alone.
    """
    import pandas as pd

    out = np.full(len(names), -1, dtype=np.int64)
    as_text = pd.Series(names, dtype=object)
    has_name = (as_text.notna() & (as_text.astype(str) != "")).to_numpy()
    if has_name.any():
        codes, uniq = pd.factorize(as_text[has_name].astype(str).to_numpy())
        t = times[has_name]
        first = np.full(len(uniq), np.inf)
        np.fmin.at(first, codes, np.where(np.isnan(t), np.inf, t))
        order = sorted(range(len(uniq)), key=lambda c: (first[c], _natural_key(uniq[c])))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        out[has_name] = rank[codes]
        return out, [str(uniq[c]) for c in order]
    timed = ~np.isnan(times)
    if timed.any():
        week = np.floor((times[timed] - times[timed].min()) / (7 * 86400)).astype(np.int64)
        uniq = np.unique(week)
        out[timed] = np.searchsorted(uniq, week)
        return out, [f"week {int(w) + 1}" for w in uniq]
    return out, []


def _epoch(values) -> np.ndarray:
    """Seconds since the epoch of each datetime (naive ones are UTC); NaN otherwise."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce")
    secs = stamps.astype("int64").to_numpy() / 1e9
    return np.where(stamps.isna().to_numpy(), np.nan, secs)


def _take(values: list, keep: np.ndarray, whole: bool) -> list:
    return values if whole else [values[i] for i in keep]


def _group_codes(values) -> np.ndarray | None:
    """Patient codes in order of first appearance; an item without a key is its own group."""
    import pandas as pd

    if values is None or len(values) == 0:
        return None
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    none = np.array([v is None for v in arr], dtype=bool)
    if none.all():
        return None
    if none.any():
        # each missing key gets a key of its own, at its place in the order of appearance
        for i in np.flatnonzero(none):
            arr[i] = ("__item__", int(i))
    codes, _ = pd.factorize(arr, use_na_sentinel=False)
    return codes.astype(np.int64)


#: label codes computed in the database (:func:`label_code_expr`): 0 missing, then 2 + the
#: class index; a label outside the classes comes back as ``{"u": label}``
_MISSING, _FIRST = 0, 2
#: documents decoded per chunk of a streamed read (bounds the Python objects held at once)
CHUNK = 20_000
#: field types whose stored value is what ``values()`` returns, so the database can
#: project them directly
_PLAIN_TYPES = ("StringField", "IntField", "FloatField", "BooleanField")


def label_code_expr(path: str, classes: list) -> dict:
    """A MongoDB expression coding the label at ``path``: 0 when missing (or null),
    ``2 + i`` for ``classes[i]``, and ``{"u": <the label>}`` for any other value, so a
    label outside the classes reaches Python verbatim and is never read as a class."""
    ref = f"${path}"
    return {
        "$let": {
            "vars": {"i": {"$indexOfArray": [{"$literal": list(classes)}, ref]}},
            "in": {
                "$cond": [
                    {"$gte": ["$$i", 0]},
                    {"$add": ["$$i", _FIRST]},
                    {
                        "$cond": [
                            {"$in": [{"$type": ref}, ["missing", "null"]]},
                            _MISSING,
                            {"u": ref},
                        ]
                    },
                ]
            },
        }
    }


def _number_expr(path: str) -> dict:
    """The value at ``path`` as a double where it is a number (or bool), else null:
    what ``float(v) if isinstance(v, (int, float))`` keeps."""
    ref = f"${path}"
    return {
        "$cond": [
            {"$in": [{"$type": ref}, ["int", "long", "double", "bool"]]},
            {"$toDouble": ref},
            None,
        ]
    }


def _date_expr(path: str) -> dict:
    """Milliseconds since the epoch for a stored date; any other value as ``{"v": value}``
    (``{}`` when missing)."""
    ref = f"${path}"
    return {"$cond": [{"$eq": [{"$type": ref}, "date"]}, {"$toLong": ref}, {"v": ref}]}


def stream(view, project: dict, chunk: int = CHUNK):
    """Documents of ``view`` projected by ``project`` (one aggregation), in the view's
    order, as lists of at most ``chunk`` dicts: never the whole view at once."""
    cursor = view._aggregate(pipeline=[{"$project": project}])
    buf = []
    for doc in cursor:
        buf.append(doc)
        if len(buf) >= chunk:
            yield buf
            buf = []
    if buf:
        yield buf


def _plain_path(view, path: str) -> bool:
    """Whether the database stores ``path`` exactly as ``values()`` returns it."""
    if path == "id" or path.endswith(".id") or "._id" in path or path.startswith("_"):
        return False
    try:
        fld = view.get_field(path)
    except Exception:  # noqa: BLE001 - an unknown path is read through values()
        return False
    return fld is not None and type(fld).__name__ in _PLAIN_TYPES


def read_columns(view, paths: list[str], chunk: int = CHUNK) -> dict[str, list]:
    """``dict(zip(paths, view.values(paths)))``, read faster.

    Plain fields (text, booleans, integers, floats) come back from one aggregation in a
    fixed binary layout (text and booleans as indices into their distinct values,
    counted in the database first), decoded without a Python object per document; if
    the data does not fit that layout (e.g. an integer stored in a float field) they
    are read as plain documents, chunk by chunk. Other paths go through ``values()``.
    """
    plain = [p for p in paths if _plain_path(view, p)]
    other = [p for p in paths if p not in plain]
    out: dict[str, list] = {p: [] for p in paths}
    if plain:
        try:
            out.update(_fixed_columns(view, plain))
        except _Layout:
            project = {"_id": 0, **{f"c{i}": f"${p}" for i, p in enumerate(plain)}}
            for docs in stream(view, project, chunk):
                for i, p in enumerate(plain):
                    key = f"c{i}"
                    out[p].extend([d.get(key) for d in docs])
    if other:
        out.update(zip(other, view.values(other), strict=True))
    return out


def _fixed_columns(view, paths: list[str]) -> dict[str, list]:
    """:func:`read_columns` through :func:`_fixed_read`; raises :class:`_Layout` when a
    value is not of its field's type."""
    kinds = {p: type(view.get_field(p)).__name__ for p in paths}
    coded = [p for p in paths if kinds[p] in ("StringField", "BooleanField")]
    ds_id = str(view._dataset._doc.id)
    # the distinct values last seen are tried first: a value they lack is coded 1 and
    # sends the read round again with the values counted afresh
    distinct = {p: _VALUES_SEEN[(ds_id, p)] for p in coded if (ds_id, p) in _VALUES_SEEN}
    missing = [p for p in coded if p not in distinct]
    if missing:
        distinct.update(_distinct_values(view, missing))
    try:
        return _fixed_columns_once(view, paths, kinds, distinct)
    except _NewSession:
        distinct.update(_distinct_values(view, coded))
        return _fixed_columns_once(view, paths, kinds, distinct)
    finally:
        for p in coded:
            _VALUES_SEEN[(ds_id, p)] = distinct[p]


#: distinct values of text and boolean fields last seen per (dataset, path)
_VALUES_SEEN: dict = {}


def _distinct_values(view, paths: list[str]) -> dict[str, list]:
    group = {f"d{i}": {"$addToSet": f"${p}"} for i, p in enumerate(paths)}
    docs = list(view._aggregate(pipeline=[{"$group": {"_id": None, **group}}]))
    return {
        p: [v for v in (docs[0][f"d{i}"] if docs else []) if v is not None]
        for i, p in enumerate(paths)
    }


def _fixed_columns_once(view, paths, kinds, distinct) -> dict[str, list]:
    cols: list = []
    for i, p in enumerate(paths):
        ref = f"${p}"
        if p in distinct:
            cols.append((f"v{i}", "i4", _fixed_code_expr(p, distinct[p])))
            continue
        want = "double" if kinds[p] == "FloatField" else ["int", "long"]
        is_kind = (
            {"$eq": [{"$type": ref}, want]}
            if isinstance(want, str)
            else {"$in": [{"$type": ref}, want]}
        )
        flag = {"$cond": [is_kind, 1, {"$cond": [{"$lte": [ref, None]}, 0, 2]}]}
        cols.append((f"f{i}", "i4", flag))
        kind = "f8" if kinds[p] == "FloatField" else "i8"
        cols.append((f"v{i}", kind, {"$cond": [is_kind, ref, 0]}))
    got = _fixed_read(view, cols)
    out = {}
    for i, p in enumerate(paths):
        v = got[f"v{i}"]
        if p in distinct:
            if (v == -1).any():
                raise _NewSession(f"a value of {p} not seen before")
            lookup = np.empty(len(distinct[p]) + 1, dtype=object)
            lookup[1:] = distinct[p]
            out[p] = lookup[v].tolist()
            continue
        flag = got[f"f{i}"]
        if (flag == 2).any():
            raise _Layout(f"a value of {p} is not of its field's type")
        vals = v.astype(object)
        vals[flag == 0] = None
        out[p] = vals.tolist()
    return out


def _decode_codes(rows: list, r: int) -> tuple[np.ndarray, list[tuple[int, int, object]]]:
    """(n, r) class codes (-1 missing or unknown) from rows of database codes, and the
    (row, reader, label) of every label outside the classes."""
    try:
        raw = np.array(rows, dtype=np.int64).reshape(len(rows), r)
        return np.where(raw >= _FIRST, raw - _FIRST, -1), []
    except (TypeError, ValueError):  # a label outside the classes came back verbatim
        pass
    codes = np.full((len(rows), r), -1, dtype=np.int64)
    unknown = []
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if isinstance(v, dict):
                unknown.append((i, j, v.get("u")))
            elif v >= _FIRST:
                codes[i, j] = v - _FIRST
    return codes, unknown


def coded_labels(view, path: str, classes: list) -> np.ndarray:
    """Class codes (-1 missing or not one of ``classes``) of the label at ``path``, coded
    in the database."""
    parts = [
        _decode_codes([[d["c"]] for d in docs], 1)[0][:, 0]
        for docs in stream(view, {"_id": 0, "c": label_code_expr(path, classes)})
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _seen_labels(view, label_paths: list[str]) -> list:
    """The distinct labels (not None) at ``label_paths``, counted in the database."""
    pipeline = [
        {"$project": {"_id": 0, "l": [f"${p}" for p in label_paths]}},
        {"$unwind": "$l"},
        {"$match": {"l": {"$ne": None}}},
        {"$group": {"_id": "$l"}},
    ]
    return [d["_id"] for d in view._aggregate(pipeline=pipeline)]


def _epochs(values: list) -> np.ndarray:
    """Seconds since the epoch of each read time as :func:`_epoch` computes them, from
    :func:`_date_expr`'s values: milliseconds for dates, ``{"v": value}`` otherwise."""
    import datetime as dt

    is_ms = np.array([not isinstance(v, dict) for v in values], dtype=bool)
    raw = [None if m else v.get("v") for m, v in zip(is_ms, values, strict=True)]
    if not any(v is not None for v in raw):
        ms = np.array([v if m else 0 for m, v in zip(is_ms, values, strict=True)], np.int64)
        # the same arithmetic as _epoch (int64 nanoseconds / 1e9), so the same floats
        return np.where(is_ms, (ms * 1_000_000) / 1e9, np.nan)
    # some read time is not a date (e.g. text): parse the column as values() gives it
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    as_values = [
        epoch + dt.timedelta(milliseconds=v) if m else r
        for m, v, r in zip(is_ms, values, raw, strict=True)
    ]
    return _epoch(as_values)


# ------------------------------------------------------------------ fixed-layout reads
#: bytes a patient key may have for the fixed-layout read (longer keys: the general read)
KEY_BYTES = 48
_MIN_LONG = -(2**63)
_NOT_DATE = _MIN_LONG + 1  # a read time stored as something other than a date
_BSON_TYPE = {"i4": 0x10, "i8": 0x12, "f8": 0x01, "oid": 0x07, "str": 0x02}


class _Layout(MultireaderError):
    """The documents did not come back in the fixed layout: use the general read (caught
    inside this module, never shown)."""


def _fixed_dtype(columns: list[tuple[str, str]]) -> np.dtype:
    """The numpy layout of one BSON document whose fields are ``columns`` in order:
    ``(name, kind)`` with kind "i4", "i8", "f8", "oid" or "str" (a string of KEY_BYTES
    bytes)."""
    parts = [("_len", "<i4")]
    for name, kind in columns:
        key = name.encode() + b"\0"
        parts += [(f"_t_{name}", "u1"), (f"_k_{name}", f"S{len(key)}")]
        if kind == "str":
            parts += [(f"_n_{name}", "<i4"), (name, f"S{KEY_BYTES}"), (f"_z_{name}", "u1")]
        else:
            # ids as raw bytes: an "S12" would drop an id's trailing zero bytes
            parts.append((name, {"i4": "<i4", "i8": "<i8", "f8": "<f8", "oid": "V12"}[kind]))
    parts.append(("_end", "u1"))
    return np.dtype(parts)


def _fixed_read(view, columns: list[tuple[str, str, object]]) -> dict[str, np.ndarray]:
    """Columns of ``view`` as numpy arrays, decoded from the raw BSON of one aggregation
    without building a Python object per document.

    ``columns`` are ``(name, kind, expression)``; the expressions are wrapped so that
    every document has exactly the same layout (int64, double, 12-byte id, or a string
    padded to KEY_BYTES), which numpy then reads in place. Raises :class:`_Layout` when
    a document does not have that layout (the caller falls back to the general read).
    """
    if view.media_type == "group" or not hasattr(view._dataset, "_sample_collection"):
        raise _Layout("grouped collection")
    project: dict = {"_id": 0}
    spec = []
    for name, kind, expr in columns:
        if kind == "oid":
            project["_id"] = 1
            spec.insert(0, ("_id", "oid"))
            continue
        if kind == "i4":  # an expression that is a 32-bit int already ($indexOfArray)
            project[name] = expr
        elif kind == "i8":
            project[name] = {"$toLong": expr}
        elif kind == "f8":
            project[name] = {"$toDouble": expr}
        else:  # a string padded with NULs to KEY_BYTES (numpy strips them again)
            project[name] = {"$substrBytes": [{"$concat": [expr, "\0" * KEY_BYTES]}, 0, KEY_BYTES]}
        spec.append((name, kind))
    dtype = _fixed_dtype(spec)
    pipeline = view._pipeline(pipeline=[{"$project": project}])
    parts = []
    for body in _raw_batches(view._dataset._sample_collection, pipeline):
        arr = _fixed_docs(body, dtype)
        ok = (arr["_len"] == dtype.itemsize).all() and (arr["_end"] == 0).all()
        for name, kind in spec:
            ok = ok and (arr[f"_t_{name}"] == _BSON_TYPE[kind]).all()
            ok = ok and (arr[f"_k_{name}"] == name.encode()).all()
            if kind == "str":
                ok = ok and (arr[f"_n_{name}"] == KEY_BYTES + 1).all()
        if not ok:
            raise _Layout("field types")
        parts.append(arr)
    whole = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
    return {name: np.array(whole[name]) for name, _ in spec}


def _elements(raw: bytes, start: int, end: int):
    """(type, key, value start, value end) of each element of the BSON document whose
    elements lie in ``raw[start:end]`` (only the types a cursor reply uses)."""
    i = start
    while i < end and raw[i] != 0:
        t = raw[i]
        k_end = raw.index(b"\0", i + 1)
        key = raw[i + 1 : k_end].decode()
        v = k_end + 1
        if t in (0x03, 0x04):  # document, array: int32 total length
            size = int.from_bytes(raw[v : v + 4], "little", signed=True)
        elif t == 0x02:  # string: int32 length + bytes
            size = 4 + int.from_bytes(raw[v : v + 4], "little", signed=True)
        elif t in (0x01, 0x12, 0x09, 0x11):
            size = 8
        elif t == 0x10:
            size = 4
        elif t == 0x08:
            size = 1
        elif t in (0x0A, 0x06):
            size = 0
        else:
            raise _Layout(f"unexpected BSON type {t:#x} in a cursor reply")
        yield t, key, v, v + size
        i = v + size


def _raw_batches(coll, pipeline: list, first_batch: int = 10_000):
    """The raw BSON of each batch of documents (the bytes of the batch array) an
    aggregation returns: the replies are never decoded into Python documents.

    The aggregate and getMore commands run in one session, as a cursor requires."""
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument
    from bson.son import SON

    raw_opts = CodecOptions(document_class=RawBSONDocument)
    db = coll.database
    with db.client.start_session(causal_consistency=False) as session:
        reply = db.command(
            SON(
                [
                    ("aggregate", coll.name),
                    ("pipeline", pipeline),
                    ("cursor", {"batchSize": first_batch}),
                    ("allowDiskUse", True),
                ]
            ),
            codec_options=raw_opts,
            session=session,
        )
        cursor_id = 0
        try:
            while True:
                raw = reply.raw
                batch, cursor_id, ns = None, 0, None
                for _t, key, v0, v1 in _elements(raw, 4, len(raw)):
                    if key != "cursor":
                        continue
                    for _t2, key2, w0, w1 in _elements(raw, v0 + 4, v1 - 1):
                        if key2 in ("firstBatch", "nextBatch"):
                            batch = raw[w0 + 4 : w1 - 1]  # the array's elements
                        elif key2 == "id":
                            cursor_id = int.from_bytes(raw[w0:w1], "little", signed=True)
                        elif key2 == "ns":
                            ns = raw[w0 + 4 : w1 - 1].decode()
                if batch is None:
                    raise _Layout("no batch in the cursor reply")
                if batch:
                    yield batch
                if not cursor_id:
                    return
                reply = db.command(
                    SON([("getMore", cursor_id), ("collection", ns.split(".", 1)[1])]),
                    codec_options=raw_opts,
                    session=session,
                )
        finally:
            if cursor_id:
                # best effort: an abandoned cursor also times out on its own
                with contextlib.suppress(Exception):
                    db.command(
                        SON([("killCursors", coll.name), ("cursors", [cursor_id])]),
                        session=session,
                    )


def _fixed_docs(body: bytes, dtype: np.dtype) -> np.ndarray:
    """The documents of a batch array's elements (``type, "i", document``), all of the
    fixed layout ``dtype``, as one structured array.

    Element i takes 1 (type) + len(str(i)) + 1 (NUL) + itemsize bytes, so the elements
    whose keys have the same number of digits lie at a constant stride: each such run
    is read as a 2-D block, without any per-document work."""
    size = dtype.itemsize
    buf = np.frombuffer(body, dtype=np.uint8)
    out, pos, first, digits = [], 0, 0, 1
    while pos < len(buf):
        stride = 2 + digits + size
        count = min(10**digits - first, (len(buf) - pos) // stride)
        if count <= 0:
            raise _Layout("document size")
        block = buf[pos : pos + count * stride].reshape(count, stride)
        if not (block[:, 0] == 0x03).all():
            raise _Layout("not documents")
        out.append(block[:, 2 + digits :])
        pos += count * stride
        first += count
        digits += 1
    if not out:
        return np.empty(0, dtype=dtype)
    docs = np.ascontiguousarray(np.concatenate(out))
    return docs.reshape(-1).view(dtype)


def sample_ids(view) -> list[str]:
    """``view.values("id")``, decoded in place from the raw replies."""
    try:
        ids = _fixed_read(view, [("_id", "oid", None)])["_id"]
    except _Layout:
        return view.values("id")
    hexed = ids.tobytes().hex()
    return [hexed[i : i + 24] for i in range(0, len(hexed), 24)]


def _fixed_code_expr(path: str, values: list) -> dict:
    """A 32-bit code of the value at ``path``: 0 missing or null, ``1 + i`` for
    ``values[i]``, -1 for any other value (one ``$indexOfArray``: the cheapest coding)."""
    return {"$indexOfArray": [{"$literal": [None, *values]}, {"$ifNull": [f"${path}", None]}]}


#: the distinct session values last seen per (dataset, reader fields): the next read codes
#: sessions against them in the same pass, and counts them again only if one is new
_SESSIONS_SEEN: dict = {}


def _distinct_sessions(view, fields_: list[str]) -> list:
    pipeline = [
        {
            "$group": {
                "_id": None,
                **{f"s{j}": {"$addToSet": f"${f}.session"} for j, f in enumerate(fields_)},
            }
        }
    ]
    docs = list(view._aggregate(pipeline=pipeline))
    seen: list = []
    for j in range(len(fields_)):
        for v in docs[0][f"s{j}"] if docs else []:
            if v is not None and v not in seen:
                seen.append(v)
    return seen


def _fixed_categorical(view, reader_set, classes, scores, sessions, coded, ids, has_patient):
    """The arrays of :func:`categorical_reads`, read with :func:`_fixed_read`; raises
    :class:`_Layout` where the data needs the general read (a read time that is not a
    date, a patient key that is not short text). Sessions come back as codes into their
    distinct values (``session_values``)."""
    fields_ = list(reader_set.fields)
    key = (str(view._dataset._doc.id), tuple(fields_))
    session_values = list(_SESSIONS_SEEN.get(key) or []) if sessions else []
    if sessions and not session_values:
        session_values = _distinct_sessions(view, fields_)
    try:
        return _fixed_categorical_once(
            view, reader_set, classes, scores, sessions, coded, ids, session_values, has_patient
        )
    except _NewSession:  # a session the remembered ones lack: count them again
        session_values = _distinct_sessions(view, fields_)
        return _fixed_categorical_once(
            view, reader_set, classes, scores, sessions, coded, ids, session_values, has_patient
        )
    finally:
        if sessions:
            _SESSIONS_SEEN[key] = session_values


class _NewSession(_Layout):
    """A session value the remembered ones lack."""


def _fixed_categorical_once(
    view, reader_set, classes, scores, sessions, coded, ids, session_values, has_patient
):
    fields_ = list(reader_set.fields)
    r = len(fields_)
    cols: list = []
    if ids:
        cols.append(("_id", "oid", None))
    for j, f in enumerate(fields_):
        cols.append((f"c{j}", "i4", _fixed_code_expr(f"{f}.label", classes)))
    for i, p in enumerate(coded):
        cols.append((f"k{i}", "i4", _fixed_code_expr(p, classes)))
    if scores:
        for j, f in enumerate(fields_):
            ref = f"${f}.score"
            number = {"$in": [{"$type": ref}, ["int", "long", "double", "bool"]]}
            cols.append((f"s{j}", "f8", {"$cond": [number, ref, float("nan")]}))
    if sessions:
        for j, f in enumerate(fields_):
            cols.append((f"n{j}", "i4", _fixed_code_expr(f"{f}.session", session_values)))
    if sessions is True:
        for j, f in enumerate(fields_):
            ref = f"${f}.read_at"
            when = {
                "$cond": [
                    {"$eq": [{"$type": ref}, "date"]},
                    {"$toLong": ref},
                    {"$cond": [{"$lte": [ref, None]}, _MIN_LONG, _NOT_DATE]},
                ]
            }
            cols.append((f"t{j}", "i8", when))
    if has_patient:
        ref = f"${F.PATIENT_KEY}"
        short = {
            "$and": [
                {"$eq": [{"$type": ref}, "string"]},
                {"$lt": [{"$strLenBytes": {"$ifNull": [ref, ""]}}, KEY_BYTES]},
            ]
        }
        flag = {"$cond": [short, 1, {"$cond": [{"$lte": [ref, None]}, 0, 2]}]}
        cols.append(("pf", "i4", flag))
        cols.append(("p", "str", {"$cond": [short, ref, ""]}))
    out = _fixed_read(view, cols)
    raw = np.stack([out[f"c{j}"] for j in range(r)], axis=1).astype(np.int64)
    n = raw.shape[0]
    codes = np.where(raw >= 1, raw - 1, -1)
    unknown_rows = np.flatnonzero((raw == -1).any(axis=1))
    score_arr = (
        np.stack([out[f"s{j}"] for j in range(r)], axis=1) if scores else np.full((n, r), np.nan)
    )
    session_codes = np.full((n, r), -1, dtype=np.int64)
    if sessions:
        for j in range(r):
            sc = out[f"n{j}"].astype(np.int64)
            if (sc == -1).any():
                raise _NewSession()
            session_codes[:, j] = sc - 1  # -1: no session
    times = np.full((n, r), np.nan)
    if sessions is True:
        for j in range(r):
            t = out[f"t{j}"]
            if (t == _NOT_DATE).any():
                raise _Layout("a read time that is not a date")
            # the same arithmetic as _epoch (int64 nanoseconds / 1e9), so the same floats
            ns = np.where(t == _MIN_LONG, 0, t) * 1_000_000
            times[:, j] = np.where(t == _MIN_LONG, np.nan, ns / 1e9)
    groups = None
    if has_patient:
        pf = out["pf"]
        if (pf == 2).any():
            raise _Layout("a patient key that is not short text")
        if (pf == 1).any():
            keys = out["p"]
            if (pf == 0).any():  # items without a key are their own groups, in place
                groups = _group_codes(
                    [k.decode() if f else None for k, f in zip(keys, pf, strict=True)]
                )
            else:
                _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
                rank = np.empty(len(first), dtype=np.int64)
                rank[np.argsort(first, kind="stable")] = np.arange(len(first))
                groups = rank[inv.ravel()]
    hexed = out["_id"].tobytes().hex() if ids else ""
    item_ids = [hexed[i : i + 24] for i in range(0, len(hexed), 24)]
    extra_codes = {}
    for i, p in enumerate(coded):
        k = out[f"k{i}"].astype(np.int64)
        extra_codes[p] = np.where(k >= 1, k - 1, -1)
    return item_ids, codes, score_arr, session_codes, times, groups, unknown_rows, extra_codes


def _order_session_codes(
    codes: np.ndarray, values: list, times: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """:func:`_order_sessions` of the reads whose session is ``values[codes]`` (-1: none),
    computed on the few distinct values instead of on one name per read."""
    if not len(values):
        return _order_sessions(np.full(len(codes), None, dtype=object), times)
    # as _order_sessions reads them: a NaN session is no session, others by their text
    text = ["" if isinstance(v, float) and v != v else str(v) for v in values]
    names = sorted({t for t in text if t != ""})
    if not names:
        return _order_sessions(np.full(len(codes), None, dtype=object), times)
    # value index -> name index (-1: no name); values with the same text are one session
    to_name = np.array([names.index(t) if t != "" else -1 for t in text] + [-1], np.int64)
    name_of = to_name[np.where(codes >= 0, codes, len(values))]
    has_name = name_of >= 0
    t = times[has_name]
    first = np.full(len(names), np.inf)
    np.fmin.at(first, name_of[has_name], np.where(np.isnan(t), np.inf, t))
    present = np.zeros(len(names), dtype=bool)
    present[name_of[has_name]] = True
    kept = [c for c in range(len(names)) if present[c]]
    order = sorted(kept, key=lambda c: (first[c], _natural_key(names[c])))
    rank = np.full(len(names), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    out = np.full(len(codes), -1, dtype=np.int64)
    out[has_name] = rank[name_of[has_name]]
    return out, [names[c] for c in order]


def _unknown_labels(view, reader_set, classes, rows: np.ndarray, item_ids) -> list[dict]:
    """The labels outside ``classes`` of the items at ``rows``, read again with their ids."""
    fields_ = list(reader_set.fields)
    project = {
        "_id": 1,
        "c": [_fixed_code_expr(f"{f}.label", classes) for f in fields_],
        "l": [f"${f}.label" for f in fields_],
    }
    docs = list(view._aggregate(pipeline=[{"$project": project}, {"$match": {"c": -1}}]))
    if len(docs) != len(rows):
        raise _Layout("the view changed while it was read")
    found = []
    for row, d in zip(rows, docs, strict=True):
        for j, c in enumerate(d["c"]):
            if c == -1:
                found.append((j, int(row), str(d["_id"]), d["l"][j]))
    return [
        {"sample_id": sid, "field": fields_[j], "reader": reader_set.readers[j], "label": label}
        for j, _, sid, label in sorted(found, key=lambda t: (t[0], t[1]))
    ]


def categorical_reads(
    view,
    reader_set: ReaderSet,
    classes: list[str] | None = None,
    *,
    scores: bool = True,
    sessions: bool | str = True,
    extra: list[str] | None = None,
    coded: list[str] | None = None,
    ids: bool = True,
    groups: bool = True,
) -> CategoricalReads:
    """The class calls of the chosen readers on every sample of ``view``.

    ``classes`` defaults to the dataset's declared label schema, else to the sorted set
    of labels seen. Series-level reads are collapsed to one item per series.
    ``scores=False`` / ``sessions=False`` skip reading the readers' scores / sessions
    and read times (NaN / -1 then), which a panel that only needs the calls does not
    pay for; ``sessions="names"`` reads the session names but not the read times, and
    orders sessions by name (S2 before S10) instead of by their first read; ``extra``
    paths are read in the same pass and returned in ``.extra``; ``coded`` label paths
    (e.g. a consensus field's ``.label``) come back as class codes (-1 missing or not a
    class) in ``.extra_codes``. ``ids=False`` leaves ``item_ids`` empty (a panel that
    only counts does not pay for decoding the sample ids); ``groups=False`` does not read
    the patient keys (``.groups`` is None).

    One aggregation reads everything: the database codes each label against the
    classes and returns small integers (a label outside the classes verbatim), so
    nothing of FiftyOne's per-document decoding runs and the view is decoded chunk by
    chunk, never as one list of documents.
    """
    if reader_set.kind not in CATEGORICAL_KINDS:
        raise ReaderSelectionError(f"{reader_set.kind} labels are not class calls")
    dataset = view._dataset
    label_schema = S.get_label_schema(dataset)
    ordered = bool(label_schema and label_schema.get("ordered"))
    fields_ = list(reader_set.fields)
    label_paths = [f"{f}.label" for f in fields_]
    if classes is None:
        if label_schema and label_schema.get("classes"):
            classes = list(label_schema["classes"])
        else:
            classes = sorted(_seen_labels(view, label_paths))
    # the view's schema, not the dataset's: a view may have selected fields away
    has_patient = groups and view.has_field(F.PATIENT_KEY)
    series = reader_set.level == "series" and view.has_field(F.SERIES_UID)
    if not series and not extra:
        try:
            item_ids, codes, score_arr, scodes, times, groups, unknown_rows, extra_codes = (
                _fixed_categorical(
                    view, reader_set, classes, scores, sessions, list(coded or []), ids, has_patient
                )
            )
            session_values = _SESSIONS_SEEN.get(
                (str(view._dataset._doc.id), tuple(reader_set.fields)), []
            )
            unknown = (
                _unknown_labels(view, reader_set, classes, unknown_rows, item_ids)
                if len(unknown_rows)
                else []
            )
        except _Layout:
            pass
        else:
            n, r = codes.shape
            read = codes >= 0
            session_arr = np.full((n, r), -1, dtype=np.int64)
            session_names: list[str] = []
            if sessions:
                session_arr[read], session_names = _order_session_codes(
                    scodes[read], session_values, times[read]
                )
            return CategoricalReads(
                item_ids=item_ids,
                readers=list(reader_set.readers),
                fields=list(reader_set.fields),
                classes=list(classes),
                ordered=ordered,
                codes=codes,
                scores=score_arr,
                sessions=session_arr,
                session_names=session_names,
                groups=groups,
                unknown=unknown,
                members=None,
                extra={},
                extra_codes=extra_codes,
            )
    need_ids = ids or series
    extra = list(extra or [])
    coded = list(coded or [])
    plain_extra = [p for p in extra if _plain_path(view, p)]
    project: dict = {"_id": 1 if need_ids else 0}
    project["c"] = [label_code_expr(p, classes) for p in label_paths]
    if scores:
        project["s"] = [_number_expr(f"{f}.score") for f in fields_]
    if sessions:
        project["n"] = [f"${f}.session" for f in fields_]
    if sessions is True:
        project["t"] = [_date_expr(f"{f}.read_at") for f in fields_]
    if has_patient:
        project["p"] = f"${F.PATIENT_KEY}"
    if series:
        project["u"] = f"${F.SERIES_UID}"
    for i, p in enumerate(plain_extra):
        project[f"x{i}"] = f"${p}"
    for i, p in enumerate(coded):
        project[f"k{i}"] = label_code_expr(p, classes)

    r = len(fields_)
    code_parts, score_parts = [], []
    cols: dict[str, list] = {"id": [], "n": [], "t": [], "p": [], "u": []}
    cols.update({f"x{i}": [] for i in range(len(plain_extra))})
    coded_parts: dict[str, list] = {p: [] for p in coded}
    raw_unknown: list[tuple[int, int, object]] = []
    offset = 0
    for docs in stream(view, project):
        codes_c, unk = _decode_codes([d["c"] for d in docs], r)
        code_parts.append(codes_c)
        raw_unknown += [(offset + i, j, v) for i, j, v in unk]
        if scores:
            score_parts.append(np.array([d["s"] for d in docs], dtype=float).reshape(-1, r))
        if need_ids:
            cols["id"] += [str(d["_id"]) for d in docs]
        for key in ("n", "t"):
            if key in project:
                cols[key] += [d[key] for d in docs]
        for key in ("p", "u", *(f"x{i}" for i in range(len(plain_extra)))):
            if key in project:
                cols[key] += [d.get(key) for d in docs]
        for i, p in enumerate(coded):
            coded_parts[p].append(_decode_codes([[d[f"k{i}"]] for d in docs], 1)[0][:, 0])
        offset += len(docs)
    n_all = offset
    all_codes = np.concatenate(code_parts) if code_parts else np.empty((0, r), dtype=np.int64)
    all_scores = np.concatenate(score_parts) if score_parts else np.full((n_all, r), np.nan)
    other_extra = [p for p in extra if p not in plain_extra]
    extra_cols = {p: cols[f"x{i}"] for i, p in enumerate(plain_extra)}
    if other_extra:
        extra_cols.update(zip(other_extra, view.values(other_extra), strict=True))

    members = None
    keep = np.arange(n_all)
    if series:
        first: dict = {}
        grouped: dict = {}
        for i, s in enumerate(cols["u"]):
            key = s if s is not None else ("__sample__", i)
            first.setdefault(key, i)
            grouped.setdefault(key, []).append(cols["id"][i])
        keep = np.array(list(first.values()), dtype=np.int64)
        members = list(grouped.values())
    whole = len(keep) == n_all

    n = len(keep)
    codes = all_codes if whole else all_codes[keep]
    score_arr = all_scores if whole else all_scores[keep]
    item_ids = _take(cols["id"], keep, whole) if ids else []
    unknown = []
    if raw_unknown:
        row_of = None if whole else {int(k): i for i, k in enumerate(keep)}
        # a label outside the classes is named with its sample (rare: one more read)
        ids_all = cols["id"] if need_ids else view.values("id")
        # listed reader by reader, item by item, as the readers' columns are
        for i, j, label in sorted(raw_unknown, key=lambda t: (t[1], t[0])):
            if row_of is not None and i not in row_of:
                continue
            unknown.append(
                {
                    "sample_id": ids_all[i],
                    "field": fields_[j],
                    "reader": reader_set.readers[j],
                    "label": label,
                }
            )
    names = np.empty((n, r), dtype=object)
    times = np.full((n, r), np.nan)
    if sessions:
        sess = cols["n"]
        for j in range(r):
            names[:, j] = _take([row[j] for row in sess], keep, whole)
    if sessions is True:
        tcol = cols["t"]
        for j in range(r):
            times[:, j] = _epochs(_take([row[j] for row in tcol], keep, whole))
    # one session order for all readers (readers usually share names like S1..S6)
    read = codes >= 0
    session_arr = np.full((n, r), -1, dtype=np.int64)
    session_names: list[str] = []
    if sessions:
        session_arr[read], session_names = _order_sessions(names[read], times[read])

    groups = _group_codes(_take(cols["p"], keep, whole)) if has_patient else None
    return CategoricalReads(
        item_ids=item_ids,
        readers=list(reader_set.readers),
        fields=fields_,
        classes=list(classes),
        ordered=ordered,
        codes=codes,
        scores=score_arr,
        sessions=session_arr,
        session_names=session_names,
        groups=groups,
        unknown=unknown,
        members=members,
        extra={p: _take(extra_cols[p], keep, whole) for p in extra},
        extra_codes={
            p: (np.concatenate(v) if v else np.empty(0, dtype=np.int64))[keep]
            for p, v in coded_parts.items()
        },
    )


def load_mask(path: str | None) -> np.ndarray | None:
    """A reader's mask file as booleans (None when that reader drew none on this sample).

    Any pixel above 0 is in the mask. Raises ``FileNotFoundError`` for a path that
    does not exist, so a missing file is never read as an empty mask.
    """
    from PIL import Image

    if path is None:
        return None
    if not os.path.exists(path):
        raise FileNotFoundError(f"mask file {path} does not exist")
    with Image.open(path) as im:
        return np.asarray(im) > 0


@dataclass
class MaskReads:
    """Where each reader's mask of each sample is, plus the pixel spacing."""

    item_ids: list[str]
    readers: list[str]
    fields: list[str]
    paths: list[list[str | None]]  # [reader][sample]
    spacing: list[tuple[float, float]]  # (row_mm, col_mm) per sample; (1, 1) when unknown
    spacing_known: np.ndarray  # bool per sample
    groups: np.ndarray | None


def mask_reads(view, reader_set: ReaderSet) -> MaskReads:
    """Mask paths of the chosen readers on ``view`` (masks are loaded one sample at a time)."""
    if reader_set.kind != "mask":
        raise ReaderSelectionError(f"{reader_set.kind} labels are not masks")
    dataset = view._dataset
    paths = ["id"] + [f"{f}.mask_path" for f in reader_set.fields]
    if dataset.has_field(F.PIXEL_SPACING):
        paths.append(F.PIXEL_SPACING)
    if dataset.has_field(F.PATIENT_KEY):
        paths.append(F.PATIENT_KEY)
    cols = dict(zip(paths, view.values(paths), strict=True))
    spacing, known = [], []
    for s in cols.get(F.PIXEL_SPACING) or [None] * len(cols["id"]):
        ok = isinstance(s, (list, tuple)) and len(s) == 2 and all(v for v in s)
        spacing.append((float(s[0]), float(s[1])) if ok else (1.0, 1.0))
        known.append(ok)
    return MaskReads(
        item_ids=cols["id"],
        readers=list(reader_set.readers),
        fields=list(reader_set.fields),
        paths=[cols[f"{f}.mask_path"] for f in reader_set.fields],
        spacing=spacing,
        spacing_known=np.array(known, dtype=bool),
        groups=_group_codes(cols[F.PATIENT_KEY]) if F.PATIENT_KEY in cols else None,
    )


@dataclass
class BoxReads:
    """Each reader's boxes per sample: ``boxes[reader][sample]`` is (n, 4) or None."""

    item_ids: list[str]
    readers: list[str]
    fields: list[str]
    boxes: list[list[np.ndarray | None]]
    labels: list[list[list[str] | None]]
    scores: list[list[np.ndarray | None]]
    groups: np.ndarray | None


def box_reads(view, reader_set: ReaderSet) -> BoxReads:
    """Boxes (relative ``[x, y, w, h]``), labels and confidences of the chosen readers."""
    if reader_set.kind != "boxes":
        raise ReaderSelectionError(f"{reader_set.kind} labels are not boxes")
    dataset = view._dataset
    paths = ["id"]
    for f in reader_set.fields:
        paths += [
            f"{f}.detections.bounding_box",
            f"{f}.detections.label",
            f"{f}.detections.confidence",
        ]
    if dataset.has_field(F.PATIENT_KEY):
        paths.append(F.PATIENT_KEY)
    cols = dict(zip(paths, view.values(paths), strict=True))
    boxes, labels, scores = [], [], []
    for f in reader_set.fields:
        bb, lb, cf = (
            cols[f"{f}.detections.bounding_box"],
            cols[f"{f}.detections.label"],
            cols[f"{f}.detections.confidence"],
        )
        boxes.append([None if b is None else np.asarray(b, dtype=float).reshape(-1, 4) for b in bb])
        labels.append([None if x is None else list(x) for x in lb])
        scores.append(
            [
                None if c is None else np.array([1.0 if v is None else float(v) for v in c])
                for c in cf
            ]
        )
    return BoxReads(
        item_ids=cols["id"],
        readers=list(reader_set.readers),
        fields=list(reader_set.fields),
        boxes=boxes,
        labels=labels,
        scores=scores,
        groups=_group_codes(cols[F.PATIENT_KEY]) if F.PATIENT_KEY in cols else None,
    )
