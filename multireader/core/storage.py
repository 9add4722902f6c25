"""Where the plugin writes a dataset's files: one storage folder per dataset.

The importer writes renders and native arrays to ``render_dir`` (default
``<fo.config.default_dataset_dir>/multireader/<dataset name>``) and records that folder
in ``dataset.info["multireader"]["storage_dir"]``. Everything written later for the
dataset goes inside it, so a study imported to ``render_dir=/data/study1`` keeps its
masks and results there too::

    <storage_dir>/<2 hex>/<hash>.png, .npy   renders and native arrays (importer)
    <storage_dir>/masks/<reader>/            reader masks (import_reader_labels)
    <storage_dir>/consensus/<field>/         consensus masks (compute_consensus)
    <storage_dir>/lesions/<run key>/         lesion volumes (compute_lesion_agreement)

Datasets imported before the folder was recorded get it from their renders.
"""

from __future__ import annotations

import os
import re

from multireader.core import fields as F

_KEY = "storage_dir"
_HASH_DIR = re.compile(r"^[0-9a-f]{2}$")
#: subfolders of the storage folder this plugin writes into
PLUGIN_SUBDIRS = ("masks", "consensus", "lesions")


def default_dir(dataset) -> str:
    """``<fo.config.default_dataset_dir>/multireader/<dataset name>``."""
    import fiftyone as fo

    return os.path.join(fo.config.default_dataset_dir, "multireader", dataset.name)


def record(dataset, path: str) -> str:
    """Record ``path`` as the dataset's storage folder (the first import's wins: files
    already written there stay where they are). Returns the recorded folder."""
    path = os.path.abspath(path)
    info = dict(dataset.info or {})
    meta = dict(info.get(F.INFO_KEY) or {})
    if meta.get(_KEY):
        return meta[_KEY]
    meta[_KEY] = path
    info[F.INFO_KEY] = meta
    dataset.info = info
    dataset.save()
    return path


def storage_dir(dataset) -> str:
    """The dataset's storage folder: recorded, else where its renders are, else the default."""
    dataset = getattr(dataset, "_dataset", dataset)
    recorded = ((dataset.info or {}).get(F.INFO_KEY) or {}).get(_KEY)
    if recorded:
        return recorded
    inferred = _from_renders(dataset)
    return inferred or default_dir(dataset)


def _from_renders(dataset) -> str | None:
    if F.DICOM_KEY not in dataset.get_field_schema():
        return None
    from fiftyone import ViewField as VF

    paths = dataset.match(VF(F.DICOM_KEY).exists()).limit(1000).values("filepath")
    folders = []
    for p in paths:
        if not p:
            continue
        folder = os.path.dirname(os.path.abspath(p))
        # the importer shards renders into <2 hex>/ folders named by the hash's start
        if _HASH_DIR.match(os.path.basename(folder)) and os.path.basename(p).startswith(
            os.path.basename(folder)
        ):
            folder = os.path.dirname(folder)
        folders.append(folder)
    if not folders:
        return None
    try:
        return os.path.commonpath(folders)
    except ValueError:  # different drives
        return folders[0]
