"""Per-sample disagreement scores against plain-loop definitions and hand-worked items."""

import itertools
import math

import numpy as np
import pytest

from multireader.stats import disagreement as D


def _loop_fields(row, k, ordered):
    """The documented definitions, one item at a time, with no numpy tricks."""
    reads = [int(x) for x in row if x >= 0]
    m = len(reads)
    out = {"n_readers": m}
    if m >= 2:
        pairs = list(itertools.permutations(range(m), 2))
        if ordered:
            dis = sum(abs(reads[a] - reads[b]) for a, b in pairs) / len(pairs) / (k - 1)
        else:
            dis = sum(reads[a] != reads[b] for a, b in pairs) / len(pairs)
        out["disagreement"] = dis
        shares = [reads.count(c) / m for c in set(reads)]
        h = -sum(p * math.log2(p) for p in shares)
        denom = math.log2(min(m, k))
        out["vote_entropy"] = h / denom
        out["readers_disagree"] = len(set(reads)) > 1
    else:
        out["disagreement"] = None
        out["vote_entropy"] = None
        out["readers_disagree"] = False
    out["majority_share"] = max(reads.count(c) for c in set(reads)) / m if m else None
    if ordered and m:
        out["ordinal_range"] = max(reads) - min(reads)
        out["ordinal_std"] = float(np.std(reads))
    return out


@pytest.mark.parametrize("ordered", [False, True])
def test_vectorised_fields_equal_the_plain_definitions(ordered):
    rng = np.random.default_rng(3)
    k = 5
    codes = rng.integers(0, k, size=(400, 4))
    codes[rng.random(codes.shape) < 0.3] = -1  # missing reads, some items fully missing
    got = D.categorical_disagreement(codes, k, ordered)
    assert (codes < 0).all(axis=1).any() and ((codes >= 0).sum(axis=1) == 1).any()
    for i, row in enumerate(codes):
        want = _loop_fields(row, k, ordered)
        assert got["n_readers"][i] == want["n_readers"]
        assert bool(got["readers_disagree"][i]) == want["readers_disagree"]
        for name in (
            "disagreement",
            "vote_entropy",
            "majority_share",
            "ordinal_range",
            "ordinal_std",
        ):
            if name not in want:  # nominal scale, or no reads at all
                assert name not in got if not ordered else np.isnan(got[name][i])
                continue
            if want[name] is None:
                assert np.isnan(got[name][i]), (name, row)
            else:
                assert got[name][i] == pytest.approx(want[name], abs=1e-12), (name, row)


def test_hand_worked_items():
    # 4 classes, ordinal: [0, 0, 3] -> pairs (ordered) 6: |0-3| four times, 0 twice -> 12/6/3
    codes = np.array([[0, 0, 3, -1], [1, 1, 1, 1], [2, -1, -1, -1], [-1, -1, -1, -1]])
    ordinal = D.categorical_disagreement(codes, 4, True)
    assert ordinal["disagreement"][0] == pytest.approx(12 / 6 / 3)
    nominal = D.categorical_disagreement(codes, 4, False)
    assert nominal["disagreement"][0] == pytest.approx(4 / 6)
    # every reader agreeing: 0, entropy 0, share 1, no disagreement flag
    assert nominal["disagreement"][1] == 0 and nominal["vote_entropy"][1] == 0
    assert nominal["majority_share"][1] == 1 and not nominal["readers_disagree"][1]
    # one read: nothing to disagree with -> undefined (NaN, written as None), not 0
    assert np.isnan(nominal["disagreement"][2]) and not nominal["readers_disagree"][2]
    # no reads at all
    assert nominal["n_readers"][3] == 0 and np.isnan(nominal["majority_share"][3])
    assert ordinal["ordinal_range"][0] == 3 and np.isnan(ordinal["ordinal_range"][3])


def test_scores_in_unit_interval_and_extremes():
    codes = np.array([[0, 3], [0, 0], [0, 1]])
    out = D.categorical_disagreement(codes, 4, True)
    assert list(out["disagreement"]) == pytest.approx([1.0, 0.0, 1 / 3])
    rng = np.random.default_rng(0)
    many = rng.integers(-1, 6, size=(1000, 7))
    for ordered in (False, True):
        dis = D.categorical_disagreement(many, 6, ordered)["disagreement"]
        ok = dis[~np.isnan(dis)]
        assert ok.min() >= 0 and ok.max() <= 1


def test_combine_means_the_defined_kinds():
    a = np.array([0.2, np.nan, np.nan, 1.0])
    b = np.array([0.4, 0.6, np.nan, np.nan])
    got = D.combine([a, b])
    assert got[0] == pytest.approx(0.3) and got[1] == pytest.approx(0.6)
    assert np.isnan(got[2]) and got[3] == 1.0


def test_score_spread():
    s = np.array([[1.0, 3.0, np.nan], [np.nan, np.nan, np.nan], [2.0, 2.0, 2.0]])
    out = D.score_spread(s)
    assert out["score_range"][0] == 2 and out["score_std"][0] == pytest.approx(1.0)
    assert np.isnan(out["score_range"][1]) and out["score_range"][2] == 0
