"""Box IoU, matching, pairwise agreement and weighted box fusion."""

import itertools

import numpy as np
import pytest

from multireader.stats.boxes import (
    box_iou,
    box_pair_agreement,
    match_boxes,
    pairwise_box_agreement,
    weighted_box_fusion,
)


# --------------------------------------------------------------------------- helpers
def _plain_iou(p, q):
    ax1, ay1, aw, ah = p
    bx1, by1, bw, bh = q
    iw = max(0.0, min(ax1 + aw, bx1 + bw) - max(ax1, bx1))
    ih = max(0.0, min(ay1 + ah, by1 + bh) - max(ay1, by1))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _random_boxes(rng, n, scale=10.0):
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(0.5, scale / 2, (n, 2))
    return np.hstack([xy, wh])


def _brute_best_total(a, b, thr, la=None, lb=None):
    """Largest total IoU over all one-to-one matchings of eligible pairs (small n, m)."""
    n, m = len(a), len(b)
    best = 0.0
    for k in range(min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                total = 0.0
                ok = True
                for i, j in zip(rows, cols, strict=True):
                    v = _plain_iou(a[i], b[j])
                    if v < thr or (la is not None and la[i] != lb[j]):
                        ok = False
                        break
                    total += v
                if ok:
                    best = max(best, total)
    return best


def _plain_wbf(readers, scores, thr):
    """WBF as written in Solovyev et al. (2021), one label, plain lists."""
    items = []
    for r, (bs, ss) in enumerate(zip(readers, scores, strict=True)):
        for k, (b, s) in enumerate(zip(bs, ss, strict=True)):
            items.append((s, r, k, [b[0], b[1], b[0] + b[2], b[1] + b[3]]))
    items.sort(key=lambda t: -t[0])
    clusters, fused = [], []
    for s, r, k, c in items:
        best, best_iou = -1, thr
        for j, f in enumerate(fused):
            v = _plain_iou(
                [c[0], c[1], c[2] - c[0], c[3] - c[1]], [f[0], f[1], f[2] - f[0], f[3] - f[1]]
            )
            if v > best_iou:
                best, best_iou = j, v
        if best < 0:
            clusters.append([(s, r, k, c)])
            fused.append(list(c))
        else:
            clusters[best].append((s, r, k, c))
            tot = sum(m[0] for m in clusters[best])
            fused[best] = [sum(m[0] * m[3][d] for m in clusters[best]) / tot for d in range(4)]
    out = []
    for cl, f in zip(clusters, fused, strict=True):
        nr = len({m[1] for m in cl})
        score = sum(m[0] for m in cl) / len(cl) * nr / len(readers)
        out.append(
            (score, [f[0], f[1], f[2] - f[0], f[3] - f[1]], sorted((m[1], m[2]) for m in cl))
        )
    return sorted(out, key=lambda t: -t[0])


# --------------------------------------------------------------------------- IoU
def test_box_iou_hand_worked():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 0, 2, 2], [5, 5, 1, 1], [0, 0, 2, 2], [0.5, 0.5, 1, 1]])
    np.testing.assert_allclose(box_iou(a, b), [[2 / 6, 0.0, 1.0, 1 / 4]])


def test_box_iou_random_against_plain_loops():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 12), _random_boxes(rng, 9)
    ref = np.array([[_plain_iou(p, q) for q in b] for p in a])
    np.testing.assert_allclose(box_iou(a, b), ref, atol=1e-12)
    assert (ref > 0).any()


def test_box_iou_edge_cases():
    assert box_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert box_iou([], []).shape == (0, 0)
    zero = np.array([[1.0, 1.0, 0.0, 0.0]])
    assert box_iou(zero, zero)[0, 0] == 0.0  # degenerate union: defined as 0
    with pytest.raises(ValueError, match=r"a must be an \(n, 4\)"):
        box_iou(np.ones((2, 3)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="b has a negative width"):
        box_iou(np.ones((1, 4)), np.array([[0, 0, -1, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        box_iou(np.array([[0, 0, np.nan, 1]]), np.ones((1, 4)))


# --------------------------------------------------------------------------- matching
def test_match_boxes_hand_worked_prefers_total_iou():
    # a0 overlaps b0 (IoU 0.6) and b1 (IoU 0.8); a1 overlaps only b1 (IoU 0.55).
    # Greedy would pair a0-b1 and leave a1; the optimum pairs a0-b0 and a1-b1.
    a = np.array([[0.0, 0, 10, 10], [4.0, 0, 10, 10]])
    b = np.array([[-2.5, 0, 10, 10], [1.111111, 0, 10, 10]])
    ious = box_iou(a, b)
    assert ious[0, 1] > ious[0, 0] and ious[1, 1] >= 0.5 and ious[1, 0] < 0.5
    m = match_boxes(a, b, iou_threshold=0.5)
    np.testing.assert_array_equal(m["pairs"], [[0, 0], [1, 1]])
    np.testing.assert_allclose(m["ious"], [ious[0, 0], ious[1, 1]])
    assert m["unmatched_a"].size == 0 and m["unmatched_b"].size == 0


def test_match_boxes_threshold_and_labels():
    a = np.array([[0.0, 0, 10, 10], [50.0, 50, 5, 5]])
    b = np.array([[1.0, 0, 10, 10]])
    m = match_boxes(a, b, iou_threshold=0.5)
    np.testing.assert_array_equal(m["pairs"], [[0, 0]])
    np.testing.assert_array_equal(m["unmatched_a"], [1])
    m = match_boxes(a, b, iou_threshold=0.95)  # IoU 9/11 < 0.95: dropped
    assert m["pairs"].shape == (0, 2) and m["unmatched_b"].tolist() == [0]
    m = match_boxes(a, b, labels_a=["mass", "mass"], labels_b=["calc"], match_labels=True)
    assert m["pairs"].shape == (0, 2)
    m = match_boxes(a, b, labels_a=["mass", "mass"], labels_b=["mass"], match_labels=True)
    np.testing.assert_array_equal(m["pairs"], [[0, 0]])


def test_match_boxes_random_against_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(40):
        a = _random_boxes(rng, rng.integers(0, 5), scale=6)
        b = _random_boxes(rng, rng.integers(0, 5), scale=6)
        la = rng.choice(["x", "y"], len(a)) if trial % 2 else None
        lb = rng.choice(["x", "y"], len(b)) if trial % 2 else None
        thr = 0.3
        m = match_boxes(a, b, thr, la, lb, match_labels=la is not None)
        assert (m["ious"] >= thr).all()
        assert m["ious"].sum() == pytest.approx(_brute_best_total(a, b, thr, la, lb))
        assert len(m["pairs"]) + len(m["unmatched_a"]) == len(a)
        assert len(m["pairs"]) + len(m["unmatched_b"]) == len(b)


def test_match_boxes_bad_arguments():
    with pytest.raises(ValueError, match="iou_threshold"):
        match_boxes(np.ones((1, 4)), np.ones((1, 4)), iou_threshold=0.0)
    with pytest.raises(ValueError, match="needs labels_a and labels_b"):
        match_boxes(np.ones((1, 4)), np.ones((1, 4)), match_labels=True)
    with pytest.raises(ValueError, match="labels_a has 2 entries for 1 boxes"):
        match_boxes(np.ones((1, 4)), np.ones((1, 4)), labels_a=["a", "b"])


# --------------------------------------------------------------------------- agreement
def test_box_pair_agreement_values():
    a = np.array([[0.0, 0, 10, 10], [50.0, 50, 5, 5]])
    b = np.array([[1.0, 0, 10, 10]])
    out = box_pair_agreement(a, b)
    assert out["f1"] == pytest.approx(2 * 1 / 3)
    assert out["mean_iou"] == pytest.approx(90 / 110)
    assert (out["n_matched"], out["unmatched_a"], out["unmatched_b"]) == (1, 1, 0)
    empty = np.zeros((0, 4))
    assert box_pair_agreement(empty, empty) == {
        "f1": 1.0,
        "mean_iou": None,
        "n_matched": 0,
        "unmatched_a": 0,
        "unmatched_b": 0,
    }
    assert box_pair_agreement(a, empty)["f1"] == 0.0


def test_pairwise_box_agreement_with_missing_reader():
    r0 = np.array([[0.0, 0, 10, 10], [50.0, 50, 5, 5]])
    r2 = np.array([[1.0, 0, 10, 10]])
    r3 = np.array([[0.5, 0, 10, 10], [50.0, 50, 5, 5]])
    out = pairwise_box_agreement([r0, None, r2, r3])
    assert out["n_readers"] == 3
    assert out["f1"][1][0] is None and out["mean_iou"][0][1] is None
    assert out["f1"][0][0] == 1.0 and out["mean_iou"][2][2] == 1.0
    for i, j, a, b in [(0, 2, r0, r2), (0, 3, r0, r3), (2, 3, r2, r3)]:
        ref = box_pair_agreement(a, b)
        assert out["f1"][i][j] == out["f1"][j][i] == pytest.approx(ref["f1"])
        assert out["mean_iou"][i][j] == pytest.approx(ref["mean_iou"])
    # Only the small box at (50, 50): drawn by readers 0 and 3, missed by reader 2.
    assert out["n_unmatched"] == 2


def test_pairwise_box_agreement_edge_cases():
    empty = np.zeros((0, 4))
    out = pairwise_box_agreement([empty, empty])
    assert out["f1"] == [[1.0, 1.0], [1.0, 1.0]]
    assert out["mean_iou"] == [[None, None], [None, None]] and out["n_unmatched"] == 0
    out = pairwise_box_agreement([np.ones((2, 4))])
    assert out["n_unmatched"] == 0 and out["f1"] == [[1.0]]
    out = pairwise_box_agreement([None, None])
    assert out["n_readers"] == 0 and out["f1"] == [[None, None], [None, None]]
    with pytest.raises(ValueError, match="labels_per_reader must be a list"):
        pairwise_box_agreement([empty, empty], labels_per_reader=[["a"]])


# --------------------------------------------------------------------------- fusion
def test_wbf_hand_worked_two_offset_boxes():
    out = weighted_box_fusion(
        [np.array([[0.0, 0, 10, 10]]), np.array([[1.0, 2, 10, 10]])],
        scores_per_reader=[[0.9], [0.3]],
    )
    # Corners weighted 0.9 : 0.3 -> x1 = 0.3*1/1.2 = 0.25, y1 = 0.3*2/1.2 = 0.5, same size.
    np.testing.assert_allclose(out["boxes"], [[0.25, 0.5, 10.0, 10.0]])
    # Mean score 0.6, both of 2 readers contributed.
    np.testing.assert_allclose(out["scores"], [0.6])
    assert out["n_readers"].tolist() == [2]
    assert out["members"] == [[(0, 0), (1, 0)]]
    assert out["labels"].tolist() == [None]


def test_wbf_default_scores_and_reader_share():
    boxes = [np.array([[0.0, 0, 10, 10]]), np.array([[2.0, 0, 10, 10]]), np.zeros((0, 4)), None]
    out = weighted_box_fusion(boxes)
    np.testing.assert_allclose(out["boxes"], [[1.0, 0.0, 10.0, 10.0]])  # plain mean
    np.testing.assert_allclose(out["scores"], [2 / 3])  # 2 of 3 present readers


def test_wbf_disjoint_boxes_stay_separate_and_min_readers():
    far = np.array([[100.0, 100, 5, 5]])
    boxes = [np.array([[0.0, 0, 10, 10]]), np.vstack([[0.5, 0, 10, 10], far])]
    out = weighted_box_fusion(boxes)
    assert len(out["boxes"]) == 2
    assert out["n_readers"].tolist() == [2, 1]
    np.testing.assert_allclose(out["boxes"][1], far[0])
    np.testing.assert_allclose(out["scores"], [1.0, 0.5])
    out = weighted_box_fusion(boxes, min_readers=2)
    assert len(out["boxes"]) == 1 and out["members"] == [[(0, 0), (1, 0)]]
    out = weighted_box_fusion(boxes, min_readers=3)
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,)


def test_wbf_clusters_only_same_label():
    boxes = [np.array([[0.0, 0, 10, 10]]), np.array([[0.0, 0, 10, 10]])]
    out = weighted_box_fusion(boxes, labels_per_reader=[["mass"], ["calcification"]])
    assert sorted(out["labels"].tolist()) == ["calcification", "mass"]
    assert out["n_readers"].tolist() == [1, 1]
    out = weighted_box_fusion(boxes, labels_per_reader=[["mass"], ["mass"]])
    assert out["labels"].tolist() == ["mass"] and out["n_readers"].tolist() == [2]


def test_wbf_random_against_plain_implementation():
    rng = np.random.default_rng(2)
    for _ in range(20):
        n_readers = int(rng.integers(2, 5))
        truth = _random_boxes(rng, 3, scale=30)
        readers, scores = [], []
        for _ in range(n_readers):
            keep = rng.random(3) < 0.8
            jitter = rng.normal(0, 0.4, (int(keep.sum()), 4))
            b = truth[keep] + jitter
            b[:, 2:] = np.abs(b[:, 2:])
            readers.append(b)
            scores.append(rng.uniform(0.2, 1.0, len(b)))
        out = weighted_box_fusion(readers, scores, iou_threshold=0.55)
        ref = _plain_wbf(readers, scores, 0.55)
        assert len(out["boxes"]) == len(ref)
        np.testing.assert_allclose(out["scores"], [r[0] for r in ref], atol=1e-12)
        np.testing.assert_allclose(out["boxes"], [r[1] for r in ref], atol=1e-9)
        assert [sorted(m) for m in out["members"]] == [r[2] for r in ref]


def test_wbf_edge_cases_and_errors():
    out = weighted_box_fusion([None, None])
    assert out["boxes"].shape == (0, 4) and out["members"] == []
    out = weighted_box_fusion([np.zeros((0, 4))])
    assert out["boxes"].shape == (0, 4)
    one = weighted_box_fusion([np.array([[1.0, 2, 3, 4]])], scores_per_reader=[[0.7]])
    np.testing.assert_allclose(one["boxes"], [[1, 2, 3, 4]])
    np.testing.assert_allclose(one["scores"], [0.7])
    with pytest.raises(ValueError, match="min_readers"):
        weighted_box_fusion([np.ones((1, 4))], min_readers=0)
    with pytest.raises(ValueError, match=r"scores_per_reader\[0\] has 2 entries for 1 boxes"):
        weighted_box_fusion([np.ones((1, 4))], scores_per_reader=[[0.1, 0.2]])
    with pytest.raises(ValueError, match="scores_per_reader must be a list"):
        weighted_box_fusion([np.ones((1, 4))], scores_per_reader=[[1.0], [1.0]])
