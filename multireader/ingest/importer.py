"""DICOM files into FiftyOne samples: one sample per frame, series as ordered volumes.

Decoding runs in worker processes (they import pydicom and numpy, never FiftyOne);
the parent writes samples in bulk. See docs/DESIGN.md for the fields written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from multireader.core import fields as F
from multireader.core import storage
from multireader.core.parallel import (
    BrokenProcessPool,
    discard_shared_pool,
    mp_context,
    shared_pool,
)
from multireader.io import deid, dicom, source_paths
from multireader.progress import ProgressFn, report

_REPORT_KEY = "dicom_import"


@dataclass
class ImportReport:
    """What an import did; also stored in ``dataset.info["dicom_import"]``."""

    dataset: str
    imported: int = 0
    duplicates: int = 0
    files: int = 0
    series: int = 0
    skipped: list[dict] = field(default_factory=list)
    #: DICOMDIRs read as indexes: ``{"path", "files"}`` (their files are imported)
    indexes: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def expand_inputs(inputs) -> tuple[list[str], list[dict], list[dict]]:
    """Files from paths, folders (recursive), globs and DICOMDIRs.

    Returns (files, skipped, indexes): missing inputs are reported in ``skipped``; a
    DICOMDIR is read as an index of the files it lists (``indexes``).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files, skipped, indexes, seen = [], [], [], set()

    def add(path):
        path = os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            files.append(path)

    for item in inputs:
        item = os.path.expanduser(str(item))
        if os.path.isdir(item):
            for root, dirs, names in os.walk(item):
                dirs.sort()
                for name in sorted(names):
                    if not name.startswith("."):
                        add(os.path.join(root, name))
        elif os.path.isfile(item):
            if os.path.basename(item).upper() == "DICOMDIR":
                try:
                    listed = _dicomdir_files(item)
                    for path in listed:
                        add(path)
                    indexes.append({"path": os.path.abspath(item), "files": len(listed)})
                except Exception as err:  # noqa: BLE001
                    skipped.append({"path": item, "reason": f"unreadable DICOMDIR: {err}"})
            else:
                add(item)
        elif any(ch in item for ch in "*?["):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                skipped.append({"path": item, "reason": "the pattern matches no file"})
            for path in matches:
                add(path)
        else:
            skipped.append({"path": item, "reason": "no such file or folder"})
    return files, skipped, indexes


def _dicomdir_files(path: str) -> list[str]:
    from pydicom.fileset import FileSet

    fs = FileSet(path)
    return [instance.path for instance in fs]


def default_render_dir(dataset) -> str:
    import fiftyone as fo

    return os.path.join(fo.config.default_dataset_dir, "multireader", dataset.name)


def import_dicom(
    dataset,
    inputs,
    *,
    render_dir: str | None = None,
    window: str = "auto",
    presets=(),
    include_identifiers: bool = False,
    include_study_date: bool = False,
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import DICOM files, folders, globs or a DICOMDIR into ``dataset``.

    Every frame becomes a sample keyed by ``dicom_key`` (SOPInstanceUID:frame), so a
    re-import adds no duplicates. Bad files are skipped with a reason and the rest
    import. Returns the :class:`ImportReport`, also stored in
    ``dataset.info["dicom_import"]``.
    """
    t0 = time.perf_counter()
    dicom.check_window(window)
    presets = [dicom.check_window(p) for p in presets if p != "auto"]
    files, skipped, indexes = expand_inputs(inputs)
    rep = ImportReport(dataset=dataset.name, files=len(files), skipped=skipped, indexes=indexes)
    report(progress, 0.0, f"found {len(files)} files")

    existing_sops = (
        set(dataset.distinct(F.SOP_UID)) if F.SOP_UID in dataset.get_field_schema() else set()
    )
    render_dir = os.path.abspath(render_dir or default_render_dir(dataset))
    os.makedirs(render_dir, exist_ok=True)
    storage.record(dataset, render_dir)  # masks and results follow the renders
    options = {
        "render_dir": render_dir,
        "window": window,
        "presets": presets,
        "include_identifiers": include_identifiers,
        "include_study_date": include_study_date,
        "salt": deid.load_salt(),
        "existing_sops": existing_sops,
        "source_roots": source_paths.import_roots(inputs),
    }

    results: dict[str, dict] = {}
    prepared = False
    for i, result in enumerate(_run(files, options, num_workers)):
        results[result["path"]] = result
        if not prepared and result.get("frames"):
            # schema, media type and indexes are set up while the workers decode on
            prepared = _prepare_dataset(dataset, result["frames"][0], presets)
        if i % 16 == 0 or i == len(files) - 1:
            report(
                progress, 0.85 * (i + 1) / max(len(files), 1), f"decoded {i + 1}/{len(files)} files"
            )

    # results arrive in completion order; walking them in input order makes the choice
    # between two files holding the same instance (a copy, or another transfer syntax)
    # deterministic: the first one given wins and counts the other as a duplicate
    unique, seen, staged_drop = [], set(), []
    for path in files:
        result = results.get(path, {"skip": "the worker returned nothing"})
        if "skip" in result:
            rep.skipped.append({"path": path, "reason": result["skip"]})
            continue
        if "duplicate" in result:
            rep.duplicates += result["duplicate"]
            continue
        for rec in result["frames"]:
            if rec["dicom_key"] in seen:
                rep.duplicates += 1
                staged_drop.extend(rec["staged"])
                continue
            seen.add(rec["dicom_key"])
            unique.append(rec)
    _commit_media(unique, staged_drop)
    stored = source_paths.remember_import(str(dataset._doc.id), results, options)

    report(progress, 0.88, f"writing {len(unique)} samples")
    # series new to the dataset are ordered in memory and written with the samples;
    # only those that already had slices are ordered in the database
    unordered = _write_samples(dataset, unique, presets)
    rep.imported = len(unique)
    series = sorted({r["series_instance_uid"] for r in unique})
    rep.series = len(series)
    if series:
        report(progress, 0.95, f"ordering {len(series)} series into volumes")
        if unordered:
            order_slices(dataset, unordered)
        else:
            _save_volume_view(dataset)
    rep.seconds = round(time.perf_counter() - t0, 3)
    # the stored copy names skipped files without their folder or file names
    redacted = {
        name: source_paths.redact_entries(getattr(rep, name), options, stored, str(dataset._doc.id))
        for name in ("skipped", "indexes")
    }
    _store_report(dataset, replace(rep, **redacted))
    report(progress, 1.0, f"imported {rep.imported} samples, skipped {len(rep.skipped)} files")
    return rep


def _run(files: list[str], options: dict, num_workers: int | None):
    """Yield per-file results, decoding in worker processes when it pays."""
    n = max(1, int(num_workers or os.cpu_count() or 1))
    if n == 1 or len(files) < 4:
        for path in files:
            yield dicom.import_file(path, options)
        return
    # one pool for the life of the process (core/parallel.py): starting and joining
    # two workers cost 90-230 ms per import here
    pool = shared_pool(n)
    # chunks amortise the per-task pickling of options (the set of known SOPs)
    chunks = [files[i : i + 8] for i in range(0, len(files), 8)]
    futures = [pool.submit(_import_chunk, chunk, options) for chunk in chunks]
    try:
        for future in as_completed(futures):
            yield from future.result()
    except BrokenProcessPool:
        discard_shared_pool(wait=False)  # a worker died (killed, out of memory): start afresh
        raise
    finally:
        for future in futures:  # an abandoned import leaves no work queued in the pool
            future.cancel()


def _commit_media(records: list[dict], dropped: list[str]) -> None:
    """Move the kept records' staged files to their final names; delete the rest."""
    for rec in records:
        for stage, final in rec.pop("staged").items():
            os.replace(stage, final)
    for stage in dropped:
        with contextlib.suppress(FileNotFoundError):
            os.remove(stage)


def _unique_key_index(dataset) -> None:
    """A unique index on ``dicom_key``: the database itself refuses a second copy.

    Partial (only string keys), so samples that are not DICOM frames (no key) can share
    a dataset with them; a plain unique index would reject the second missing key.
    """
    info = dataset.get_index_information().get(F.DICOM_KEY)
    if info and info.get("unique"):
        return
    dataset.create_index(
        F.DICOM_KEY,
        unique=True,
        force=True,
        partialFilterExpression={F.DICOM_KEY: {"$type": "string"}},
    )


def _import_chunk(paths: list[str], options: dict) -> list[dict]:
    return [dicom.import_file(p, options) for p in paths]


#: record keys that are not sample fields (they become filepath, media fields, metadata;
#: ``staged`` lists a worker's temporary files)
_NOT_FIELDS = {"renders", "channels", "filepath", "staged"}


def _sample_values(rec: dict) -> dict:
    """The sample fields of one record, None left out (None and missing are one)."""
    values = {k: v for k, v in rec.items() if k not in _NOT_FIELDS and v is not None}
    for preset, path in rec["renders"].items():
        values[F.preset_media_field(preset)] = path
    return values


def _to_sample(rec: dict):
    import fiftyone as fo

    sample = fo.Sample(filepath=rec["filepath"])
    for key, value in _sample_values(rec).items():
        sample[key] = value
    sample["metadata"] = fo.ImageMetadata(
        width=rec["columns"],
        height=rec["rows"],
        num_channels=rec["channels"],
        mime_type="image/png",
    )
    return sample


def _write_samples(dataset, records: list[dict], presets) -> list[str]:
    """Insert the records as samples; returns the series still to be ordered.

    FiftyOne's ``add_samples`` builds a ``Sample`` (a mongoengine document) per record
    and converts it back to a dict: about 1 ms a sample here, as much as decoding the
    slice. Instead one record goes through FiftyOne (``Dataset._make_dict``, which
    gives the document exactly as ``add_samples`` would store it), and every record
    becomes a plain dict of that shape, all inserted with one ``insert_many``. Before
    inserting, the first record's plain dict is checked against FiftyOne's document;
    on any difference (another FiftyOne version, a field type this code does not
    convert) the import takes the ``add_samples`` path instead, so the stored documents
    are the same either way (tests/test_importer.py compares the two paths).

    Series that are new to the dataset get ``slice_index``/``slice_position`` here,
    from the records (:func:`slice_order`), with ids made before the insert so the
    order is the one :func:`order_slices` computes. Returns the series that already had
    slices in the dataset (they are ordered in the database), or every series when the
    import fell back to ``add_samples``.
    """
    if not records:
        return []
    series = sorted({r[F.SERIES_UID] for r in records})
    values: dict = {}  # each name's first value, in the order add_samples declares them
    for rec in records:
        for name, value in _sample_values(rec).items():
            values.setdefault(name, value)
    values[F.SLICE_INDEX], values[F.SLICE_POSITION] = 0, 0.0  # declared with their types
    if dataset.media_type not in (None, "image") or not _declare_values(
        dataset, values.items(), reload=dataset.media_type is not None
    ):
        _write_samples_with_fiftyone(dataset, records, presets)
        return series
    if dataset.media_type is None:
        dataset.media_type = "image"  # reloads the dataset, new fields included
    docs = _plain_documents(dataset, records)
    if docs is None:
        _write_samples_with_fiftyone(dataset, records, presets)
        return series
    before = (
        set(dataset.distinct(F.SERIES_UID)) if F.SERIES_UID in dataset.get_field_schema() else set()
    )
    fresh = [i for i, r in enumerate(records) if r[F.SERIES_UID] not in before]
    index, position = slice_order(
        [str(docs[i]["_id"]) for i in fresh],
        [records[i][F.SERIES_UID] for i in fresh],
        [records[i].get(F.IMAGE_POSITION) for i in fresh],
        [records[i].get(F.IMAGE_ORIENTATION) for i in fresh],
        [records[i].get(F.INSTANCE_NUMBER) for i in fresh],
        [records[i].get(F.FRAME_INDEX) for i in fresh],
    )
    for i in fresh:
        sid = str(docs[i]["_id"])
        docs[i][F.SLICE_INDEX] = index[sid]
        if position[sid] is not None:
            docs[i][F.SLICE_POSITION] = position[sid]
    # indexes first: the unique key index refuses a duplicate inside the insert itself
    _create_indexes(dataset)
    from pymongo.errors import BulkWriteError

    try:
        dataset._sample_collection.insert_many(docs, ordered=True)
    except BulkWriteError as err:
        raise ValueError(err.details["writeErrors"][0]["errmsg"]) from err
    _register_media_fields(dataset, presets)
    return sorted(before.intersection(series))


def _plain_documents(dataset, records: list[dict]) -> list[dict] | None:
    """Sample documents for the records, as plain dicts; None if they would differ
    from FiftyOne's own (then the caller uses ``add_samples``).

    Call it once every field is declared: dates are converted by their declared
    field, as FiftyOne converts them; values of any type other than str, int, float,
    bool, list, dict and date send the import down the ``add_samples`` path.
    """
    from bson import ObjectId

    make_dict = getattr(dataset, "_make_dict", None)
    if make_dict is None or dataset.media_type != "image":
        return None
    schema = dataset.get_field_schema()
    media_check = _media_source_check()
    first = _to_sample(records[0])
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        if media_check is not None:
            list(media_check(dataset, [first]))  # FiftyOne's own filepath-vs-reference check
        reference = make_dict(first, created_at=now, last_modified_at=now)
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - private API: use add_samples
        return None
    own = set(_sample_values(records[0])) | {"filepath", "metadata"}
    # what FiftyOne puts in every new document besides the record (tags, media type,
    # dataset id, ...): copied into each; _rand is drawn per sample as FiftyOne does
    common = {k: v for k, v in reference.items() if k not in own and k not in ("_id", "_rand")}
    metadata_cls = (reference.get("metadata") or {}).get("_cls", "ImageMetadata")
    rand = _rand_function() if "_rand" in reference else None
    docs = []
    for rec in records:
        doc = {"_id": ObjectId(), "filepath": rec["filepath"], **common}
        doc["metadata"] = {
            "_cls": metadata_cls,
            "width": rec["columns"],
            "height": rec["rows"],
            "num_channels": rec["channels"],
            "mime_type": "image/png",
        }
        for name, value in _sample_values(rec).items():
            if not isinstance(value, _PLAIN):
                if not isinstance(value, dt.date) or name not in schema:
                    return None
                value = schema[name].to_mongo(value)  # DateField: a UTC midnight datetime
            doc[name] = value
        if rand is not None:
            doc["_rand"] = rand()
        docs.append(doc)
    mine = {k: v for k, v in docs[0].items() if k not in ("_id", "_rand")}
    theirs = {k: v for k, v in reference.items() if k not in ("_id", "_rand")}
    return docs if mine == theirs else None


#: record values stored as they are (bool is an int)
_PLAIN = (str, int, float, list, dict)


def _media_source_check():
    try:
        from fiftyone.core.dataset import _validate_media_source_iterable
    except ImportError:  # older FiftyOne: no media references to mix up
        return None
    return _validate_media_source_iterable


def _rand_function():
    """What draws the ``_rand`` of a new sample document (``take``/``shuffle`` use it)."""
    try:
        from fiftyone.core.odm.sample import _generate_rand
    except ImportError:  # pragma: no cover - the formula FiftyOne 1.x uses
        return lambda: random.random() * 0.001 + 0.999
    return _generate_rand


def _write_samples_with_fiftyone(dataset, records: list[dict], presets) -> None:
    """The ``add_samples`` path: a ``Sample`` per record (the reference for the fast path)."""
    samples = [_to_sample(rec) for rec in records]
    if _declare_fields(dataset, samples):
        # every field is declared with its type: skip the per-sample schema checks,
        # which cost more than the insert itself
        dataset.add_samples(samples, expand_schema=False, validate=False, progress=False)
    else:
        dataset.add_samples(samples, progress=False)
    _unique_key_index(dataset)
    dataset.create_index(F.SERIES_UID)
    _register_media_fields(dataset, presets)


def _declare_fields(dataset, samples) -> bool:
    """Declare every new field in one schema update before the bulk insert.

    ``add_samples`` adds new fields one at a time, each a round trip and a reload:
    about 1.4 s for the ~35 fields of a fresh DICOM dataset, more than decoding a
    hundred slices. One merge does the same work once.
    """
    return _declare_values(
        dataset, ((name, value) for sample in samples for name, value in sample.iter_fields())
    )


def _prepare_dataset(dataset, record: dict, presets) -> bool:
    """Fields, media type and indexes from the first decoded record, before the rest.

    Called while the workers still decode: these are database round trips (each a
    dataset reload, about 0.1-0.2 s together on a fresh dataset here) that would
    otherwise wait until every file is done. Fields that only later records have are
    declared by :func:`_write_samples`. Returns True (done) or False (try again on the
    next record); never raises, as the write path does all of this again anyway.
    """
    if dataset.media_type not in (None, "image"):
        return True  # the add_samples path will say what is wrong
    values = dict(_sample_values(record))
    values[F.SLICE_INDEX], values[F.SLICE_POSITION] = 0, 0.0
    try:
        fresh = dataset.media_type is None
        if not _declare_values(dataset, values.items(), reload=not fresh):
            return True
        if fresh:
            dataset.media_type = "image"  # reloads the dataset, new fields included
        _create_indexes(dataset)
    except Exception:  # noqa: BLE001 - the write path repeats these steps and reports
        return True
    return True


def _create_indexes(dataset) -> None:
    """The unique ``dicom_key`` index and the series index, in one round trip."""
    info = dataset.get_index_information()
    key, series = info.get(F.DICOM_KEY), info.get(F.SERIES_UID)
    if key and not key.get("unique"):
        _unique_key_index(dataset)  # replaces the plain index (FiftyOne's force=True)
        key = True
    missing = []
    from pymongo import IndexModel

    if not key:
        missing.append(
            IndexModel(
                [(F.DICOM_KEY, 1)],
                name=f"{F.DICOM_KEY}_1",
                unique=True,
                partialFilterExpression={F.DICOM_KEY: {"$type": "string"}},
            )
        )
    if not series:
        missing.append(IndexModel([(F.SERIES_UID, 1)], name=f"{F.SERIES_UID}_1"))
    if not missing:
        return
    collection = getattr(dataset, "_sample_collection", None)
    if collection is None:  # pragma: no cover - FiftyOne without the internal
        _unique_key_index(dataset)
        dataset.create_index(F.SERIES_UID)
        return
    collection.create_indexes(missing)


def _declare_values(dataset, named_values, reload: bool = True) -> bool:
    """Declare a field for each new name, typed by its first non-None value.

    ``reload=False`` when the caller reloads the dataset next anyway (setting the
    media type of a new dataset does).
    """
    from fiftyone.core.odm.utils import create_implied_field

    schema = dataset.get_field_schema(include_private=True)
    new = {}
    for name, value in named_values:
        if value is None or name in schema or name in new or name.startswith("_") or name == "id":
            continue
        new[name] = create_implied_field(name, value)
    if not new:
        return True
    try:
        dataset._sample_doc_cls.merge_field_schema(new, validate=False)
        if reload:
            dataset._reload()
    except Exception:  # noqa: BLE001 - private API; add_samples declares them anyway
        return False
    return True


def _register_media_fields(dataset, presets) -> None:
    media = list(dataset.app_config.media_fields or ["filepath"])
    changed = False
    for preset in presets:
        name = F.preset_media_field(preset)
        if name not in media:
            media.append(name)
            changed = True
    if changed:
        dataset.app_config.media_fields = media
        dataset.save()


def order_slices(dataset, series_uids) -> None:
    """Write ``slice_index`` and ``slice_position`` for every slice of these series.

    Slices sort by position along the slice normal, as a volume is built; instance
    number and frame number break ties or stand in when geometry is missing. File names
    never decide the order.
    """
    from fiftyone import ViewField as VF

    view = dataset.match(VF(F.SERIES_UID).is_in(list(series_uids)))
    names = [
        "id",
        F.SERIES_UID,
        F.IMAGE_POSITION,
        F.IMAGE_ORIENTATION,
        F.INSTANCE_NUMBER,
        F.FRAME_INDEX,
    ]
    schema = dataset.get_field_schema()
    present = [n for n in names if n == "id" or n in schema]
    got = dict(zip(present, view.values(present), strict=True))
    n = len(got["id"])
    slice_index, slice_position = slice_order(*(got.get(name, [None] * n) for name in names))
    dataset.set_values(F.SLICE_INDEX, slice_index, key_field="id")
    if F.SLICE_POSITION not in schema:
        import fiftyone as fo

        # declared up front: a series without geometry has only None positions
        dataset.add_sample_field(F.SLICE_POSITION, fo.FloatField)
    dataset.set_values(F.SLICE_POSITION, slice_position, key_field="id")
    _save_volume_view(dataset)


def _save_volume_view(dataset) -> None:
    dataset.save_view(
        F.VOLUME_VIEW, dataset.group_by(F.SERIES_UID, order_by=F.SLICE_INDEX), overwrite=True
    )


def slice_order(ids, series, pos, orient, inst, frame) -> tuple[dict, dict]:
    """``({id: slice_index}, {id: slice_position})`` of slices given as parallel lists.

    Pure: the order :func:`order_slices` writes, computed from values in memory (the
    importer uses it before inserting). Ids break the last ties, so pass them in
    insertion order.
    """
    by_series: dict[str, list[int]] = {}
    for i, s in enumerate(series):
        by_series.setdefault(s, []).append(i)
    slice_index, slice_position = {}, {}
    for members in by_series.values():
        normal = None
        for i in members:
            if orient[i] is not None and len(orient[i]) == 6:
                normal = np.cross(np.asarray(orient[i][:3]), np.asarray(orient[i][3:]))
                break
        keys = []
        for i in members:
            p = None
            if normal is not None and pos[i] is not None and len(pos[i]) == 3:
                p = float(np.dot(np.asarray(pos[i]), normal))
            slice_position[ids[i]] = p
            keys.append(
                (
                    0 if p is not None else 1,
                    p if p is not None else 0.0,
                    inst[i] if inst[i] is not None else 0,
                    frame[i] or 0,
                    ids[i],
                )
            )
        for rank, k in enumerate(sorted(keys)):
            slice_index[k[-1]] = rank
    return slice_index, slice_position


def _store_report(dataset, rep: ImportReport) -> None:
    info = dict(dataset.info or {})
    history = list(info.get(_REPORT_KEY, {}).get("history", []))
    history.append(
        {
            "imported": rep.imported,
            "duplicates": rep.duplicates,
            "skipped": len(rep.skipped),
            "at": time.time(),
        }
    )
    info[_REPORT_KEY] = {**rep.to_dict(), "history": history[-20:]}
    dataset.info = info
    dataset.save()


def render_presets(
    sample_collection,
    presets,
    *,
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Re-render samples from their native arrays with named windows.

    Each preset becomes the media field ``filepath_<preset>``, registered in the App's
    media settings. Returns ``{"rendered": n, "fields": [...]}``.
    """
    presets = [dicom.check_window(p) for p in presets if p != "auto"]
    dataset = sample_collection._dataset
    ids, natives, photometric = sample_collection.values(["id", F.NATIVE_PATH, "photometric"])
    jobs = []
    for sid, native, phot in zip(ids, natives, photometric, strict=True):
        if not native:
            continue
        for preset in presets:
            out = f"{os.path.splitext(native)[0]}_{preset}.png"
            jobs.append((sid, preset, native, out, preset, (phot or "").upper() == "MONOCHROME1"))
    values: dict[str, dict] = {p: {} for p in presets}
    n = max(1, int(num_workers or os.cpu_count() or 1))
    if n == 1 or len(jobs) < 32:
        for i, (sid, preset, native, out, _, inv) in enumerate(jobs):
            values[preset][sid] = dicom.render_native(native, out, preset, inv)
            if i % 64 == 0:
                report(progress, i / max(len(jobs), 1), f"rendered {i}/{len(jobs)}")
    else:
        # one task per chunk: a task per image would spend more on pickling and
        # scheduling than the 5 ms the render takes
        size = max(8, min(64, len(jobs) // (4 * n) or 8))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        done = 0
        with ProcessPoolExecutor(max_workers=n, mp_context=mp_context()) as pool:
            futures = {
                pool.submit(dicom.render_native_batch, [j[2:] for j in chunk]): chunk
                for chunk in chunks
            }
            for future in as_completed(futures):
                for (sid, preset, *_), path in zip(futures[future], future.result(), strict=True):
                    values[preset][sid] = path
                done += len(futures[future])
                report(progress, done / len(jobs), f"rendered {done}/{len(jobs)}")
    for preset, vals in values.items():
        if vals:
            dataset.set_values(F.preset_media_field(preset), vals, key_field="id")
    _register_media_fields(dataset, presets)
    report(progress, 1.0, f"rendered {len(jobs)} images")
    return {"rendered": len(jobs), "fields": [F.preset_media_field(p) for p in presets]}
