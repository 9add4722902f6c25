"""compute_recist_agreement and adjudicate_response on a real tiny longitudinal dataset.

The study of ``helpers_recist`` (six patients x three studies, three readers, planted
numbers: P1 discordant PR against SD, P5 with rule-chosen targets, P3 with a rule
violation, reader C drifting upward).

Everything else is checked against a recount of the table or an independent peer
(statsmodels' kappas, pingouin's ICC).
"""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from helpers_plugin import op, raw_reader_docs, run_queued
from helpers_recist import READERS, TRAJECTORY, make_longitudinal

from multireader.analyses import recist as AR
from multireader.core import fields as F
from multireader.core import runs as RUNS


@pytest.fixture(scope="module")
def longitudinal(tmp_path_factory):
    """(dataset, rows, studies): 6 patients x 3 studies, measurements imported."""
    import fiftyone as fo

    name = f"test-mr-recist-{uuid.uuid4().hex[:8]}"
    ds = fo.Dataset(name)
    rows, studies = make_longitudinal(ds, tmp_path_factory.mktemp("recist"))
    yield ds, rows, studies
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def _recount(rows) -> dict:
    """Each reader's responses from the table alone: sums of the flagged targets (or,
    with none flagged, the two largest liver lesions and the largest lung lesion, as the
    rule picks them here), -30 % from baseline, +20 % and +5 mm from the nadir."""
    out = {}
    for patient in TRAJECTORY:
        for reader in READERS:
            mine = [r for r in rows if r["patient"] == patient and r["reader"] == reader]
            targets = sorted({r["lesion_id"] for r in mine if r["target"]}) or ["L1", "L2", "L3"]
            sums = [
                sum(
                    r["long_axis_mm"]
                    for r in mine
                    if r["timepoint"] == t and r["lesion_id"] in targets
                )
                for t in range(3)
            ]
            calls = []
            for t in (1, 2):
                nadir = min(sums[:t])
                if sums[t] - nadir >= 0.2 * nadir and sums[t] - nadir >= 5:
                    calls.append("PD")
                elif sums[t] <= 0.7 * sums[0]:
                    calls.append("PR")
                else:
                    calls.append("SD")
            out[(patient, reader)] = (targets, sums, calls)
    return out


@pytest.fixture(scope="module")
def computed(longitudinal):
    ds, rows, _ = longitudinal
    res = AR.compute_recist_agreement(ds, n_boot=200, seed=1)
    return ds, rows, res


def _row(res, patient):
    return res.patient(patient)


def test_p1_is_pr_for_a_and_sd_for_b_and_discordant(computed):
    ds, rows, res = computed
    p1 = _row(res, "P1")
    a, b = p1["readers"]["A"], p1["readers"]["B"]
    assert a["sums"] == pytest.approx([100.0, 68.0, 66.0])
    assert a["pct_baseline"][1] == pytest.approx(-32.0)
    assert b["pct_baseline"][1] == pytest.approx(-25.0)
    assert a["responses"] == ["PR", "PR"] and b["responses"] == ["SD", "SD"]
    assert a["bor"] == "PR" and b["bor"] == "SD"
    disc = {(d["patient"], d["timepoint"]) for d in res["discordant"]}
    assert ("P1", 1) in disc and ("P1", 2) in disc
    # the flag is on every sample of P1 (both slices of its three studies)
    from fiftyone import ViewField as VF

    flags = ds.match(VF(F.PATIENT_KEY) == "P1").values(AR.DISCORDANT_FIELD)
    assert len(flags) == 6 and all(flags)


def test_every_response_equals_a_recount_of_the_table(computed):
    _, rows, res = computed
    expect = _recount(rows)
    for patient in TRAJECTORY:
        row = _row(res, patient)
        for reader in READERS:
            targets, sums, calls = expect[(patient, reader)]
            got = row["readers"][reader]
            assert sorted(got["targets"]) == targets, (patient, reader)
            assert got["sums"] == pytest.approx(sums), (patient, reader)
            assert got["responses"] == calls, (patient, reader)
    # the planted extremes
    assert _row(res, "P6")["readers"]["A"]["responses"] == ["PR", "PR"]
    assert _row(res, "P5")["readers"]["A"]["responses"] == ["SD", "PD"]
    assert _row(res, "P5")["readers"]["B"]["selected_by"] == "rule"


def test_discordance_and_kappas_equal_statsmodels_and_a_recount(computed):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa

    _, rows, res = computed
    expect = _recount(rows)
    for t in (1, 2):
        cats = [[expect[(p, r)][2][t - 1] for r in READERS] for p in TRAJECTORY]
        ra = res["response_agreement"][str(t)]
        disc = np.mean([len(set(c)) > 1 for c in cats])
        assert ra["discordance_rate"]["value"] == pytest.approx(disc)
        assert ra["n_items"] == 6
        codes = np.array([[["CR", "PR", "SD", "PD", "NE"].index(x) for x in c] for c in cats])
        table, _ = aggregate_raters(codes, n_cat=5)
        table = table[:, table.sum(0) > 0]
        assert ra["fleiss_kappa"]["value"] == pytest.approx(fleiss_kappa(table), abs=1e-12)
        kap = ra["pairwise_cohen_kappa"]
        for i in range(3):
            for j in range(i + 1, 3):
                ref = cohen_kappa_score(codes[:, i], codes[:, j])
                if math.isfinite(ref):
                    assert kap[i][j] == pytest.approx(ref, abs=1e-12)
    # statsmodels' own Cohen's kappa on the A-B table at timepoint 1
    cats1 = np.array(
        [[["CR", "PR", "SD", "PD"].index(expect[(p, r)][2][0]) for r in "AB"] for p in TRAJECTORY]
    )
    tab = np.zeros((4, 4))
    np.add.at(tab, (cats1[:, 0], cats1[:, 1]), 1)
    sm = cohens_kappa(tab).kappa
    assert res["response_agreement"]["1"]["pairwise_cohen_kappa"][0][1] == pytest.approx(sm)
    # pooled over both follow-ups, a patient's two calls resampled together
    pooled = res["response_agreement"]["all"]
    assert pooled["n_items"] == 12
    lo, hi = pooled["discordance_rate"]["ci"]
    assert lo <= pooled["discordance_rate"]["value"] <= hi


def test_sums_icc_equals_pingouin(computed):
    import pandas as pd
    import pingouin

    _, rows, res = computed
    expect = _recount(rows)
    long = [
        {"t": f"{p}:{t}", "r": r, "v": expect[(p, r)][1][t]}
        for p in TRAJECTORY
        for t in range(3)
        for r in READERS
    ]
    ref = pingouin.intraclass_corr(pd.DataFrame(long), targets="t", raters="r", ratings="v")
    # pingouin's McGraw & Wong names: A = absolute agreement (Shrout & Fleiss case 2)
    ref = ref.set_index("Type")["ICC"]
    icc = res["sum_agreement"]["icc"]
    assert icc["ICC(2,1)"]["value"] == pytest.approx(ref["ICC(A,1)"], abs=1e-10)
    assert icc["ICC(3,1)"]["value"] == pytest.approx(ref["ICC(C,1)"], abs=1e-10)
    assert icc["ICC(1,1)"]["value"] == pytest.approx(ref["ICC(1,1)"], abs=1e-10)
    boot = res["sum_agreement"]["icc_bootstrap"]["ICC(2,1)"]
    assert boot["value"] == pytest.approx(ref["ICC(A,1)"], abs=1e-10)
    assert boot["ci"][0] <= boot["value"] <= boot["ci"][1]
    assert res["sum_agreement"]["repeatability_coefficient"]["value"] > 0


def test_target_selection_violations_and_drift(computed):
    _, _, res = computed
    ts = res["target_selection"]
    assert ts["A|B"]["value"] == pytest.approx((5 + 2 / 3) / 6)
    assert ts["A|C"]["value"] == pytest.approx((5 + 2 / 3) / 6)
    assert ts["A|B"]["n"] == 6
    v = res["violations"]["C"]
    assert [(x["patient"], x["rule"], x["lesion_ids"]) for x in v] == [
        ("P3", "non_nodal_too_small", ["L4"])
    ]
    assert res["violations"]["A"] == [] and res["violations"]["B"] == []
    for kind in ("by_timepoint", "by_session"):
        drift = {d["reader"]: d for d in res["drift"][kind]}
        assert drift["C"]["drifting"] and not drift["A"]["drifting"] and not drift["B"]["drifting"]
        assert drift["C"]["slope_per_session"] > 0
        assert drift["C"]["bias_by_session"]["2.0"] == pytest.approx(1.16, rel=0.02)
    la = res["lesion_agreement"]
    assert la["source"] == "measurements" and la["n_rows"] == 6 * 3 * 3 + 3  # + C's L4


def test_summary_is_small_and_json_safe(computed):
    import json

    ds, _, res = computed
    s = res.summary()
    json.dumps(s)
    assert s["n_patients"] == 6
    assert set(s["followups"]) == {"1", "2", "all"}
    assert s["drift_flags"]["by_timepoint"] == ["C"]
    assert s["bor_distribution"]["A"]["PR"] == 3  # P1, P4, P6
    stored = AR.RecistAgreementResults.from_run(ds, "recist")
    assert stored["n_discordant"] == res["n_discordant"]
    assert RUNS.load(ds, "recist")["kind"] == "recist"
    for section in stored.sections:
        json.dumps(stored.rows(section))


def test_operator_sdk_and_delegated(longitudinal):
    ds, _, _ = longitudinal
    before = raw_reader_docs(ds)
    out = op("compute_recist_agreement")(ds, n_boot=50, run_key="recist_sdk")
    assert out["n_patients"] == 6 and out["run_key"] == "recist_sdk"
    assert out["followups"]["1"]["n"] == 6
    queued = op("compute_recist_agreement")(ds, n_boot=50, run_key="recist_queued", delegate=True)
    assert queued is not None
    done = run_queued("compute_recist_agreement", ds)
    assert done["run_key"] == "recist_queued"
    assert RUNS.load(ds, "recist_queued")["results"]["n_patients"] == 6
    assert raw_reader_docs(ds) == before


def test_adjudication_in_its_own_field_readers_untouched(longitudinal):
    from fiftyone import ViewField as VF

    from multireader.lineage import records

    ds, _, _ = longitudinal
    AR.compute_recist_agreement(ds, n_boot=0)
    before = raw_reader_docs(ds)
    out = op("adjudicate_response")(
        ds, patient_key="P1", timepoint=1, response="PR",
        reason="A's calipers follow the margin", adjudicator="Dr Adj",
    )  # fmt: skip
    assert out["response"] == "PR" and out["version"] == 0
    assert out["readers"] == {"A": "PR", "B": "SD", "C": "SD"}
    assert raw_reader_docs(ds) == before
    view = ds.match((VF(F.PATIENT_KEY) == "P1") & (VF(F.TIMEPOINT) == 1))
    labels = view.values(AR.ADJUDICATED_FIELD)
    assert len(labels) == 2 and all(x.label == "PR" for x in labels)
    # a second opinion is a new version; the first is kept
    op("adjudicate_response")(
        ds, patient_key="P1", timepoint=1, response="SD", reason="re-read", adjudicator="Dr Z"
    )
    anchor = AR.adjudication_samples(ds, "P1", 1)[0]
    hist = records.history(ds, anchor, AR.ADJUDICATED_FIELD)
    assert [h["label"]["label"] for h in hist] == ["PR", "SD"]
    assert [h["reader"] for h in hist] == ["Dr Adj", "Dr Z"]
    # the run reports it next to the readers' calls
    res = AR.compute_recist_agreement(ds, n_boot=0)
    d = next(x for x in res["discordant"] if (x["patient"], x["timepoint"]) == ("P1", 1))
    assert d["responses"] == {"A": "PR", "B": "SD", "C": "SD"}
    assert d["adjudicated"]["response"] == "SD" and d["adjudicated"]["adjudicator"] == "Dr Z"
    assert res.summary()["n_adjudicated"] == 1
    # the form refuses what is not a response, and a patient-timepoint that is not there
    with pytest.raises(Exception, match="response"):
        op("adjudicate_response")(
            ds, patient_key="P1", timepoint=1, response="XX", reason="r", adjudicator="Dr Z"
        )
    with pytest.raises(Exception, match="no samples of patient 'P9' at timepoint 1"):
        op("adjudicate_response")(
            ds, patient_key="P9", timepoint=1, response="PR", reason="r", adjudicator="Dr Z"
        )
    assert raw_reader_docs(ds) == before


def test_batched_target_responses_equal_stats_recist_on_random_tables():
    """The batched rule (analyses.recist.target_responses) against the per-patient
    stats.recist.target_response on 2,000 random tables: NaNs, nodes, padded targets
    and timepoints, and sums exactly at the -30 % / +20 % / +5 mm thresholds."""
    from multireader.stats import recist as R

    rng = np.random.default_rng(3)
    G, T, K = 2000, 4, 5
    D = np.round(rng.uniform(0, 40, (G, T, K)), 0)
    D[rng.random((G, T, K)) < 0.05] = np.nan
    D[:, 0] = np.round(rng.uniform(5, 40, (G, K)))
    nodal = rng.random((G, K)) < 0.2
    D[:, 1:][
        np.broadcast_to(nodal[:, None, :], D[:, 1:].shape) & (rng.random((G, T - 1, K)) < 0.3)
    ] = 9.0
    nk = rng.integers(1, K + 1, G)
    real = np.arange(K)[None, :] < nk[:, None]
    nt = rng.integers(2, T + 1, G)
    present = np.arange(T)[None, :] < nt[:, None]
    # exact thresholds: -30 % at t1, then +20 % and +5 mm from that nadir at t2
    for i in range(0, G, 7):
        k = nk[i]
        D[i, 0, :k], D[i, 1, :k], D[i, 2, :k] = 10.0, 7.0, 8.4
        nodal[i] = False
    _, got = AR.target_responses(D, nodal, real, present, R.RECIST_1_1)
    for i in range(G):
        k, n = nk[i], nt[i]
        ref = R.target_response(D[i, :n, :k], D[i, :n, :k], nodal[i, :k])
        assert got[i, 1:n].tolist() == ref, i
