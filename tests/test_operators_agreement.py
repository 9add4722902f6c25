"""compute_agreement and compute_consensus as operators: SDK calls through FiftyOne's
executor, a delegated run with progress, and the forms the operator browser shows."""

import numpy as np
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


def _class_reads(ds):
    from multireader.core import collect as C

    rs = C.select_readers(ds, "classification")
    return C.categorical_reads(ds.view(), rs)


def test_consensus_form_offers_dawid_skene_options_with_their_defaults(demo_dataset):
    from operators.compute_consensus import DS_DEFAULTS

    props = form("compute_consensus", demo_dataset)
    assert {k: props[k]["default"] for k in DS_DEFAULTS} == {
        "max_iter": 1000,
        "tol": 1e-6,
        "diagonal_prior": 5.0,
        "single_reads": "fit",
        "init": "vote_shares",
    }
    assert "max_iter" not in form("compute_consensus", demo_dataset, {"method": "majority"})


def test_consensus_reports_convergence_equal_to_dawid_skene(demo_clone):
    from multireader.analyses.agreement import ConsensusResults
    from multireader.stats.consensus import DawidSkene
    from multireader.stats.profiles import reader_profiles

    out = op("compute_consensus")(
        demo_clone, max_iter=5000, tol=1e-8, diagonal_prior=5.0,
        single_reads="posterior_only", init="majority",
    )  # fmt: skip
    reads = _class_reads(demo_clone)
    k = len(reads.classes)
    ds = DawidSkene(
        k, max_iter=5000, tol=1e-8, diagonal_prior=5.0, single_reads="posterior_only",
        init="majority",
    ).fit(reads.codes)  # fmt: skip
    assert out["converged"] is True and ds.converged_
    assert out["n_iter"] == ds.n_iter_
    assert out["log_likelihood"] == pytest.approx(ds.log_likelihood_, rel=1e-12)
    assert out["warnings"] == []
    assert f"converged in {ds.n_iter_} iterations" in out["convergence"]
    stored = ConsensusResults.from_run(demo_clone, out["run_key"])
    assert stored.params["diagonal_prior"] == 5.0 and stored.params["init"] == "majority"
    labels = np.array(demo_clone.values("consensus_dawid_skene.label"), dtype=object)
    assert [reads.classes[c] if c >= 0 else None for c in ds.labels_] == list(labels)
    # the ordered demo scale: the ordinal test's flags join the prevalence-bias ones
    prof = reader_profiles(
        reads.codes, ds.labels_, k, reader_names=reads.readers, class_names=reads.classes,
        scale="ordinal",
    )  # fmt: skip
    want = [f for f in prof["flags"] if f["kind"] == "ordinal_bias"]
    got = [f for f in out["flags"] if f["kind"] == "ordinal_bias"]
    assert [(f["reader"], f["detail"]) for f in got] == [(f["reader"], f["detail"]) for f in want]
    assert got, "the demo's biased reader R2 calls higher on the ordered scale"
    per = stored.profiles["per_reader"]
    for r in reads.readers:
        assert per[r]["ordinal_bias"] == prof["per_reader"][r]["ordinal_bias"]
        assert "marginal_homogeneity" not in per[r]


def test_consensus_not_converged_warns_with_the_iterations_run(demo_clone):
    from multireader.stats.consensus import DawidSkene

    out = op("compute_consensus")(demo_clone, max_iter=2, tol=0.0, diagonal_prior=0.0,
                                  single_reads="fit", init="vote_shares")  # fmt: skip
    reads = _class_reads(demo_clone)
    ds = DawidSkene(len(reads.classes), max_iter=2, tol=0.0, diagonal_prior=0.0).fit(reads.codes)
    assert out["converged"] is False and out["n_iter"] == 2 == ds.n_iter_
    assert out["log_likelihood"] == pytest.approx(ds.log_likelihood_, rel=1e-12)
    assert len(out["warnings"]) == 1 and "max_iter=2" in out["warnings"][0]
    assert "did NOT converge" in out["convergence"]
    with pytest.raises(Exception, match="single_reads"):
        op("compute_consensus")(demo_clone, single_reads="sometimes")


@pytest.mark.parametrize("interval", ["cases_and_readers", "cases_and_readers_jackknife"])
def test_agreement_intervals_with_readers_random_equal_the_mrmc_functions(demo_clone, interval):
    from multireader.core import runs
    from multireader.stats import mrmc

    out = op("compute_agreement")(
        demo_clone, kinds=["classification"], n_boot=200, interval=interval, run_key="iv"
    )
    stored = runs.load(demo_clone, "iv")["results"]["kinds"]["classification"]["summary"]
    assert stored["interval"]["kind"] == interval
    reads = _class_reads(demo_clone)
    k = len(reads.classes)
    rows = {r["statistic"]: r for r in out["statistics"]}
    from multireader.analyses.agreement import READER_RANDOM_STATISTICS

    keys = [k for k in READER_RANDOM_STATISTICS if k in stored["overall"]]
    assert {"fleiss_kappa", "gwet_ac1", "krippendorff_alpha_nominal"} <= set(keys)
    for key in keys:
        if interval == "cases_and_readers":
            want = mrmc.two_way_bootstrap(
                reads.codes, k, key, groups=reads.groups, n_boot=200, level=0.95, seed=0
            )
        else:
            want = mrmc.rater_subject_variance(reads.codes, k, key, groups=reads.groups)
        e = stored["overall"][key]
        assert e["value"] == pytest.approx(want["value"], abs=1e-9)
        assert e["ci"] == pytest.approx(list(want["ci"]), abs=1e-9)
        assert e["ci_cases"] and e["ci_cases"] != e["ci"]
        assert rows[key]["ci"] == f"[{want['ci'][0]:.3f}, {want['ci'][1]:.3f}]"
    # the others keep their case-only interval
    assert "ci_cases" not in stored["overall"]["percent_agreement"]
