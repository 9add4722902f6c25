"""Source paths without identifiers: what ``dicom_path`` stores by default.

A PACS export often names folders and files after the patient (``DOE^JANE_MRN4711/``,
``DOE_JANE_4711.dcm``). The importer keeps header identifiers out of the dataset
(:mod:`multireader.io.deid`); this module does the same for paths.

By default a source file is stored as ``src-<token>/<relative path>``:

- the import root (the folder given, a file's folder, a glob's fixed prefix, a
  DICOMDIR's folder) becomes one opaque token, so nothing above it is stored;
- each folder or file name below it is kept as written unless it matches one of the
  file's own header identifiers (patient name components, patient and other IDs,
  accession number, birth date) or looks like an identifier (a ``^`` name separator, a
  long digit run, a date, ``MRN``/``DOB``/...); then it becomes ``id-<token>`` (a known
  DICOM extension is kept, so ``id-<token>.dcm``).

Tokens are HMAC-SHA256 of the name under the same secret salt as the patient key, so a
token is stable (one folder gives one token in every file) and cannot be tested
against guessed names without the salt. To re-open a file, the token -> name lookup is
kept *outside the dataset*: a small SQLite file beside the salt
(``~/.multireader/source_paths.sqlite``, or ``$MULTIREADER_SOURCE_INDEX``; point it at
shared storage when workers on other machines must re-open sources). It records, per
dataset, only the tokens that dataset uses, so deleting a study forgets them too.

Pure: the standard library and pydicom values only, no FiftyOne.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import re
import sqlite3

ROOT_PREFIX = "src-"
TOKEN_PREFIX = "id-"
INDEX_ENV = "MULTIREADER_SOURCE_INDEX"
DEFAULT_INDEX = os.path.join(os.path.expanduser("~"), ".multireader", "source_paths.sqlite")

#: extensions kept after a token (they say what the file is, never who)
KEPT_EXTENSIONS = (".dcm", ".dicom", ".dic", ".ima", ".img", ".dc3", ".gz", ".zip")

#: PatientName, OtherPatientNames, PatientBirthName, PatientMotherBirthName (by tag: a
#: tag lookup costs a fraction of pydicom's keyword attribute access)
_NAME_TAGS = (0x00100010, 0x00101001, 0x00101005, 0x00101060)
#: PatientID, OtherPatientIDs, AccessionNumber
_ID_TAGS = (0x00100020, 0x00101000, 0x00080050)
_OTHER_IDS_SEQUENCE = 0x00101002
_BIRTH_DATE = 0x00100030
#: words that mark a name part as an identifier even without a header match
_MARKER_WORDS = {"MRN", "DOB", "PATIENT", "PATIENTID", "ACCESSION", "PID", "SSN", "NHS", "BSN"}
_TOKEN_RE = re.compile(rf"^({TOKEN_PREFIX}[0-9a-f]{{16}})(\.[A-Za-z0-9.]+)?$")
_ROOT_RE = re.compile(rf"^{ROOT_PREFIX}[0-9a-f]{{16}}$")
_DATE_RE = re.compile(
    r"(?<!\d)((19|20)\d\d[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])"
    r"|(0[1-9]|[12]\d|3[01])[-_.](0[1-9]|1[0-2])[-_.](19|20)\d\d)(?!\d)"
)
_UID_RE = re.compile(r"^\d+(\.\d+)+$")


# --- what the header says identifies the patient ------------------------------------


def _upper_tokens(text: str) -> list[str]:
    """Runs of letters and runs of digits: ``DOE^JANE_MRN4711`` -> DOE JANE MRN 4711."""
    return re.findall(r"[A-Z]+|[0-9]+", str(text).upper())


def _squash(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", str(text).upper())


def identifier_terms(ds) -> dict[str, list[str]]:
    """The identifying values of a header, normalised for matching against names.

    ``{"names": [...], "ids": [...], "dates": [...]}``: patient name components
    (family, given, middle; not prefixes such as ``MR``), patient, other and accession
    IDs, and the birth date (``YYYYMMDD``).
    """
    names, ids, dates = set(), set(), set()

    def values(tag, within=ds):
        elem = within.get(tag) if tag in within else None
        value = None if elem is None else elem.value
        if value is None or value == "":
            return []
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return [v for v in value if v is not None]
        return [value]

    for tag in _NAME_TAGS:
        for value in values(tag):
            components = str(value).split("^")[:3]
            for comp in components:
                for word in _upper_tokens(comp):
                    if len(word) >= 2:
                        names.add(word)
    id_values = [v for tag in _ID_TAGS for v in values(tag)]
    for item in values(_OTHER_IDS_SEQUENCE):
        id_values += values(_ID_TAGS[0], item)
    for value in id_values:
        if _squash(value):
            ids.add(_squash(value))
    birth = "".join(re.findall(r"\d", "".join(map(str, values(_BIRTH_DATE)))))
    if len(birth) == 8:
        dates.add(birth)
    return {"names": sorted(names), "ids": sorted(ids), "dates": sorted(dates)}


def _split_extension(name: str) -> tuple[str, str]:
    lower = name.lower()
    for ext in (".nii.gz", *KEPT_EXTENSIONS):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return name, ""


def _digits_stripped(word: str) -> str:
    return word.lstrip("0") or "0"


@functools.lru_cache(maxsize=8192)
def _identifying(name: str, key: tuple) -> bool:
    return is_identifying(name, {"names": key[0], "ids": key[1], "dates": key[2]})


def is_identifying(name: str, terms: dict | None = None) -> bool:
    """Whether a folder or file name matches ``terms`` or looks like an identifier."""
    stem, _ = _split_extension(name)
    if _UID_RE.match(stem):  # a DICOM UID: the dataset stores UIDs anyway
        return False
    words = _upper_tokens(stem)
    squashed = _squash(stem)
    digit_words = {_digits_stripped(w) for w in words if w.isdigit()}
    terms = terms or {}
    for term in terms.get("names", ()):
        if term in words or (len(term) >= 4 and term in squashed):
            return True
    for term in terms.get("ids", ()):
        if len(term) >= 3 and term in squashed:
            return True
        for run in re.findall(r"\d+", term):
            if len(_digits_stripped(run)) >= 3 and _digits_stripped(run) in digit_words:
                return True
    all_digits = "".join(w for w in words if w.isdigit())
    for date in terms.get("dates", ()):
        swapped = (date[6:8] + date[4:6] + date[:4], date[4:6] + date[6:8] + date[:4])
        if any(d in all_digits for d in (date, *swapped)):
            return True
    if "^" in stem or _MARKER_WORDS.intersection(words) or _DATE_RE.search(stem):
        return True
    return any(len(d) >= 6 for d in digit_words)


# --- stored form --------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def token(value: str, salt: bytes, prefix: str = TOKEN_PREFIX) -> str:
    """``prefix`` + 16 hex characters of HMAC-SHA256(salt, value)."""
    digest = hmac.new(salt, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:16]}"


def import_roots(inputs) -> frozenset[str]:
    """The folder each input item is relative to.

    A folder is its own root; a file (DICOMDIR included) its folder; a glob the
    folder before its first wildcard.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    roots = set()
    for item in inputs or ():
        item = os.path.expanduser(str(item))
        if os.path.isdir(item):
            roots.add(os.path.abspath(item))
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            fixed = re.split(r"[*?\[]", item, maxsplit=1)[0]
            folder = fixed if fixed.endswith(os.sep) else os.path.dirname(fixed)
            roots.add(os.path.abspath(folder or "."))
        else:
            roots.add(os.path.dirname(os.path.abspath(item)))
    return frozenset(roots)


def root_of(path: str, roots) -> str:
    """The deepest root holding ``path``, else the file's own folder.

    Walks up the path's folders (a few set lookups), so a 100 000-file import given
    as 1 000 folders costs no file x root comparison.
    """
    path = os.path.abspath(path)
    rootset = roots if isinstance(roots, (set, frozenset)) else set(roots or ())
    folder = os.path.dirname(path)
    while rootset:
        if folder in rootset:
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return os.path.dirname(path)


def redact(
    path: str, roots, salt: bytes, terms: dict | None = None, *, every_name: bool = False
) -> tuple[str, dict[str, str]]:
    """``(stored, {token: name})`` for a source file.

    ``every_name``: replace every name below the root (for files whose header could
    not be read, so nothing is known to match).
    """
    path = os.path.abspath(path)
    root = root_of(path, roots)
    rel = os.path.relpath(path, root).split(os.sep)
    root_token = token(root, salt, ROOT_PREFIX)
    out, mapping = [root_token], {root_token: root}
    key = tuple(tuple((terms or {}).get(k, ())) for k in ("names", "ids", "dates"))
    for name in rel:
        # cached: the folders of one patient repeat in every one of their files
        if every_name or _identifying(name, key):
            stem, ext = _split_extension(name)
            tok = token(stem, salt)
            mapping[tok] = stem
            out.append(tok + ext)
        else:
            out.append(name)
    return "/".join(out), mapping


def stored_path(path: str, ds, options: dict) -> str:
    """What an import stores in ``dicom_path`` for ``path`` (a worker-side call).

    ``options``: the import's (``include_identifiers``, ``salt``, ``source_roots``).
    With ``include_identifiers`` the absolute path, as before.
    """
    if options.get("include_identifiers"):
        return os.path.abspath(path)
    stored, _ = redact(
        path, options.get("source_roots") or (), options["salt"], identifier_terms(ds)
    )
    return stored


def mapping_for(path: str, stored: str, roots) -> dict[str, str]:
    """The ``{token: name}`` pairs behind ``stored`` (aligned with the real ``path``)."""
    if os.path.isabs(stored):
        return {}
    path = os.path.abspath(path)
    root = root_of(path, roots)
    real = [root, *os.path.relpath(path, root).split(os.sep)]
    parts = stored.split("/")
    out = {}
    if len(parts) != len(real):
        return out
    for part, name in zip(parts, real, strict=True):
        if _ROOT_RE.match(part):
            out[part] = name
            continue
        m = _TOKEN_RE.match(part)
        if m:
            out[m.group(1)] = _split_extension(name)[0] if m.group(2) else name
    return out


def is_stored_form(value: str | None) -> bool:
    """Whether ``value`` is a redacted source path (``src-<token>/...``)."""
    return bool(value) and bool(_ROOT_RE.match(str(value).split("/", 1)[0]))


# --- an import: record the tokens, redact what the report stores --------------------


def remember_import(dataset_id: str, results: dict, options: dict) -> dict[str, str]:
    """Record the tokens behind every imported file; returns ``{absolute path: stored}``.

    ``results``: the importer's per-file worker results (``{"path", "frames"}`` ...).
    Does nothing with ``include_identifiers`` (paths are stored as they are).
    """
    if options.get("include_identifiers"):
        return {}
    roots = options.get("source_roots") or ()
    stored, mapping = {}, {}
    for path, result in results.items():
        frames = result.get("frames") if isinstance(result, dict) else None
        if not frames:
            continue
        value = frames[0].get("dicom_path")
        if not value:
            continue
        stored[os.path.abspath(path)] = value
        mapping.update(mapping_for(path, value, roots))
    remember(dataset_id, mapping)
    return stored


def redact_entries(
    entries: list[dict], options: dict, stored: dict[str, str], dataset_id: str | None = None
) -> list[dict]:
    """Copies of report entries (``{"path", "reason", ...}``) with no source name in them.

    A path the import stored keeps its stored form; any other (a skipped file, whose
    header may be unreadable) has every name below its root replaced. Paths inside
    the reason text are replaced the same way. With ``include_identifiers``, unchanged.
    """
    if options.get("include_identifiers"):
        return [dict(e) for e in entries]
    roots = options.get("source_roots") or ()
    salt = options["salt"]
    out, mapping = [], {}
    for entry in entries:
        entry = dict(entry)
        path = entry.get("path")
        if path:
            full = os.path.abspath(os.path.expanduser(str(path)))
            value = stored.get(full)
            if value is None:
                value, more = redact(full, roots, salt, every_name=True)
                mapping.update(more)
            root = root_of(full, roots)
            for key, text in entry.items():
                if isinstance(text, str) and key != "path":
                    text = text.replace(full, value).replace(str(path), value)
                    entry[key] = text.replace(root, token(root, salt, ROOT_PREFIX))
            entry["path"] = value
        out.append(entry)
    if dataset_id is not None:
        remember(dataset_id, mapping)
    return out


def redact_inputs(inputs, salt: bytes) -> list[str]:
    """An import's inputs (folders, files, globs) as the audit log keeps them: each
    item's root as its token, the rest of the item name by name as in :func:`redact`."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = []
    for item in inputs or ():
        item = os.path.expanduser(str(item))
        root = next(iter(import_roots([item])))
        parts = [token(root, salt, ROOT_PREFIX)]
        full = os.path.abspath(item)
        if full != root:
            for name in os.path.relpath(full, root).split(os.sep):
                if any(ch in name for ch in "*?[") or not is_identifying(name):
                    parts.append(name)
                else:
                    stem, ext = _split_extension(name)
                    parts.append(token(stem, salt) + ext)
        out.append("/".join(parts))
    return out


# --- the lookup, outside the dataset ------------------------------------------------


def index_path() -> str:
    """Where the token lookup lives: ``$MULTIREADER_SOURCE_INDEX`` or the default."""
    return os.environ.get(INDEX_ENV) or DEFAULT_INDEX


@contextlib.contextmanager
def _connect(path: str | None = None, create: bool = True):
    path = path or index_path()
    if not create and not os.path.exists(path):
        yield None
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fresh = not os.path.exists(path)
    conn = sqlite3.connect(path, timeout=60)
    try:
        if fresh:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tokens (dataset_id TEXT NOT NULL, token TEXT NOT NULL,"
            " value TEXT NOT NULL, PRIMARY KEY (dataset_id, token))"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS tokens_by_token ON tokens (token)")
        yield conn
        conn.commit()
    finally:
        conn.close()


def remember(dataset_id: str, mapping: dict[str, str], path: str | None = None) -> int:
    """Record ``{token: name}`` for a dataset. Returns the number of pairs given."""
    if not mapping:
        return 0
    with _connect(path) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO tokens (dataset_id, token, value) VALUES (?, ?, ?)",
            [(str(dataset_id), t, v) for t, v in mapping.items()],
        )
    return len(mapping)


def forget(dataset_id: str, path: str | None = None) -> int:
    """Remove every token a dataset recorded. Returns the number of rows removed."""
    with _connect(path, create=False) as conn:
        if conn is None:
            return 0
        return conn.execute("DELETE FROM tokens WHERE dataset_id = ?", (str(dataset_id),)).rowcount


def recorded(dataset_id: str, path: str | None = None) -> dict[str, str]:
    """The ``{token: name}`` pairs a dataset recorded (for checks and exports)."""
    with _connect(path, create=False) as conn:
        if conn is None:
            return {}
        rows = conn.execute(
            "SELECT token, value FROM tokens WHERE dataset_id = ?", (str(dataset_id),)
        ).fetchall()
    return dict(rows)


def _lookup(tokens: set[str], path: str | None = None) -> dict[str, str]:
    if not tokens:
        return {}
    out = {}
    with _connect(path, create=False) as conn:
        if conn is None:
            return {}
        items = sorted(tokens)
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for tok, value in conn.execute(
                f"SELECT token, value FROM tokens WHERE token IN ({marks})", chunk
            ):
                out[tok] = value
    return out


def resolve_all(values, path: str | None = None) -> list[str | None]:
    """Absolute source paths for stored ``dicom_path`` values, in order.

    Absolute paths (``include_identifiers=True``, older datasets) come back as they
    are; a stored form whose tokens this machine's lookup does not know comes back as
    None (the file cannot be re-opened here). Each distinct value is resolved once
    (the frames of a multi-frame file share one), with one lookup query in all.
    """
    values = list(values)
    distinct = {v for v in values if v and is_stored_form(v)}
    wanted = set()
    for v in distinct:
        for part in v.split("/"):
            m = _TOKEN_RE.match(part)
            if m:
                wanted.add(m.group(1))
            elif _ROOT_RE.match(part):
                wanted.add(part)
    known = _lookup(wanted, path)
    resolved = {v: _resolve_one(v, known) for v in distinct}
    return [resolved.get(v, v or None) for v in values]


def _resolve_one(value: str, known: dict[str, str]) -> str | None:
    parts = value.split("/")
    root = known.get(parts[0])
    if root is None:
        return None
    names = [root]
    for part in parts[1:]:
        if part.startswith(TOKEN_PREFIX):
            m = _TOKEN_RE.match(part)
            if m:
                if m.group(1) not in known:
                    return None
                part = known[m.group(1)] + (m.group(2) or "")
        names.append(part)
    return os.path.join(*names)


def resolve(value: str | None, path: str | None = None) -> str | None:
    """:func:`resolve_all` for one value."""
    return resolve_all([value], path)[0]
