"""compute_agreement and compute_consensus as operators: SDK calls through FiftyOne's
executor, a delegated run with progress, and the forms the operator browser shows."""

import pytest
from helpers_plugin import form, op, run_queued


def test_forms_find_readers_kinds_and_methods(demo_dataset):
    properties = form("compute_agreement", demo_dataset)
    assert properties["readers"]["default"] == ["R1", "R2", "R3", "R4"]
    assert properties["kinds"]["default"] == ["boxes", "classification", "mask"]
    assert properties["level"]["default"] == 0.95
    assert {"run_key", "n_boot", "by_patient", "statistics", "target", "delegate"} <= set(
        properties
    )
    cons = form("compute_consensus", demo_dataset)
    assert cons["kind"]["default"] == "classification"
    assert cons["method"]["default"] == "dawid_skene"
    assert cons["output_field"]["default"] == "consensus_dawid_skene"
    masks = form("compute_consensus", demo_dataset, {"kind": "mask"})
    assert masks["method"]["default"] == "staple"
    assert masks["output_field"]["default"] == "consensus_staple_mask"
    assert "profiles" not in masks
    boxes = form("compute_consensus", demo_dataset, {"kind": "boxes", "method": "wbf"})
    assert boxes["output_field"]["default"] == "consensus_wbf_boxes"
    assert "iou_threshold" in boxes


def test_sdk_calls_go_through_the_executor(demo_clone):
    from multireader.core import runs

    out = op("compute_agreement")(demo_clone, kinds=["classification"], n_boot=100, run_key="ag")
    assert out["run_key"] == "ag" and "disagreement" in out["fields_written"]
    rows = {(r["kind"], r["statistic"]): r for r in out["statistics"]}
    stored = runs.load(demo_clone, "ag")["results"]["kinds"]["classification"]["summary"]
    fleiss = stored["overall"]["fleiss_kappa"]
    assert rows[("classification", "fleiss_kappa")]["value"] == f"{fleiss['value']:.3f}"
    assert out["n_disagree"] == demo_clone.count_values("readers_disagree")[True]

    cons = op("compute_consensus")(demo_clone, method="majority", readers=["R1", "R2", "R4"])
    assert cons["output_field"] == "consensus_majority"
    meta = demo_clone.get_field("consensus_majority").info["multireader"]
    assert meta["readers"] == ["R1", "R2", "R4"]
    assert {f["reader"] for f in cons["flags"]} <= {"R1", "R2", "R4"}


def test_delegated_agreement_reports_progress(demo_clone):
    from multireader.core import runs

    op("compute_agreement")(demo_clone, kinds=["mask"], n_boot=50, run_key="deleg", delegate=True)
    assert runs.list_runs(demo_clone) == []  # queued, not run
    run_queued("compute_agreement", demo_clone)
    assert runs.list_runs(demo_clone, "agreement") == ["deleg"]
    assert demo_clone.has_field("mean_pairwise_dice")


def test_operator_errors_name_the_problem(demo_clone):
    with pytest.raises(Exception, match="reader field"):
        op("compute_consensus")(demo_clone, output_field="reader_r3")
    with pytest.raises(Exception, match="does not apply"):
        op("compute_consensus")(demo_clone, kind="boxes", method="dawid_skene")


def test_runs_are_listed_renamed_and_deleted_through_the_operator(demo_clone):
    from multireader.core import runs

    op("compute_agreement")(demo_clone, kinds=["classification"], n_boot=0, run_key="a1")
    op("compute_consensus")(demo_clone, method="majority")
    listed = op("manage_runs")(demo_clone)["runs"]
    assert [(r["key"], r["kind"]) for r in listed] == [
        ("a1", "agreement"),
        ("consensus_majority", "consensus"),
    ]
    assert listed[0]["readers"] == "R1, R2, R3, R4" and listed[0]["samples"] == 336
    assert listed[1]["detail"] == "majority"
    after = op("manage_runs")(demo_clone, action="rename", run_key="a1", new_key="a_all")["runs"]
    assert [r["key"] for r in after] == ["a_all", "consensus_majority"]
    assert runs.load(demo_clone, "a_all")["kind"] == "agreement"
    op("manage_runs")(demo_clone, action="delete", run_key="consensus_majority")
    assert runs.list_runs(demo_clone) == ["a_all"]
    # the consensus field itself stays: deleting a run deletes the record, not labels
    assert demo_clone.has_field("consensus_majority")


def test_delegated_consensus_reports_progress(demo_clone):
    op("compute_consensus")(demo_clone, kind="mask", delegate=True)
    assert not demo_clone.has_field("consensus_staple_mask")  # queued, not run
    run_queued("compute_consensus", demo_clone)
    assert len(demo_clone.exists("consensus_staple_mask")) == len(demo_clone)


def test_run_keys_are_checked_in_the_form_and_by_execute(demo_clone):
    from multireader.core import runs

    bad = form("compute_agreement", demo_clone, {"run_key": "not a key"})["run_key"]
    assert bad["invalid"] and "not valid" in bad["error_message"]
    fresh = form("compute_agreement", demo_clone, {"run_key": "ag"})
    assert not fresh["run_key"].get("invalid") and "run_key_exists" not in fresh
    op("compute_agreement")(demo_clone, kinds=["classification"], n_boot=0, run_key="ag")
    # the same kind is replaced: a warning; another kind's key is refused
    assert "run_key_exists" in form("compute_agreement", demo_clone, {"run_key": "ag"})
    taken = form("compute_consensus", demo_clone, {"run_key": "ag"})["run_key"]
    assert taken["invalid"] and "already holds" in taken["error_message"]
    with pytest.raises(Exception, match="run_key"):
        op("compute_agreement")(demo_clone, kinds=["classification"], run_key="2 bad")
    assert runs.list_runs(demo_clone) == ["ag"]
