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
