"""The label schema: declared once, stored in dataset.info, validated, guarded."""

import pytest

from multireader.core import fields as F
from multireader.core import schema as S

CLASSES = ["benign", "probably benign", "suspicious", "malignant"]


def test_declare_stores_schema_classes_and_mask_targets(dataset):
    declared = S.declare_label_schema(
        dataset, CLASSES, ordered=True, score_range=(1, 5), mask_targets={"1": "lesion"}
    )
    expected = {
        "classes": CLASSES,
        "ordered": True,
        "score_range": [1.0, 5.0],
        "mask_targets": {1: "lesion"},
    }
    assert declared == expected
    dataset.reload()
    assert S.get_label_schema(dataset) == expected
    # stored with string keys (MongoDB), returned with int keys
    assert dataset.info[F.INFO_KEY]["label_schema"]["mask_targets"] == {"1": "lesion"}
    assert dataset.default_classes == CLASSES
    assert dataset.default_mask_targets == {1: "lesion"}


def test_no_schema_is_none_and_validates_anything(dataset):
    assert S.get_label_schema(dataset) is None
    assert S.check_label(None, "anything") is None
    assert S.check_score(None, 99.0) is None
    assert S.check_mask_values(None, [0, 7]) is None


def test_ratings_one_to_five_as_an_ordinal_scale(dataset):
    declared = S.declare_label_schema(dataset, [1, 2, 3, 4, 5], ordered=True)
    assert declared["classes"] == ["1", "2", "3", "4", "5"]
    assert S.ordinal_rank(declared, "4") == 3
    assert S.ordinal_rank(declared, "6") is None
    unordered = S.declare_label_schema(dataset, ["a", "b"], overwrite=True)
    assert S.ordinal_rank(unordered, "b") is None


def test_validation_helpers_say_why():
    schema = {
        "classes": CLASSES,
        "ordered": True,
        "score_range": [1.0, 5.0],
        "mask_targets": {1: "lesion", 2: "cyst"},
    }
    assert S.check_label(schema, "suspicious") is None
    assert "not in the declared classes" in S.check_label(schema, "maligant")
    assert S.check_score(schema, 1.0) is None and S.check_score(schema, 5.0) is None
    assert "outside the declared range [1, 5]" in S.check_score(schema, 5.5)
    assert S.check_score(schema, None) is None
    assert S.check_mask_values(schema, [0, 1, 2]) is None
    assert "[3, 9]" in S.check_mask_values(schema, [0, 1, 3, 9])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": []}, "at least one"),
        ({"classes": ["a", " "]}, "non-empty"),
        ({"classes": ["a", "a"]}, "duplicated"),
        ({"classes": ["a"], "score_range": [5, 1]}, "must be below"),
        ({"classes": ["a"], "score_range": [1]}, "lowest, highest"),
        ({"classes": ["a"], "mask_targets": {0: "bg"}}, "1..255"),
        ({"classes": ["a"], "mask_targets": {"x": "bg"}}, "integers"),
    ],
)
def test_bad_declarations_are_refused(dataset, kwargs, match):
    with pytest.raises(S.SchemaError, match=match):
        S.declare_label_schema(dataset, **kwargs)


def test_redeclaring_once_reader_labels_exist_needs_overwrite(dataset):
    import fiftyone as fo

    S.declare_label_schema(dataset, CLASSES, ordered=True)
    # before any reader label: a change is free
    S.declare_label_schema(dataset, ["benign", "malignant"])
    dataset.add_sample(fo.Sample(filepath="/tmp/x.png"))
    dataset.add_sample_field(
        F.reader_field("R1"), fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification
    )
    F.mark_reader_field(dataset, F.reader_field("R1"), "R1", "classification")
    # the same schema again is fine
    S.declare_label_schema(dataset, ["benign", "malignant"])
    with pytest.raises(S.SchemaError, match="reader_r1.*overwrite=True") as err:
        S.declare_label_schema(dataset, ["benign", "malignant", "other"])
    assert "classes" in str(err.value)
    assert S.get_label_schema(dataset)["classes"] == ["benign", "malignant"]
    S.declare_label_schema(dataset, ["benign", "malignant", "other"], overwrite=True)
    assert S.get_label_schema(dataset)["classes"] == ["benign", "malignant", "other"]
    assert dataset.default_mask_targets == {}
