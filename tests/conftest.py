"""Shared test set-up: a real FiftyOne database, unique dataset names, cleanup."""

import os
import sys
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import pytest  # noqa: E402


@pytest.fixture
def dataset_name():
    """A unique dataset name; the dataset is deleted after the test if it exists."""
    name = f"test-mr-{uuid.uuid4().hex[:10]}"
    yield name
    import fiftyone as fo

    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.fixture
def dataset(dataset_name):
    import fiftyone as fo

    ds = fo.Dataset(dataset_name)
    yield ds


def build_demo_dataset(name: str, data_dir: str, seed: int = 0):
    """The demo study imported with every reader's labels, through the library calls."""
    import fiftyone as fo

    from multireader import demo, importer, readers, schema

    study = demo.generate_demo_study(data_dir, seed=seed)
    ds = fo.Dataset(name)
    schema.declare_label_schema(ds, **study.label_schema)
    importer.import_dicom(ds, study.dicom_dir)
    for path in (study.reads_csv, study.boxes_csv, study.masks_csv):
        readers.import_reader_labels(ds, str(path))
    for reader, path in study.seg_files:
        readers.import_reader_labels(ds, str(path), kind="seg", reader=reader)
    for reader, path in study.rtstruct_files:
        readers.import_reader_labels(ds, str(path), kind="rtstruct", reader=reader)
    return ds, study


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    """The imported demo study, shared read-only by the tests of a session.

    Tests that write (agreement fields, consensus) work on ``demo_dataset.clone()``.
    """
    import fiftyone as fo

    name = f"test-mr-demo-{uuid.uuid4().hex[:8]}"
    ds, study = build_demo_dataset(name, str(tmp_path_factory.mktemp("demo")))
    ds.study = study  # truth and paths, for tests that check planted effects
    yield ds
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.fixture
def demo_clone(demo_dataset):
    """A private, writable copy of the demo dataset, deleted after the test."""
    clone = demo_dataset.clone(f"test-mr-clone-{uuid.uuid4().hex[:8]}")
    clone.study = demo_dataset.study
    yield clone
    if clone.name and __import__("fiftyone").dataset_exists(clone.name):
        clone.delete()
