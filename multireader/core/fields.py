"""Field-naming rules and field roles: the one place that decides what a field is called.

Every other module asks this one for names, so a reader's labels always land in
``reader_<id>`` (or its ``_boxes`` / ``_mask`` / ``_series`` siblings) and later
operators can find every reader field from field metadata alone, without guessing
from names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: key under which this plugin stores its metadata in ``field.info`` and ``dataset.info``
INFO_KEY = "multireader"

# --- DICOM sample fields (one sample = one frame of one SOP instance) ---------------
DICOM_PATH = "dicom_path"  # absolute path of the source DICOM file
FRAME_INDEX = "frame_index"  # 0-based frame number inside the file
N_FRAMES = "n_frames"
DICOM_KEY = "dicom_key"  # "<SOPInstanceUID>:<frame_index>", unique, the re-import key
SOP_UID = "sop_instance_uid"
SERIES_UID = "series_instance_uid"
STUDY_UID = "study_instance_uid"
FRAME_OF_REFERENCE = "frame_of_reference_uid"  # the patient coordinate system of the geometry
NATIVE_PATH = "native_path"  # .npy of native values after the Modality LUT (HU for CT)
NATIVE_UNIT = "native_unit"  # "HU" for CT, else RescaleType or "" when unknown
SLICE_INDEX = "slice_index"  # 0-based position in the series volume, sorted by position
SLICE_POSITION = "slice_position"  # mm along the slice normal
IMAGE_POSITION = "image_position"  # ImagePositionPatient, 3 floats (mm)
IMAGE_ORIENTATION = "image_orientation"  # ImageOrientationPatient, 6 floats
PIXEL_SPACING = "pixel_spacing"  # [row spacing, column spacing] in mm
ROWS = "rows"
COLUMNS = "columns"
PATIENT_KEY = "patient_key"  # salted, stable pseudonym; never the PatientID itself
INSTANCE_NUMBER = "instance_number"

#: metadata fields for slicing (typed; binned where the raw value identifies people)
METADATA_FIELDS = (
    "modality",
    "manufacturer",
    "manufacturer_model",
    "body_part",
    "slice_thickness",
    "kvp",
    "contrast",
    "patient_sex",
    "patient_age_bin",
    "patient_weight_bin",
    "study_date",  # only when the user opts in
    "photometric",
    "transfer_syntax",
    "window_center",
    "window_width",
)

#: the saved view that groups slices into ordered volumes
VOLUME_VIEW = "volumes"

# --- reader fields ------------------------------------------------------------------
READER_PREFIX = "reader_"
#: label kind -> field-name suffix after ``reader_<id>``
READER_KIND_SUFFIX = {
    "classification": "",
    "boxes": "_boxes",
    "mask": "_mask",
    "series": "_series",
    "measurements": "_measurements",  # RECIST calipers, fo.Polylines (ingest.measurements)
}

# --- longitudinal fields (written by ingest.measurements.assign_timepoints) -----------
TIMEPOINT = "timepoint"  # int: 0 = baseline study of the patient, then follow-ups in order
DAYS_FROM_BASELINE = "days_from_baseline"  # int, only when study dates are kept
STUDY_DATE = "study_date"  # date, only when the user opts in (see METADATA_FIELDS)

# --- per-sample disagreement fields (written by compute_agreement) -------------------
DISAGREEMENT = "disagreement"  # one score in [0, 1], comparable across label kinds
READERS_DISAGREE = "readers_disagree"  # bool, for one-click filtering
N_READERS = "n_readers"
#: every per-sample field compute_agreement may write, in sidebar order
DISAGREEMENT_FIELDS = (
    DISAGREEMENT,
    READERS_DISAGREE,
    N_READERS,
    "majority_share",
    "vote_entropy",
    "ordinal_range",
    "ordinal_std",
    "score_range",
    "score_std",
    "disagreement_class",
    "mean_pairwise_dice",
    "generalized_dice",
    "staple_uncertainty",
    "disagreement_mask",
    "unmatched_boxes",
    "mean_pairwise_box_f1",
    "disagreement_boxes",
)

# --- label-error fields (written by compute_mistakenness / flag_for_reread) -----------
#: the queue's fields, first in the "label errors" sidebar group
LABEL_ERROR_FIELDS = (
    "label_error_score",
    "label_error_reader",
    "label_error_label",
    "reread_requests",
)

_SLUG_RE = re.compile(r"[^a-z0-9]+")


def reader_slug(reader_id: str) -> str:
    """Turn a reader id as written in a reads table into a field-safe slug.

    >>> reader_slug("Dr. A-12")
    'dr_a_12'
    """
    if reader_id is None or str(reader_id).strip() == "":
        raise ValueError("reader id is empty")
    slug = _SLUG_RE.sub("_", str(reader_id).strip().lower()).strip("_")
    if not slug:
        raise ValueError(f"reader id {reader_id!r} has no letters or digits")
    return slug


def reader_field(reader_id: str, kind: str = "classification") -> str:
    """Name of the field holding ``reader_id``'s labels of the given kind."""
    if kind not in READER_KIND_SUFFIX:
        raise ValueError(
            f"unknown label kind {kind!r}; expected one of {sorted(READER_KIND_SUFFIX)}"
        )
    return f"{READER_PREFIX}{reader_slug(reader_id)}{READER_KIND_SUFFIX[kind]}"


def preset_media_field(preset: str) -> str:
    """Media field holding the render of a named window preset, e.g. ``filepath_lung``."""
    return f"filepath_{preset}"


def consensus_field(method: str, kind: str = "classification") -> str:
    """Name of a consensus field, e.g. ``consensus_dawid_skene``; never a reader field."""
    return f"consensus_{reader_slug(method)}{READER_KIND_SUFFIX[kind]}"


def reader_field_info(reader_id: str, kind: str, level: str = "slice") -> dict:
    """The ``field.info`` entry that marks a field as a reader field."""
    return {
        INFO_KEY: {
            "role": "reader",
            "reader": str(reader_id),
            "kind": kind,
            "level": level,
        }
    }


def mark_reader_field(
    dataset, field_name: str, reader_id: str, kind: str, level: str = "slice"
) -> None:
    """Record on the field itself that it holds one reader's labels."""
    field = dataset.get_field(field_name)
    info = dict(field.info or {})
    info.update(reader_field_info(reader_id, kind, level))
    field.info = info
    field.save()


def reader_fields(dataset, kinds: Iterable[str] | None = None) -> dict[str, dict]:
    """All reader fields of a dataset, found from field metadata.

    Returns ``{field_name: {"reader": id, "kind": kind, "level": level}}``.
    """
    wanted = set(kinds) if kinds is not None else None
    out = {}
    for name, field in dataset.get_field_schema().items():
        meta = (field.info or {}).get(INFO_KEY) if getattr(field, "info", None) else None
        if not meta or meta.get("role") != "reader":
            continue
        if wanted is not None and meta.get("kind") not in wanted:
            continue
        out[name] = {k: meta.get(k) for k in ("reader", "kind", "level")}
    return out


#: sample fields shown together in the App's sidebar, in this order
_DICOM_SIDEBAR = (
    PATIENT_KEY,
    SERIES_UID,
    SLICE_INDEX,
    FRAME_INDEX,
    N_FRAMES,
    SLICE_POSITION,
    SOP_UID,
    STUDY_UID,
    FRAME_OF_REFERENCE,
    DICOM_KEY,
    DICOM_PATH,
    NATIVE_PATH,
    NATIVE_UNIT,
    IMAGE_POSITION,
    IMAGE_ORIENTATION,
    PIXEL_SPACING,
    ROWS,
    COLUMNS,
)


def update_sidebar_groups(dataset) -> None:
    """Group the App's sidebar: one "readers" group, then slicing metadata, then DICOM.

    FiftyOne's default puts every label field under "labels" and every primitive under
    "primitives"; a radiology lead looks first for the readers, then for what to slice by.
    """
    import fiftyone as fo

    schema = dataset.get_field_schema()
    readers = sorted(reader_fields(dataset))
    consensus = sorted(n for n in schema if n.startswith("consensus_"))
    slicing = [n for n in METADATA_FIELDS if n in schema]
    dicom = [n for n in _DICOM_SIDEBAR if n in schema]
    disagreement = [n for n in DISAGREEMENT_FIELDS if n in schema]
    disagreement += sorted(n for n in schema if n.startswith("cluster_"))
    quality = sorted(n for n in schema if n.startswith(("quality_", "uniqueness")))
    predictions = sorted(
        n
        for n, f in schema.items()
        if ((getattr(f, "info", None) or {}).get(INFO_KEY) or {}).get("role") == "prediction"
    )
    errors = [n for n in LABEL_ERROR_FIELDS if n in schema]
    errors += sorted(n for n in schema if n.startswith(("label_quality_", "mistakenness_")))
    taken = set(readers) | set(consensus) | set(slicing) | set(dicom) | set(disagreement)
    taken |= set(quality) | set(predictions) | set(errors)

    groups = []
    for group in fo.DatasetAppConfig.default_sidebar_groups(dataset):
        group.paths = [p for p in group.paths if p not in taken]
        groups.append(group)
    ours = [
        fo.SidebarGroupDocument(name="readers", paths=readers),
        fo.SidebarGroupDocument(name="consensus", paths=consensus),
        fo.SidebarGroupDocument(name="disagreement", paths=disagreement),
        fo.SidebarGroupDocument(name="label errors", paths=errors),
        fo.SidebarGroupDocument(name="predictions", paths=predictions),
        fo.SidebarGroupDocument(name="image quality", paths=quality, expanded=False),
        fo.SidebarGroupDocument(name="slicing", paths=slicing),
        fo.SidebarGroupDocument(name="dicom", paths=dicom, expanded=False),
    ]
    ours = [g for g in ours if g.paths]
    # tags first, then ours, then FiftyOne's remaining groups
    head = [g for g in groups if g.name == "tags"]
    tail = [
        g for g in groups if g.name != "tags" and (g.paths or g.name in ("labels", "primitives"))
    ]
    dataset.app_config.sidebar_groups = head + ours + tail
    dataset.save()


# --- per-sample image-quality fields (written by compute_quality_metrics) ---------------
QUALITY_PREFIX = "quality_"
#: the metrics multireader.analyses.quality computes, in sidebar order; field = QUALITY_PREFIX + name
QUALITY_METRIC_NAMES = (
    "brightness",
    "contrast",
    "contrast_window",
    "sharpness_laplacian",
    "sharpness_frequency",
    "entropy",
    "noise",
    "clip_low",
    "clip_high",
    "foreground_fraction",
)
QUALITY_FIELDS = tuple(QUALITY_PREFIX + name for name in QUALITY_METRIC_NAMES)

# --- embeddings (written by compute_embeddings) --------------------------------------
EMBEDDING_PREFIX = "embedding_"  # vector fields, e.g. embedding_radiomics, embedding_vit_b_32
RADIOMICS_EMBEDDING = "embedding_radiomics"  # the weight-free radiomics vector

# lesions in 3-D (analyses/lesions.py): new fields beside the readers', never over them
LESIONS = "lesions"  # fo.Detections: one per reader per lesion per slice, linked by instance
LESION_DISAGREEMENT = "lesion_disagreement"  # per series, on every slice


def consensus_volume_field(method: str) -> str:
    """The 3-D consensus of the readers' volumes, e.g. ``consensus_staple_volume``."""
    return f"consensus_{method}_volume"
