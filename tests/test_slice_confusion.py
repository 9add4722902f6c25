"""The numbers behind the slice_confusion and reader_profiles panels, on the demo study in
the real database, against recounts from the raw labels and scikit-learn."""

import numpy as np
import pytest

from multireader.analyses import reader_report as RR
from multireader.analyses import slice_confusion as SC

CLASSES = ["benign", "probably_benign", "suspicious", "malignant"]


@pytest.fixture(scope="module")
def with_consensus(demo_dataset):
    from multireader.analyses import agreement as analysis

    clone = demo_dataset.clone(demo_dataset.name + "-slices")
    analysis.compute_consensus(clone, method="dawid_skene")
    rng = np.random.default_rng(0)
    clone.set_values("mistakenness_reader_r1", rng.random(len(clone)).tolist())
    yield clone
    clone.delete()


def test_each_slice_matches_a_recount_and_sklearn(with_consensus):
    from sklearn.metrics import cohen_kappa_score

    ds = with_consensus
    res = SC.slice_confusion(
        ds,
        "reader_r2",
        "consensus_dawid_skene",
        "manufacturer_model",
        shade_field="mistakenness_reader_r1",
    )
    a = np.array(ds.values("reader_r2.label"), dtype=object)
    b = np.array(ds.values("consensus_dawid_skene.label"), dtype=object)
    s = np.array(ds.values("manufacturer_model"), dtype=object)
    shade = np.array(ds.values("mistakenness_reader_r1"), dtype=float)
    assert res["classes"] == CLASSES
    assert [x["name"] for x in res["slices"]] == sorted(set(s))
    assert res["n_compared"] == int(((a != None) & (b != None)).sum())  # noqa: E711
    for entry in res["slices"]:
        m = (s == entry["name"]) & (a != None) & (b != None)  # noqa: E711
        assert entry["n"] == m.sum()
        conf = np.array(entry["confusion"])
        for i, ca in enumerate(CLASSES):
            for j, cb in enumerate(CLASSES):
                cell = m & (a == ca) & (b == cb)
                assert conf[i, j] == cell.sum()
                want = shade[cell].mean() if cell.any() else None
                assert entry["shade"][i][j] == (pytest.approx(want) if want is not None else None)
        k = cohen_kappa_score(list(a[m]), list(b[m]), labels=CLASSES)
        assert entry["kappa"]["value"] == pytest.approx(k, abs=1e-12)
        lo, hi = entry["kappa"]["ci"]
        assert lo < k < hi
        # the cell view holds exactly the samples counted
        view = SC.cell_view(
            ds,
            "reader_r2",
            "consensus_dawid_skene",
            "manufacturer_model",
            entry["filter"],
            "suspicious",
            "benign",
        )
        assert len(view) == conf[2, 0]


def test_numeric_slices_are_binned_and_bins_can_be_edited(with_consensus):
    ds = with_consensus
    res = SC.slice_confusion(ds, "reader_r1", "reader_r3", "slice_position")
    x = np.array(ds.values("slice_position"), dtype=float)
    edges = res["bins"]
    np.testing.assert_allclose(edges, np.quantile(x, [0, 0.25, 0.5, 0.75, 1]))
    assert sum(e["n_missing_label"] + e["n"] for e in res["slices"]) == len(ds)
    res = SC.slice_confusion(ds, "reader_r1", "reader_r3", "slice_position", bins=[-120, -100])
    names = [e["name"] for e in res["slices"]]
    assert names == ["[-120, -100]", "outside the bins"]
    inside = (x >= -120) & (x <= -100)
    first = res["slices"][0]
    assert first["n"] + first["n_missing_label"] == inside.sum()
    a, b = "benign", "benign"
    view = SC.cell_view(ds, "reader_r1", "reader_r3", "slice_position", first["filter"], a, b)
    assert len(view) == first["confusion"][0][0]
    outside = res["slices"][1]
    view = SC.cell_view(ds, "reader_r1", "reader_r3", "slice_position", outside["filter"], a, b)
    assert len(view) == outside["confusion"][0][0]


def test_clear_errors(with_consensus):
    with pytest.raises(SC.SliceError, match="no field 'reader_r9'"):
        SC.slice_confusion(with_consensus, "reader_r9", "reader_r1", None)
    with pytest.raises(SC.SliceError, match="two different"):
        SC.slice_confusion(with_consensus, "reader_r1", "reader_r1", None)
    with pytest.raises(SC.SliceError, match="no slice field 'nope'"):
        SC.slice_confusion(with_consensus, "reader_r1", "reader_r2", "nope")


def test_choices_offer_readers_consensus_and_metadata(with_consensus):
    fields = SC.comparable_fields(with_consensus)
    assert fields[:5] == [
        "reader_r1",
        "reader_r2",
        "reader_r3",
        "reader_r4",
        "consensus_dawid_skene",
    ]
    assert SC.slice_fields(with_consensus)[:3] == ["modality", "manufacturer", "manufacturer_model"]


def test_profiles_on_the_whole_dataset_equal_the_stored_run(with_consensus):
    from multireader.core import runs

    ds = with_consensus
    prof = RR.profiles_for_view(ds, "consensus_dawid_skene")
    stored = runs.load(ds, "consensus_dawid_skene")["results"]["profiles"]
    for r in ("R1", "R2", "R3", "R4"):
        assert prof["per_reader"][r]["confusion"] == stored["per_reader"][r]["confusion"]
        assert prof["per_reader"][r]["prevalence"] == stored["per_reader"][r]["prevalence"]
    assert {f["reader"] for f in prof["flags"]} == {f["reader"] for f in stored["flags"]}


def test_profiles_follow_the_view_and_views_match_counts(with_consensus, demo_dataset):
    from fiftyone import ViewField as VF

    ds = with_consensus
    aurora = ds.match(VF("manufacturer_model") == "Aurora 16")
    prof = RR.profiles_for_view(aurora, "consensus_dawid_skene")
    per = prof["per_reader"]["R2"]
    assert per["n_reads"] == len(aurora.exists("reader_r2.label"))
    conf = np.array(per["confusion"])  # consensus rows, reader columns
    for i, cons in enumerate(CLASSES):
        for j, mine in enumerate(CLASSES):
            v = RR.confusion_view(aurora, "reader_r2", "consensus_dawid_skene", mine, cons)
            assert len(v) == conf[i, j]
    for s in per["drift"]["sessions"]:
        assert len(RR.session_view(aurora, "reader_r2", s["session"])) == s["n"]
    rate = per["prevalence"]["suspicious"]["rate"]
    calls = RR.calls_view(aurora, "reader_r2", "suspicious")
    assert len(calls) == pytest.approx(rate * per["n_reads"], abs=0.5)
    with pytest.raises(RR.ReportError, match="run compute_consensus"):
        RR.profiles_for_view(demo_dataset)  # the read-only demo has no consensus


def test_profiles_follow_the_stored_runs_session_order(demo_clone):
    """The profiles panel reads session names only; it shows the sessions in the
    stored consensus run's order (by first read), even when names would sort otherwise."""
    from multireader.analyses import agreement as analysis
    from multireader.analyses import reader_report
    from multireader.core import runs

    # rename sessions so that name order and time order disagree: S1 -> Z1
    sessions = demo_clone.values("reader_r1.session")
    demo_clone.set_values("reader_r1.session", [("Z1" if s == "S1" else s) for s in sessions])
    analysis.compute_consensus(demo_clone, method="majority")
    stored = reader_report.stored_session_order(demo_clone, "consensus_majority")
    run = runs.load(demo_clone, "consensus_majority")["results"]["profiles"]["per_reader"]
    assert [r["session"] for r in run["R1"]["drift"]["sessions"]] == [
        s for s in stored if s in {r["session"] for r in run["R1"]["drift"]["sessions"]}
    ]
    prof = reader_report.profiles_for_view(demo_clone.view(), "consensus_majority")
    got = [r["session"] for r in prof["per_reader"]["R1"]["drift"]["sessions"]]
    want = [r["session"] for r in run["R1"]["drift"]["sessions"]]
    assert got == want and got[0] == "Z1"  # Z1 was read first, though it sorts last
    for a, b in zip(
        prof["per_reader"]["R1"]["drift"]["sessions"], run["R1"]["drift"]["sessions"], strict=True
    ):
        assert a["n"] == b["n"]
        assert a["agreement"] == pytest.approx(b["agreement"], abs=1e-6, nan_ok=True) or (
            a["agreement"] is None and b["agreement"] is None
        )
