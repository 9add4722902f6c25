"""Import every real file that ships with pydicom and pydicom-data.

Nobody here wrote these files: CT, MR, US, RT, SEG, JPEG, JPEG-LS, JPEG 2000, RLE,
deflate, big endian, multi-frame, truncated and deliberately broken ones. pydicom itself
is the independent judge of which files hold decodable images.
"""

import os
import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_files

NON_IMAGE = {"SEG", "RTSTRUCT", "SR", "PR", "KO", "RTPLAN"}
IDENTIFIERS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAddress",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "OtherPatientIDs",
)
# values too generic to be identifying, and that occur in ordinary field values
GENERIC = {"anonymous", "anonymized", "unknown", "none", "test", "patient", "demo", "ct", "mr"}


def _judge(path):
    """(keys, identifiers) as pydicom sees the file: keys=None when it holds no image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            return None, set()
        ids = set()
        for keyword in IDENTIFIERS:
            try:
                value = ds.get(keyword)
            except Exception:
                continue
            values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
            for v in values:
                text = str(v or "").strip()
                if len(text) >= 3 and text.lower() not in GENERIC:
                    ids.add(text)
        try:
            if "DirectoryRecordSequence" in ds or str(ds.get("Modality", "")).upper() in NON_IMAGE:
                return None, ids
            arr = ds.pixel_array
        except Exception:
            return None, ids
    nf = int(ds.get("NumberOfFrames", 1) or 1)
    nf = nf if arr.ndim >= 3 and nf > 1 else 1
    sop = str(ds.get("SOPInstanceUID") or "")
    return ({f"{sop}:{i}" for i in range(nf)} if sop else set()), ids


@pytest.fixture(scope="module")
def corpus():
    files = sorted(p for p in get_testdata_files() if os.path.isfile(p))
    assert len(files) > 200, "pydicom-data is not installed"
    return files


@pytest.fixture(scope="module")
def imported(corpus, tmp_path_factory):
    import fiftyone as fo

    from multireader.ingest import importer

    ds = fo.Dataset()
    rep = importer.import_dicom(ds, corpus, render_dir=str(tmp_path_factory.mktemp("renders")))
    yield ds, rep
    ds.delete()


def test_every_decodable_file_imports_and_every_other_is_explained(corpus, imported):
    from multireader.core import fields as F

    ds, rep = imported
    skipped = {item["path"]: item["reason"] for item in rep.skipped}
    indexes = {item["path"] for item in rep.indexes}
    keys = set(ds.values(F.DICOM_KEY))
    from multireader.io import source_paths

    # dicom_path stores no folder names; the local lookup gives the files back
    imported_paths = set(source_paths.resolve_all(ds.values(F.DICOM_PATH)))
    wrong = []
    n_images = 0
    for path in corpus:
        expected, _ = _judge(path)
        path = os.path.abspath(path)
        if expected is None:
            if path not in skipped and path not in imported_paths and path not in indexes:
                wrong.append((path, "neither imported nor reported"))
            elif path in skipped and not skipped[path].strip():
                wrong.append((path, "skipped without a reason"))
            continue
        n_images += 1
        if path in skipped:
            wrong.append((path, f"decodable but skipped: {skipped[path]}"))
        elif expected - keys:
            # every frame is a sample (an instance shared by two files imports once)
            wrong.append((path, f"frames missing: {sorted(expected - keys)[:3]}"))
    assert n_images > 100
    assert not wrong, wrong


def test_reasons_name_the_problem(imported):
    _, rep = imported
    reasons = {os.path.basename(item["path"]): item["reason"] for item in rep.skipped}
    # a structure set, a segmentation and files with no pixel data, each said plainly
    assert "RT structure set" in reasons["rtstruct.dcm"]
    assert any("DICOM-SEG" in r for r in reasons.values())
    assert any("no pixel data" in r for r in reasons.values())
    # DICOMDIRs given as input are read as indexes of the files they list
    assert rep.indexes and all(i["files"] > 0 for i in rep.indexes)


def _strings(obj, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(str(k))
            _strings(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _strings(v, out)
    elif obj is not None:
        out.add(str(obj))
    return out


def test_no_patient_identifier_is_copied(corpus, imported):
    ds, _ = imported
    identifiers, allowed = set(), set()
    for path in corpus:
        identifiers |= _judge(path)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
                # a vendor name is copied as `manufacturer` even where another file
                # misuses it as an institution name
                allowed |= {
                    str(header.get(k, "")).strip()
                    for k in ("Manufacturer", "ManufacturerModelName")
                }
            except Exception:
                pass
    identifiers = {i for i in identifiers if not any(i in a for a in allowed if a)}
    assert len(identifiers) > 20
    values = _strings(ds.to_dict(), set())
    _strings(ds.info, values)
    _strings({n: f.info for n, f in ds.get_field_schema().items()}, values)
    text = "\n".join(values)
    leaked = sorted(
        i
        for i in identifiers
        # exact values always; inside longer values only for names (letters), since
        # short digit runs occur inside UIDs by chance
        if i in values or (any(c.isalpha() for c in i) and len(i) >= 5 and i in text)
    )
    assert not leaked, leaked
