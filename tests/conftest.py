"""Shared test set-up: a real FiftyOne database, unique dataset names, cleanup."""

import os
import sys
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def plugins_dir():
    """FiftyOne finds this repository's plugin, as `./setup.sh` arranges for users."""
    import fiftyone as fo

    old = fo.config.plugins_dir
    fo.config.plugins_dir = ROOT
    yield
    fo.config.plugins_dir = old


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

    from multireader.core import schema
    from multireader.ingest import importer, readers
    from multireader.io import demo

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
def demo_build(tmp_path_factory):
    """(dataset, study): the imported demo study, built once per test session."""
    import fiftyone as fo

    name = f"test-mr-demo-{uuid.uuid4().hex[:8]}"
    ds, study = build_demo_dataset(name, str(tmp_path_factory.mktemp("demo")))
    yield ds, study
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.fixture(scope="session")
def demo_dataset(demo_build):
    """The imported demo dataset, shared READ-ONLY by the tests of a session.

    Tests that write (agreement fields, consensus) work on ``demo_clone``.
    """
    return demo_build[0]


@pytest.fixture(scope="session")
def demo_study(demo_build):
    """The demo study's files and truth (``truth_path``) behind ``demo_dataset``."""
    return demo_build[1]


@pytest.fixture
def demo_clone(demo_dataset):
    """A private, writable copy of the demo dataset, deleted after the test."""
    import fiftyone as fo

    clone = demo_dataset.clone(f"test-mr-clone-{uuid.uuid4().hex[:8]}")
    yield clone
    if fo.dataset_exists(clone.name):
        fo.delete_dataset(clone.name)
