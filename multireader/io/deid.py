"""What the importer copies out of a DICOM header, and what it never copies.

The importer works from an allow-list: only the typed metadata below leaves the file.
Names, IDs, birth dates, addresses, institutions and physicians stay behind unless the
user opts in, and then they go to one ``dicom_identifiers`` field only. Age and weight
are binned because exact values help re-identify people; study dates need an opt-in.
Patient-level grouping still works through a salted, keyed hash of the patient ID.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets

import pydicom

#: identifying attributes, copied only with ``include_identifiers=True``
IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "AccessionNumber",
    "StationName",
)

SALT_ENV = "MULTIREADER_SALT"
SALT_FILE = os.path.join(os.path.expanduser("~"), ".multireader", "salt")


def load_salt() -> bytes:
    """The secret salt of the pseudonymous patient key.

    It lives outside the dataset (``$MULTIREADER_SALT`` or ``~/.multireader/salt``,
    created once, mode 0600): a salt stored beside the keys would let anyone who can
    read the dataset test guessed patient IDs against them.
    """
    env = os.environ.get(SALT_ENV)
    if env:
        return env.encode()
    if not os.path.exists(SALT_FILE):
        os.makedirs(os.path.dirname(SALT_FILE), exist_ok=True)
        fd = os.open(SALT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        finally:
            os.close(fd)
    with open(SALT_FILE, "rb") as f:
        return f.read().strip()


def patient_key(ds: pydicom.Dataset, salt: bytes) -> str | None:
    """HMAC-SHA256(salt, PatientID | IssuerOfPatientID), 16 hex characters, or None."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if not pid:
        return None
    issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
    return hmac.new(salt, f"{pid}|{issuer}".encode(), hashlib.sha256).hexdigest()[:16]


def lookup(ds: pydicom.Dataset, keyword: str):
    """An attribute from the top level, else from the first frame's functional groups.

    Enhanced and legacy-converted multi-frame files keep per-frame attributes (kVp,
    rescale, anatomy) inside shared or per-frame functional-group items, one level down.
    """
    value = ds.get(keyword)
    if value is not None:
        return value
    for groups, tag in (
        ("SharedFunctionalGroupsSequence", 0x52009229),
        ("PerFrameFunctionalGroupsSequence", 0x52009230),
    ):
        if tag not in ds:  # most files have neither: a tag test is ~20x cheaper than a get
            continue
        seq = ds.get(groups)
        if not seq:
            continue
        for element in seq[0]:
            if element.VR != "SQ":
                continue
            for item in element.value:
                if keyword in item:
                    return item.get(keyword)
    return None


def _str(ds, keyword) -> str | None:
    value = lookup(ds, keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _float(ds, keyword) -> float | None:
    value = lookup(ds, keyword)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _date(value) -> dt.date | None:
    text = str(value or "").strip()
    if len(text) < 8:
        return None
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def age_years(ds: pydicom.Dataset) -> float | None:
    """Age at the study from PatientAge ('045Y', '006M', '010W', '003D'), else from dates."""
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(text) >= 2 and text[:-1].isdigit():
        n, unit = int(text[:-1]), text[-1]
        factor = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}.get(unit)
        if factor is not None:
            return n * factor
    birth, study = _date(ds.get("PatientBirthDate")), _date(ds.get("StudyDate"))
    if birth and study and study >= birth:
        return (study - birth).days / 365.25
    return None


def age_bin(years: float | None) -> str | None:
    """Decades, with everyone 90 or older in one bin (as HIPAA's Safe Harbor asks)."""
    if years is None:
        return None
    if years >= 90:
        return "90+"
    lo = int(years // 10) * 10
    return f"{lo}-{lo + 9}"


def weight_bin(kg: float | None) -> str | None:
    if kg is None or kg <= 0:
        return None
    if kg < 40:
        return "<40kg"
    if kg >= 120:
        return "120+kg"
    lo = int((kg - 40) // 20) * 20 + 40
    return f"{lo}-{lo + 19}kg"


def _sex(ds) -> str | None:
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    return sex if sex in ("M", "F", "O") else None


def _contrast(ds) -> bool:
    agent = ds.get("ContrastBolusAgent")
    return bool(str(agent).strip()) if agent is not None else "ContrastBolusAgentSequence" in ds


def extract_metadata(ds: pydicom.Dataset, *, include_study_date: bool = False) -> dict:
    """The typed, non-identifying metadata used to slice a dataset.

    Only what de-identification decides about; the decoding facts (transfer syntax, VOI
    window) are added by :func:`multireader.io.dicom.header_metadata`, so this module
    never imports the decoder.
    """
    meta = {
        "modality": _str(ds, "Modality"),
        "manufacturer": _str(ds, "Manufacturer"),
        "manufacturer_model": _str(ds, "ManufacturerModelName"),
        "body_part": _str(ds, "BodyPartExamined"),
        "slice_thickness": _float(ds, "SliceThickness"),
        "kvp": _float(ds, "KVP"),
        "contrast": _contrast(ds),
        "patient_sex": _sex(ds),
        "patient_age_bin": age_bin(age_years(ds)),
        "patient_weight_bin": weight_bin(_float(ds, "PatientWeight")),
        "photometric": _str(ds, "PhotometricInterpretation"),
    }
    if include_study_date:
        date = _date(ds.get("StudyDate"))
        meta["study_date"] = date
    return meta


def extract_identifiers(ds: pydicom.Dataset) -> dict:
    """The identifying attributes, as strings, for users who explicitly opt in."""
    out = {}
    for keyword in IDENTIFIER_KEYWORDS:
        value = ds.get(keyword)
        if value is not None and str(value).strip():
            out[keyword] = str(value)
    return out
