"""Lesions in 3-D: instances, matching, detection and volume statistics, and the
dataset analysis on a real DICOM series with each reader's outlines imported as masks.

Known answers come from the planted geometry (voxel counts, which reader found which
lesion); peers are statsmodels (Fleiss' kappa), numpy (Dice) and scipy (Wilcoxon).
"""

from __future__ import annotations

import hashlib
import json

import helpers_lesions
import numpy as np
import pytest
from helpers_lesions import _ball

from multireader.errors import MultireaderError
from multireader.stats import lesions as L

#: the real DICOM series with three readers' outlines (shared with the panel test)
lesion_study = helpers_lesions.lesion_study

# --------------------------------------------------------------------------- pure


def test_components_follow_connectivity():
    m = np.zeros((3, 4, 4), bool)
    m[0, 0, 0] = m[1, 1, 1] = True  # touch at a corner only
    assert L.label_lesions(m, 26)[1] == 1
    assert L.label_lesions(m, 18)[1] == 2
    m2 = np.zeros((3, 4, 4), bool)
    m2[0, 0, 0] = m2[1, 1, 0] = True  # share an edge
    assert L.label_lesions(m2, 18)[1] == 1
    assert L.label_lesions(m2, 6)[1] == 2
    with pytest.raises(MultireaderError, match="connectivity"):
        L.label_lesions(m, 8)


def test_instances_keep_the_readers_own_values():
    v = np.zeros((2, 3, 3), np.uint16)
    v[0, 0, 0] = 7
    v[1, 2, 2] = 300
    v[0, 2, 2] = 7  # not connected, same instance
    lab, n, values = L.instances_from_labels(v)
    assert n == 2 and values == [7, 300]
    assert set(np.unique(lab[v == 7])) == {1} and set(np.unique(lab[v == 300])) == {2}


def test_volumes_centroids_and_matching_rules():
    shape = (10, 20, 20)
    spacing = (2.5, 0.8, 0.6)
    a = _ball(shape, (4, 6, 6), (2, 3, 3)).astype(np.uint8)
    a[_ball(shape, (5, 15, 15), (1, 2, 2))] = 1
    b = np.roll(a, 1, axis=2)  # same lesions, shifted one column
    la = L.lesions_of(*L.label_lesions(a), spacing)
    lb = L.lesions_of(*L.label_lesions(b), spacing)
    assert la.n == lb.n == 2
    np.testing.assert_allclose(la.volume_ml.sum(), a.sum() * 2.5 * 0.8 * 0.6 / 1000)
    dice = L.pair_scores(la, lb, "dice")
    # the matched diagonal equals a direct numpy Dice of each lesion
    for i in range(2):
        ma, mb = la.labels == i + 1, lb.labels == i + 1
        direct = 2 * (ma & mb).sum() / (ma.sum() + mb.sum())
        assert dice[i, i] == pytest.approx(direct)
    assert L.match_pair(dice, "dice", 0.1) == [(0, 0), (1, 1)]
    dist = L.pair_scores(la, lb, "centroid")
    assert dist[0, 0] == pytest.approx(0.6, abs=1e-9)  # one column of 0.6 mm
    assert L.match_pair(dist, "centroid", 0.5) == []
    assert L.match_pair(dist, "centroid", 1.0) == [(0, 0), (1, 1)]


def test_match_readers_records_who_found_each_lesion():
    shape = (8, 30, 30)
    sp = (2.5, 0.7, 0.7)
    big = _ball(shape, (3, 8, 8), (2, 4, 4))
    small = _ball(shape, (4, 22, 22), (1, 2, 2))
    r1 = L.lesions_of(*L.label_lesions(big | small), sp)
    r2 = L.lesions_of(*L.label_lesions(big), sp)  # misses the small one
    r3 = L.lesions_of(*L.label_lesions(small), sp)  # finds only the small one
    cand = L.match_readers([r1, r2, None, r3], "dice", 0.1)
    found = cand >= 0
    assert found.shape == (2, 4)
    assert sorted(found.sum(1).tolist()) == [2, 2]
    assert not found[:, 2].any()  # the absent reader finds nothing
    np.testing.assert_array_equal(L.found_by_k(found), [0, 2, 0, 0])


def test_fleiss_kappa_on_found_equals_statsmodels():
    from statsmodels.stats.inter_rater import fleiss_kappa

    from multireader.stats import agreement as A

    rng = np.random.default_rng(3)
    found = rng.random((40, 4)) < 0.7
    ratings = L.found_ratings(found)
    table = np.stack([(ratings == 0).sum(1), (ratings == 1).sum(1)], 1)
    assert A.fleiss_kappa(ratings, 2) == pytest.approx(fleiss_kappa(table), abs=1e-12)


def test_detection_counts_and_cv():
    d = L.detection_counts(np.array([4, 3]), np.array([[0, 3], [3, 0]]))
    assert d["f1"][0, 1] == pytest.approx(6 / 7)
    assert d["sensitivity"][0, 1] == pytest.approx(3 / 4)  # reader 0 as reference
    assert d["ppv"][0, 1] == pytest.approx(1.0)
    v = np.array([[1.0, 1.2, np.nan], [2.0, 2.0, 2.0], [1.0, np.nan, np.nan]])
    rms, cv = L.within_lesion_cv(v)
    expected = np.std([1.0, 1.2], ddof=1) / 1.1
    assert cv[0] == pytest.approx(expected) and cv[1] == 0 and np.isnan(cv[2])
    assert rms == pytest.approx(np.sqrt((expected**2 + 0) / 2))


def test_reader_volume_ratio_finds_the_reader_who_draws_larger():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.2, 3.0, 30)
    v = np.stack([truth * rng.normal(1, 0.03, 30) for _ in range(4)], 1)
    v[:, 2] *= 1.12
    ratio, logs = L.reader_volume_ratio(v)
    assert ratio[2] == pytest.approx(1.12, abs=0.03)
    assert all(abs(ratio[r] - 1) < 0.06 for r in (0, 1, 3))


# --------------------------------------------------------------- on a real series


def _reader_hashes(dataset):
    from multireader.core import fields as F

    out = {}
    for name in F.reader_fields(dataset):
        vals = dataset.values(name)
        out[name] = hashlib.sha256(
            json.dumps(
                [None if v is None else v.to_dict() for v in vals], sort_keys=True, default=str
            ).encode()  # fmt: skip
        ).hexdigest()
    return out


def test_lesion_agreement_on_a_real_series(lesion_study):
    from multireader.analyses import lesions as AL
    from multireader.core import runs

    dataset, study, outlines, shape = lesion_study
    before = _reader_hashes(dataset)
    res = AL.compute_lesion_agreement(dataset, n_boot=200, num_workers=1)
    assert _reader_hashes(dataset) == before  # reader fields byte-identical
    assert res["readers"] == ["R1", "R2", "R3"]
    assert res["n_series"] == 1 and res["n_lesions"] == 2
    assert res["found_by_k"] == {"1": 0, "2": 1, "3": 1}
    spacing = (2.5, 0.8, 0.6)  # thickness, then PixelSpacing
    voxel_ml = np.prod(spacing) / 1000
    by_found = {x["found_by"]: x for x in res["lesions"]}
    big = by_found[3]
    assert big["readers_found"] == ["R1", "R2", "R3"]
    assert by_found[2]["readers_missed"] == ["R3"]
    lab, _ = L.label_lesions(outlines["R1"])
    big_mask = lab == lab[4, 14, 14]
    assert big["volume_ml"][0] == pytest.approx(big_mask.sum() * voxel_ml)
    r2_big = outlines["R2"] & (
        L.label_lesions(outlines["R2"])[0] == L.label_lesions(outlines["R2"])[0][4, 14, 14]
    )
    direct = 2 * (big_mask & r2_big).sum() / (big_mask.sum() + r2_big.sum())
    assert big["pairs"]["R1|R2"]["dice"] == pytest.approx(direct)
    # detection: R3 found 1 of R1's 2 lesions
    f1 = res["detection"]["f1"]["value"]
    assert f1[0][2] == pytest.approx(2 * 1 / (2 + 1))
    assert res["detection"]["sensitivity"]["value"][0][2] == pytest.approx(0.5)
    assert res["detection"]["ppv"]["value"][0][2] == pytest.approx(1.0)
    # stored as a run, and the per-slice lesion labels link slices by instance
    stored = runs.load(dataset, "lesions")
    assert stored["kind"] == "lesions" and stored["results"]["n_lesions"] == 2
    dets = [d for v in dataset.values("lesions") if v for d in v.detections]
    by_lesion = {}
    for d in dets:
        by_lesion.setdefault(d.lesion_id, set()).add(d.instance.id)
    assert all(len(s) == 1 for s in by_lesion.values())
    big_r1 = [d for d in dets if d.lesion_id == big["lesion_id"] and d.label == "R1"]
    assert len(big_r1) == np.flatnonzero(big_mask.any((1, 2))).size
    # consensus volumes are new fields; the series score is on every slice
    assert dataset.has_field("consensus_staple_volume")
    scores = [
        s
        for s, u in zip(
            dataset.values("lesion_disagreement"),
            dataset.values("series_instance_uid"),
            strict=True,
        )
        if u == study.series_uid
    ]
    assert len(set(scores)) == 1 and 0 < scores[0] < 1


def test_3d_consensus_equals_staple_and_majority_on_the_whole_volume(lesion_study):
    """The driver fits STAPLE on the union voxels with the rest as background: that must
    equal STAPLE on the full stacked volume, and the majority a direct vote count."""
    from PIL import Image

    from multireader.analyses import lesions as AL
    from multireader.stats import masks as M

    dataset, study, outlines, shape = lesion_study
    res = AL.compute_lesion_agreement(dataset, n_boot=0, num_workers=1)
    cons = res["series"][0]["consensus"]
    stack = np.stack([outlines[r] for r in ("R1", "R2", "R3")])
    full = M.Staple().fit(stack.reshape(3, shape[0] * shape[1], shape[2]))
    np.testing.assert_allclose(cons["staple"]["sensitivity"], full.sensitivity_, rtol=1e-9)
    np.testing.assert_allclose(cons["staple"]["specificity"], full.specificity_, rtol=1e-9)
    ids = dataset.select_by("series_instance_uid", [study.series_uid]).sort_by("slice_index")
    written = np.stack(
        [np.asarray(Image.open(p)) > 0 for p in ids.values("consensus_staple_volume.mask_path")]
    )
    np.testing.assert_array_equal(written, (full.probability_ > 0.5).reshape(shape))
    majority = np.stack(
        [np.asarray(Image.open(p)) > 0 for p in ids.values("consensus_majority_volume.mask_path")]
    )
    np.testing.assert_array_equal(majority, stack.sum(0) * 2 > 3)
    assert cons["majority"]["volume_ml"] == pytest.approx(
        (stack.sum(0) * 2 > 3).sum() * 2.5 * 0.8 * 0.6 / 1000
    )


def test_lesion_agreement_errors_name_the_problem(dataset, lesion_study):
    from multireader.analyses import lesions as AL

    ds = lesion_study[0]
    with pytest.raises(MultireaderError, match="at least two readers"):
        AL.compute_lesion_agreement(ds, readers=["R1"], n_boot=0)
    with pytest.raises(MultireaderError, match="rule"):
        AL.compute_lesion_agreement(ds, rule="nearest", n_boot=0)
    with pytest.raises(MultireaderError, match="no masks"):
        AL.compute_lesion_agreement(ds, readers=["R9"], n_boot=0)


def test_operator_from_the_sdk_the_form_and_a_delegated_worker(lesion_study):
    from helpers_plugin import form, op, run_queued

    from multireader.lineage import audit

    dataset = lesion_study[0]
    props = form("compute_lesion_agreement", dataset)
    assert {"readers", "rule", "min_overlap", "connectivity", "instances", "run_key"} <= set(props)
    assert "max_distance_mm" in form("compute_lesion_agreement", dataset, {"rule": "centroid"})
    out = op("compute_lesion_agreement")(dataset, n_boot=50)
    assert out["n_lesions"] == 2 and out["found_by"] == "0 by 1, 1 by 2, 1 by 3"
    assert {r["reader"] for r in out["readers"]} == {"R1", "R2", "R3"}
    assert len(json.dumps(out)) < 20_000  # small, JSON-safe
    op("compute_lesion_agreement")(dataset, n_boot=0, run_key="lesions_queued", delegate=True)
    queued = run_queued("compute_lesion_agreement", dataset)
    assert queued["run_key"] == "lesions_queued" and queued["n_lesions"] == 2
    actions = [e["action"] for e in audit.entries(dataset)]
    assert actions.count(f"{op('compute_lesion_agreement').uri}") >= 2 or any(
        "compute_lesion_agreement" in a for a in actions
    )


def test_lesion_runs_are_listed_newest_first(lesion_study):
    from multireader.analyses import lesions as AL
    from multireader.core import runs
    from multireader.figures.lesion_matrix import lesion_runs

    dataset = lesion_study[0]
    for key in ("lesions_b", "lesions_a"):  # a is stored last: newest
        AL.compute_lesion_agreement(dataset, n_boot=0, num_workers=1, run_key=key)
    stamps = {k: runs.load(dataset, k)["config"]["created_at"] for k in ("lesions_a", "lesions_b")}
    assert stamps["lesions_a"] > stamps["lesions_b"]
    assert lesion_runs(dataset) == ["lesions_a", "lesions_b"]
    assert runs.newest_first(dataset, "lesions") == ["lesions_a", "lesions_b"]
