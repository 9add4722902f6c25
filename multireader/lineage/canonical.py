"""The canonical form of a stored label and its content hash (label hash scheme 2).

A frozen training set records one hash per label. The hash has to mean the label's
*content*: the same for the document in FiftyOne's database, for the same label read
back as a FiftyOne object, and for the label in a FiftyOne JSON export
(``samples.json``), today and after a FiftyOne upgrade. So it is computed from the
stored document by the rules below, which ``docs/DESIGN.md`` ("Label hashes") states
for anyone who recomputes a hash without this code.

Canonical form of a label document (a JSON object; BSON types as in MongoDB's
extended JSON, which is what a FiftyOne export writes):

1. Object members named ``id`` or starting with ``_`` are removed, except ``_cls`` (the
   label's type). These are database identities and internals (``_id``), not content.
2. A member ``mask_path`` or ``map_path`` (a path string) is replaced by
   ``mask_path_sha256`` / ``map_path_sha256``: the lowercase hex SHA-256 of the file's
   bytes, or ``"missing"`` when there is no such file. A mask edited in place is a
   relabel; a mask copied elsewhere by an export is not.
3. Members whose canonical value is ``null``, ``[]`` or ``{}`` are removed (FiftyOne
   versions differ in which empty defaults they store: ``tags``, ``attributes``).
   Inside arrays nothing is removed.
4. Numbers: an integer, or a double with an integral value below 2**53 in magnitude, is
   written as a decimal integer (``1.0`` is ``1``; ``-0.0`` is ``0``). Any other finite
   double is written in the shortest form that reads back to the same double, as
   Python's ``repr(float)`` does (``0.1``, ``1e-07``, ``1.5e+300``). NaN and infinities
   are ``NaN``, ``Infinity``, ``-Infinity``. ``true``, ``false`` stay.
5. A date is ``{"$date": "YYYY-MM-DDTHH:MM:SS.mmmZ"}`` in UTC, truncated to the
   millisecond (BSON's precision). An ObjectId value other than a removed ``_id`` is
   ``{"$oid": "<24 hex digits>"}``. Binary data is ``{"$binary": "<standard base64>"}``.
6. In an object whose ``_cls`` is ``Detections``, ``Polylines`` or ``Keypoints``, the
   elements of ``detections``, ``polylines`` or ``keypoints`` are sorted by their own
   canonical bytes (their order in the list is not content).
7. The result is serialised as JSON with object keys sorted by Unicode code point, no
   whitespace, strings escaped as JSON requires (``"``, ``\\``, control characters as
   ``\\n``, ``\\t``... or ``\\u00XX``) and every other character written as itself,
   encoded as UTF-8.

The label hash is the lowercase hex SHA-256 of those bytes. No label (a missing field
or ``null``) has no hash (``None``).

Pure: no FiftyOne import. BSON types are recognised by duck typing (``binary`` of an
ObjectId), so this also runs on documents decoded from an export.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os

from multireader.errors import MultireaderError

#: the label hash scheme this module implements (recorded in every freeze header)
SCHEME = 2

_PATH_KEYS = ("mask_path", "map_path")
_SORTED = {"Detections": "detections", "Polylines": "polylines", "Keypoints": "keypoints"}
_MAX_EXACT = 2.0**53
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
).encode


def _no_default(o):
    raise TypeError(f"{type(o).__name__} is not canonical")


# the standard library's C encoder with the same settings, called directly: the
# JSONEncoder wrapper costs as much as the encoding of a small label
if getattr(json.encoder, "c_make_encoder", None) is not None:
    _c_encoder = json.encoder.c_make_encoder(
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )

    def _encode(obj, _c=_c_encoder, _join="".join) -> str:  # noqa: F811
        return _join(_c(obj, 0))


class CanonicalError(MultireaderError):
    """A value that has no canonical form (the message names its path)."""


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes, or ``"missing"`` when there is no such file."""
    if not isinstance(path, str) or not os.path.isfile(path):
        return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _date(v: dt.datetime) -> dict:
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return {"$date": v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"}


def _other(v, path: str):
    """Canonical value of anything but str, int, float, bool, None, dict and list."""
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):  # bson.Int64 and other int subclasses
        return int(v)
    if isinstance(v, float):
        return _number(float(v))
    if isinstance(v, dt.datetime):
        return _date(v)
    if isinstance(v, dt.date):
        return _date(dt.datetime(v.year, v.month, v.day))
    if hasattr(v, "binary") and hasattr(v, "generation_time"):  # bson ObjectId
        return {"$oid": str(v)}
    if isinstance(v, (bytes, bytearray, memoryview)):  # bson Binary is a bytes subclass
        return {"$binary": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, dict):  # SON, RawBSONDocument-decoded mappings
        return _object(dict(v), path)
    if isinstance(v, (list, tuple)):
        return [_value(x, f"{path}[{i}]") for i, x in enumerate(v)]
    raise CanonicalError(f"{path}: a {type(v).__name__} value has no canonical form")


def _number(v: float):
    if v.is_integer() and -_MAX_EXACT < v < _MAX_EXACT:
        return int(v)
    return v  # repr(float); NaN / Infinity through allow_nan


def _value(v, path: str):
    t = type(v)
    if t is str or v is None or t is bool or t is int:
        return v
    if t is float:
        if v.is_integer() and -_MAX_EXACT < v < _MAX_EXACT:
            return int(v)
        return v
    if t is dict:
        return _object(v, path)
    if t is list:
        return [_value(x, f"{path}[{i}]") for i, x in enumerate(v)]
    return _other(v, path)


_dates: dict = {}  # read times repeat across thousands of labels: format each once


def _object(d: dict, path: str) -> dict:
    # the hot loop of a freeze: the common types are tested inline, most frequent first
    out = {}
    for k, v in d.items():
        if k[:1] == "_" and k != "_cls" or k == "id":
            continue
        t = type(v)
        if t is str:
            if k in _PATH_KEYS:
                out[k + "_sha256"] = file_sha256(v)
            else:
                out[k] = v
        elif t is int or t is bool:
            out[k] = v
        elif v is None:
            continue
        elif t is float:
            out[k] = int(v) if v.is_integer() and -_MAX_EXACT < v < _MAX_EXACT else v
        elif t is dt.datetime and v.tzinfo is None:
            c = _dates.get(v)
            if c is None:
                if len(_dates) > 100_000:
                    _dates.clear()
                c = _dates[v] = _date(v)["$date"]
            out[k] = {"$date": c}
        elif t is list and not v:
            continue
        else:
            if k in _PATH_KEYS and isinstance(v, str):  # a str subclass
                out[k + "_sha256"] = file_sha256(v)
                continue
            c = _value(v, f"{path}.{k}")
            if c is None or (type(c) in (list, dict) and not c):
                continue
            out[k] = c
    key = _SORTED.get(out.get("_cls"))
    if key is not None and type(out.get(key)) is list:
        out[key] = sorted(out[key], key=_encode)
    return out


def canonical(label: dict | None, path: str = "label") -> dict | None:
    """The canonical form (rules 1-6) of a stored label document, as a plain dict."""
    if label is None:
        return None
    if not isinstance(label, dict):
        raise CanonicalError(f"{path}: a label document is an object, not {type(label).__name__}")
    return _object(label if type(label) is dict else dict(label), path)


def canonical_bytes(label: dict | None, path: str = "label") -> bytes | None:
    """The canonical serialisation (rule 7) of a stored label document."""
    c = canonical(label, path)
    return None if c is None else _encode(c).encode("utf-8")


def content_hash(label: dict | None, path: str = "label") -> str | None:
    """Scheme-2 hash of a stored label document: hex SHA-256 of its canonical bytes."""
    if label is None:
        return None
    return hashlib.sha256(_encode(_object(label, path)).encode("utf-8")).hexdigest()


def column_hashes(labels: list, field: str, ids: list | None = None) -> list[str | None]:
    """Scheme-2 hashes of one field's stored label documents, in order (a bulk read's
    column). Errors name the field and, when ``ids`` is given, the sample."""
    sha, enc, obj = hashlib.sha256, _encode, _object
    out: list[str | None] = [None] * len(labels)
    for k, d in enumerate(labels):
        if d is None:
            continue
        if type(d) is not dict:
            if not isinstance(d, dict):
                where = f"sample {ids[k]}" if ids is not None else f"row {k}"
                raise CanonicalError(f"{field} of {where}: not a label document")
            d = dict(d)
        try:
            out[k] = sha(enc(obj(d, field)).encode("utf-8")).hexdigest()
        except CanonicalError as e:
            where = f"sample {ids[k]}" if ids is not None else f"row {k}"
            raise CanonicalError(f"{where}: {e}") from None
    return out


def raw_column_hashes(raws: list, field: str, ids: list | None = None,
                      memo: dict | None = None) -> list[str | None]:  # fmt: skip
    """Scheme-2 hashes of one field's labels given as raw BSON bytes (``None``: no label).

    Equal bytes are equal documents, so each distinct label document is decoded and
    canonicalised once (``memo``, bytes -> hash, may be shared across calls): reader
    labels repeat heavily (a class, a session, a reader), and a label read twice costs
    a dictionary lookup.
    """
    import bson

    memo = {} if memo is None else memo
    get, decode, sha, enc, obj = memo.get, bson.decode, hashlib.sha256, _encode, _object
    out: list[str | None] = [None] * len(raws)
    for k, raw in enumerate(raws):
        if raw is None:
            continue
        is_bytes = type(raw) is bytes
        h = get(raw) if is_bytes else None
        if h is None:
            try:
                d = decode(raw) if is_bytes else raw
                if not isinstance(d, dict):
                    raise CanonicalError(f"{field}: not a label document")
                h = sha(enc(obj(dict(d), field)).encode("utf-8")).hexdigest()
            except CanonicalError as e:
                where = f"sample {ids[k]}" if ids is not None else f"row {k}"
                raise CanonicalError(f"{where}: {e}") from None
            if is_bytes:
                if len(memo) > 1_000_000:
                    memo.clear()
                memo[raw] = h
        out[k] = h
    return out


__all__ = [
    "SCHEME",
    "CanonicalError",
    "canonical",
    "canonical_bytes",
    "column_hashes",
    "content_hash",
    "file_sha256",
    "raw_column_hashes",
]
