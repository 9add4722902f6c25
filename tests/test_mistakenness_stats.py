"""Mistakenness scores against a hand-worked example and their peer implementations.

CROWDLAB is checked against a four-item example worked out by hand with exact fractions
and against cleanlab's ``get_label_quality_multiannotator`` (the authors' own code) on
random panels; brain's classification mistakenness against ``fiftyone.brain`` run on a
real dataset. cleanlab is AGPL: it is only measured against here, never imported by
``multireader``.
"""

from __future__ import annotations

import doctest
import math
import re
import warnings
from fractions import Fraction as Fr

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from multireader.stats import mistakenness as M

nan = np.nan
TOL = 1e-9  # agreement asked of cleanlab comparisons (achieved: < 1e-15)


# ---------------------------------------------------------------- helpers


def _panel(seed: int):
    """A random panel around a hidden truth: n items, readers of varying accuracy (some
    worse than always answering the commonest class), reads missing at random (every
    item and every reader keeps at least one read, some items have two or more), and a
    model whose probabilities are a Dirichlet draw tilted toward the truth (on a quarter
    of the seeds not tilted at all: a useless model)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 401))
    r = int(rng.integers(2, 7))
    k = int(rng.integers(2, 6))
    truth = rng.integers(0, k, n)
    acc = rng.uniform(0.2, 0.95, r)
    wrong = (truth[:, None] + rng.integers(1, k, (n, r))) % k  # a uniformly wrong class
    y = np.where(rng.random((n, r)) < acc, truth[:, None], wrong)
    y[rng.random((n, r)) < rng.uniform(0.0, 0.6)] = -1
    for i in np.flatnonzero((y >= 0).sum(axis=1) == 0):  # every item keeps a read
        j = rng.integers(r)
        y[i, j] = truth[i] if rng.random() < acc[j] else wrong[i, j]
    for j in np.flatnonzero((y >= 0).sum(axis=0) == 0):  # every reader reads something
        y[rng.integers(n), j] = rng.integers(k)
    if not ((y >= 0).sum(axis=1) > 1).any():
        y[0] = truth[0]
    tilt = 0.0 if seed % 4 == 3 else rng.uniform(0.5, 6.0)
    alpha = np.ones((n, k))
    alpha[np.arange(n), truth] += tilt
    p = np.array([rng.dirichlet(a) for a in alpha])
    return y, p


def _to_nan(y: np.ndarray) -> np.ndarray:
    """Our -1 for "not read" as cleanlab's NaN."""
    return np.where(y >= 0, y, np.nan).astype(float)


def _cleanlab_crowdlab(y: np.ndarray, p: np.ndarray):
    """cleanlab's CROWDLAB; also whether it broke a majority-vote tie at random."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = get_label_quality_multiannotator(
            _to_nan(y),
            p,
            consensus_method="best_quality",
            quality_method="crowdlab",
            return_detailed_quality=True,
            return_weights=True,
            verbose=False,
        )
    randomised = any("by random selection" in str(w.message) for w in caught)
    return out, randomised


def _assert_same_as_cleanlab(ours: M.CrowdlabResult, theirs, y: np.ndarray, what: str):
    from cleanlab.multiannotator import _get_annotator_agreement_with_annotators

    lq = theirs["label_quality"]
    assert_array_equal(ours.consensus, lq["consensus_label"].to_numpy(), err_msg=what)
    assert_allclose(
        ours.consensus_quality, lq["consensus_quality_score"], rtol=0, atol=TOL, err_msg=what
    )
    detailed = theirs["detailed_label_quality"].to_numpy()
    assert_array_equal(np.isnan(ours.label_quality), y < 0, err_msg=what)
    assert_array_equal(np.isnan(detailed), y < 0, err_msg=what)
    assert_allclose(ours.label_quality, detailed, rtol=0, atol=TOL, err_msg=what)
    assert ours.model_weight == pytest.approx(theirs["model_weight"], rel=0, abs=TOL), what
    assert_allclose(ours.reader_weights, theirs["annotator_weight"], rtol=0, atol=TOL)
    n_reads = (y >= 0).sum(axis=1)
    agree = _get_annotator_agreement_with_annotators(_to_nan(y), n_reads, verbose=False)
    assert_allclose(ours.reader_agreement, agree, rtol=0, atol=TOL, err_msg=what)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- CROWDLAB by hand


def test_crowdlab_hand_worked_example():
    """CROWDLAB (Goh, Tkachenko & Mueller 2022, arXiv:2210.06812, section 3) worked out
    by hand on four items, three readers A, B, C and three classes.

    The model breaks item 3's 1-1 tie toward class 1; the reliability-weighted
    posterior then prefers reader A's class 0 (A agrees with the others more than B
    does), the consensus changes, and the weights are recomputed against it: the model
    now disagrees with the consensus once, which halves its weight.
    """
    y = np.array(
        [
            [0, 0, 0],  # item 0: all three say 0
            [1, -1, 1],  # item 1: A and C say 1, B did not read it
            [2, 2, -1],  # item 2: A and B say 2
            [0, 1, -1],  # item 3: A says 0, B says 1 (a tie)
        ]
    )
    p = np.array(
        [
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.2, 0.7],
            [0.45, 0.5, 0.05],
        ]
    )
    pf = [
        [Fr(6, 10), Fr(3, 10), Fr(1, 10)],
        [Fr(2, 10), Fr(7, 10), Fr(1, 10)],
        [Fr(1, 10), Fr(2, 10), Fr(7, 10)],
        [Fr(9, 20), Fr(10, 20), Fr(1, 20)],
    ]
    k = 3
    reads = [[j for j in range(3) if y[i, j] >= 0] for i in range(4)]

    # Reads per item 3, 2, 2, 2: mean 9/4, sqrt(9/4) = 3/2.
    sqrt_mean_reads = Fr(3, 2)
    assert math.isclose(math.sqrt(np.mean([len(r) for r in reads])), 3 / 2)

    # Each reader's agreement with the *other* readers, pooled over shared items:
    #   A: item 0 2/2, item 1 1/1, item 2 1/1, item 3 0/1 -> (2+1+1+0)/(2+1+1+1) = 4/5
    #   B: item 0 2/2, item 2 1/1, item 3 0/1            -> (2+1+0)/(2+1+1)     = 3/4
    #   C: item 0 2/2, item 1 1/1                        -> (2+1)/(2+1)         = 1
    def agreement(j):
        same = sum(
            sum(y[i, o] == y[i, j] for o in reads[i] if o != j) for i in range(4) if j in reads[i]
        )
        others = sum(len(reads[i]) - 1 for i in range(4) if j in reads[i])
        return Fr(int(same), others)

    a = [agreement(j) for j in range(3)]
    assert a == [Fr(4, 5), Fr(3, 4), Fr(1)]

    def weights_and_posterior(consensus):
        # P: mean share of readers agreeing with the consensus, items read twice or more
        share = [
            Fr(sum(int(y[i, j] == consensus[i]) for j in reads[i]), len(reads[i])) for i in range(4)
        ]
        like = sum(share) / 4
        other = (1 - like) / (k - 1)
        # e_B: error of always answering the commonest consensus class (lowest on a tie)
        counts = [list(consensus).count(c) for c in range(k)]
        commonest = counts.index(max(counts))
        e_b = Fr(sum(c != commonest for c in consensus), 4)
        w_r = [max(1 - (1 - a[j]) / e_b, Fr(0)) for j in range(3)]  # none clips here
        e_m = Fr(sum(int(np.argmax(p[i])) != consensus[i] for i in range(4)), 4)
        w_m = max(1 - e_m / e_b, Fr(0)) * sqrt_mean_reads
        post = []
        for i in range(4):
            num = [w_m * pf[i][c] for c in range(k)]
            for j in reads[i]:
                for c in range(k):
                    num[c] += w_r[j] * (like if y[i, j] == c else other)
            total = w_m + sum(w_r[j] for j in reads[i])
            post.append([v / total for v in num])
        return like, e_b, e_m, w_r, w_m, post

    # Pass 1, consensus = majority vote [0, 1, 2, 1] (item 3's tie: the model's 0.5 > 0.45)
    #   shares 3/3, 2/2, 2/2, 1/2 -> P = (1+1+1+1/2)/4 = 7/8, other = (1/8)/2 = 1/16
    #   commonest class 1 (items 1, 3) -> e_B = 2/4 = 1/2
    #   w_A = 1 - (1/5)/(1/2) = 3/5, w_B = 1 - (1/4)/(1/2) = 1/2, w_C = 1 - 0 = 1
    #   model argmax [0, 1, 2, 1] = consensus -> e_M = 0, w_M = 1 * 3/2 = 3/2
    #   item 3 numerators: class 0: 3/2*9/20 + 3/5*7/8 + 1/2*1/16 = 197/160
    #                      class 1: 3/2*1/2 + 3/5*1/16 + 1/2*7/8  = 196/160  -> class 0 wins
    like1, e_b1, e_m1, w_r1, w_m1, post1 = weights_and_posterior([0, 1, 2, 1])
    assert (like1, e_b1, e_m1, w_m1) == (Fr(7, 8), Fr(1, 2), 0, Fr(3, 2))
    assert w_r1 == [Fr(3, 5), Fr(1, 2), Fr(1)]
    total3 = Fr(3, 2) + Fr(3, 5) + Fr(1, 2)
    assert post1[3][0] == Fr(197, 160) / total3 and post1[3][1] == Fr(196, 160) / total3
    consensus = [max(range(k), key=lambda c: post1[i][c]) for i in range(4)]
    assert consensus == [0, 1, 2, 0]

    # Pass 2, consensus [0, 1, 2, 0]
    #   shares unchanged (item 3: A agrees, B not) -> P = 7/8, other = 1/16
    #   commonest class 0 (items 0, 3) -> e_B = 1/2; reader weights unchanged
    #   model argmax on item 3 is 1 != 0 -> e_M = 1/4, w_M = (1 - (1/4)/(1/2)) * 3/2 = 3/4
    #   item 0 (A, B, C say 0), total 3/4+3/5+1/2+1 = 57/20, readers' weight 21/10:
    #     0: 3/4*6/10 + 21/10*7/8  = 183/80 -> 183/80 / 57/20 = 61/76
    #     1: 3/4*3/10 + 21/10*1/16 = 57/160 -> 1/8
    #     2: 3/4*1/10 + 21/10*1/16 = 33/160 -> 11/152
    #   item 1 (A, C say 1), total 3/4+3/5+1 = 47/20, readers' weight 8/5:
    #     0: 3/4*2/10 + 8/5*1/16 = 1/4 -> 5/47;  1: 3/4*7/10 + 8/5*7/8 = 77/40 -> 77/94
    #     2: 3/4*1/10 + 8/5*1/16 = 7/40 -> 7/94
    #   item 2 (A, B say 2), total 3/4+3/5+1/2 = 37/20, readers' weight 11/10:
    #     0: 3/4*1/10 + 11/10*1/16 = 23/160 -> 23/296;  1: 3/4*2/10 + 11/160 -> 35/296
    #     2: 3/4*7/10 + 11/10*7/8 = 238/160 -> 119/148
    #   item 3 (A says 0, B says 1), total 37/20:
    #     0: 3/4*9/20 + 3/5*7/8 + 1/2*1/16  = 143/160 -> 143/296
    #     1: 3/4*10/20 + 3/5*1/16 + 1/2*7/8 = 136/160 -> 17/37
    #     2: 3/4*1/20 + 3/5*1/16 + 1/2*1/16 = 17/160  -> 17/296
    like, e_b, e_m, w_r, w_m, post = weights_and_posterior(consensus)
    assert (like, e_b, e_m, w_m) == (Fr(7, 8), Fr(1, 2), Fr(1, 4), Fr(3, 4))
    assert post[0] == [Fr(61, 76), Fr(1, 8), Fr(11, 152)]
    assert post[1] == [Fr(5, 47), Fr(77, 94), Fr(7, 94)]
    assert post[2] == [Fr(23, 296), Fr(35, 296), Fr(119, 148)]
    assert post[3] == [Fr(143, 296), Fr(17, 37), Fr(17, 296)]
    assert max(range(k), key=lambda c: post[3][c]) == 0  # the consensus is stable

    got = M.crowdlab(y, p)
    assert_array_equal(got.consensus, [0, 1, 2, 0])
    assert_allclose(got.posterior, np.array(post, dtype=float), rtol=0, atol=1e-15)
    assert_allclose(got.consensus_quality, [61 / 76, 77 / 94, 119 / 148, 143 / 296], atol=1e-15)
    # each reader's label scored by the posterior of the class they chose
    want = [
        [61 / 76, 61 / 76, 61 / 76],
        [77 / 94, nan, 77 / 94],
        [119 / 148, 119 / 148, nan],
        [143 / 296, 17 / 37, nan],
    ]
    assert_allclose(got.label_quality, want, rtol=0, atol=1e-15)
    assert got.model_weight == pytest.approx(3 / 4, abs=1e-15)
    assert_allclose(got.reader_weights, [3 / 5, 1 / 2, 1], atol=1e-15)
    assert_allclose(got.reader_agreement, [4 / 5, 3 / 4, 1], atol=1e-15)
    assert got.consensus_likelihood == pytest.approx(7 / 8, abs=1e-15)
    assert got.model_error == pytest.approx(1 / 4, abs=1e-15)
    assert got.baseline_error == pytest.approx(1 / 2, abs=1e-15)

    # and the authors' own code agrees on the same example
    pytest.importorskip("cleanlab")
    theirs, randomised = _cleanlab_crowdlab(y, p)
    assert not randomised
    _assert_same_as_cleanlab(got, theirs, y, "hand-worked example")


# ---------------------------------------------------------------- CROWDLAB vs cleanlab


def test_crowdlab_matches_cleanlab_on_random_panels():
    """80 random panels (30-400 items, 2-6 readers, 2-5 classes, missing reads):
    consensus, consensus quality, every reader's label quality, the model's and readers'
    weights and the readers' agreement equal cleanlab 2.9.0's to 1e-9."""
    pytest.importorskip("cleanlab")
    reader_clipped = model_clipped = 0
    worst = 0.0
    for seed in range(80):
        y, p = _panel(seed)
        ours = M.crowdlab(y, p)
        theirs, randomised = _cleanlab_crowdlab(y, p)
        # continuous probabilities: the model always settles a majority-vote tie
        assert not randomised, seed
        _assert_same_as_cleanlab(ours, theirs, y, f"seed {seed}")
        lq = theirs["detailed_label_quality"].to_numpy()
        worst = max(worst, float(np.nanmax(np.abs(ours.label_quality - lq))))
        reader_clipped += bool((ours.reader_weights == M._CLIP).any())
        model_clipped += ours.model_weight < 1e-5
    # the comparison covered clipped reader and model weights, not only the easy case
    assert reader_clipped >= 5 and model_clipped >= 5, (reader_clipped, model_clipped)
    assert worst < 1e-12


def test_crowdlab_matches_cleanlab_when_ties_need_the_later_tie_breaks():
    """Small panels where many items have a flat model (no preference between tied
    classes), so majority-vote ties go to the rarer class or the more reliable readers.
    cleanlab breaks what is left at random (and warns); those panels are skipped, and
    most panels are not."""
    pytest.importorskip("cleanlab")
    compared = skipped = 0
    for seed in range(300):
        rng = np.random.default_rng(10_000 + seed)
        n, r, k = int(rng.integers(6, 40)), int(rng.integers(2, 5)), int(rng.integers(2, 4))
        truth = rng.integers(0, k, n)
        y = np.where(rng.random((n, r)) < 0.6, truth[:, None], rng.integers(0, k, (n, r)))
        y[rng.random((n, r)) < 0.3] = -1
        for i in np.flatnonzero((y >= 0).sum(axis=1) == 0):
            y[i, 0] = rng.integers(k)
        for j in np.flatnonzero((y >= 0).sum(axis=0) == 0):
            y[0, j] = rng.integers(k)
        if not ((y >= 0).sum(axis=1) > 1).any():
            continue
        p = rng.dirichlet(np.ones(k), n)
        p[rng.random(n) < 0.5] = 1.0 / k
        theirs, randomised = _cleanlab_crowdlab(y, p)
        if randomised:
            skipped += 1
            continue
        _assert_same_as_cleanlab(M.crowdlab(y, p), theirs, y, f"seed {seed}")
        compared += 1
    assert compared >= 250 and skipped < 30, (compared, skipped)


def test_crowdlab_matches_cleanlab_with_clipped_baseline_and_lone_reader():
    """Every multiply-read item's consensus is class 0, so always answering 0 makes no
    error and e_B clips to 1e-6; reader 3 only reads items nobody else read, so their
    agreement is the mean of the others' (cleanlab imputes the same way)."""
    pytest.importorskip("cleanlab")
    rng = np.random.default_rng(5)
    y = np.full((40, 4), -1)
    y[:30, :3] = 0
    y[3, 2] = 1  # one dissent: reader 2's weight clips at 1e-6
    y[30:, 3] = rng.integers(0, 2, 10)
    p = rng.dirichlet([1, 1], 40)
    ours = M.crowdlab(y, p)
    assert ours.baseline_error == M._CLIP
    assert ours.reader_weights[2] == M._CLIP and ours.reader_weights[0] < 1
    assert ours.reader_agreement[3] == pytest.approx(np.mean(ours.reader_agreement[:3]))
    theirs, randomised = _cleanlab_crowdlab(y, p)
    assert not randomised
    _assert_same_as_cleanlab(ours, theirs, y, "clipped baseline")


def test_crowdlab_ignores_unread_items_and_silent_readers():
    """cleanlab refuses items nobody read and readers who read nothing; ours gives them
    -1 / NaN and leaves every other number as it would be without them."""
    y, p = _panel(11)
    base = M.crowdlab(y, p)
    rng = np.random.default_rng(0)
    n = len(y)
    extra = 25
    y2 = np.vstack([y, np.full((extra, y.shape[1]), -1)])
    y2 = np.column_stack([y2, np.full(len(y2), -1)])  # a reader who read nothing
    p2 = np.vstack([p, rng.dirichlet(np.ones(p.shape[1]), extra)])
    order = rng.permutation(len(y2))
    got = M.crowdlab(y2[order], p2[order])
    back = np.argsort(order)
    assert_array_equal(got.consensus[back][:n], base.consensus)
    assert_array_equal(got.consensus[back][n:], -1)
    assert_allclose(got.consensus_quality[back][:n], base.consensus_quality, atol=1e-14)
    assert np.isnan(got.consensus_quality[back][n:]).all()
    assert np.isnan(got.posterior[back][n:]).all()
    assert_allclose(got.label_quality[back][:n, :-1], base.label_quality, atol=1e-14)
    assert np.isnan(got.label_quality[:, -1]).all()
    assert got.model_weight == pytest.approx(base.model_weight, abs=1e-14)
    assert_allclose(got.reader_weights[:-1], base.reader_weights, atol=1e-14)
    # the silent reader's agreement is imputed as the mean (it weighs nothing anyway)
    assert got.reader_agreement[-1] == pytest.approx(np.mean(base.reader_agreement))


def test_crowdlab_posterior_rows_are_distributions():
    y, p = _panel(2)
    got = M.crowdlab(y, p)
    assert_allclose(got.posterior.sum(axis=1), 1.0, atol=1e-12)
    i = np.arange(len(y))
    assert_allclose(got.consensus_quality, got.posterior[i, got.consensus], atol=0)
    assert (got.consensus_quality >= got.posterior.max(axis=1) - 1e-15).all()


# ---------------------------------------------------------------- majority vote


def test_majority_vote_plain_majority_and_unread():
    y = np.array([[0, 0, 1], [2, 1, 2], [-1, -1, -1], [-1, 1, -1]])
    p = np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [1 / 3] * 3, [0.9, 0.05, 0.05]])
    # a clear majority wins even against a confident model; nobody read item 2
    assert_array_equal(M.majority_vote_with_model(y, p), [0, 2, -1, 1])


def test_majority_vote_tie_goes_to_the_model_among_tied_classes_only():
    y = np.array([[0, 1]])
    assert M.majority_vote_with_model(y, np.array([[0.3, 0.7]]))[0] == 1
    assert M.majority_vote_with_model(y, np.array([[0.7, 0.3]]))[0] == 0
    # the model's favourite overall (class 2) was not tied: the best tied class wins
    assert M.majority_vote_with_model(y, np.array([[0.2, 0.3, 0.5]]))[0] == 1
    # three-way tie, the model ties 1 and 2 on top: then the rarer of those, 2
    y = np.array([[0, 1, 2], [1, 1, 1]])
    p = np.array([[0.2, 0.4, 0.4], [0.1, 0.8, 0.1]])
    assert M.majority_vote_with_model(y, p)[0] == 2


def test_majority_vote_flat_model_tie_goes_to_the_rarer_class():
    flat = [0.5, 0.5]
    p = np.array([flat, [0.9, 0.1], [0.9, 0.1]])
    # class 0 has 5 votes overall, class 1 has 1: the tie on item 0 goes to 1
    assert M.majority_vote_with_model(np.array([[0, 1], [0, 0], [0, 0]]), p)[0] == 1
    # and the other way round
    assert M.majority_vote_with_model(np.array([[0, 1], [1, 1], [1, 1]]), p)[0] == 0


def test_majority_vote_then_the_more_reliable_readers():
    """Flat model, equal class frequencies (4 and 4): the tie goes to the class chosen
    by the reader who agrees with the untied majority elsewhere (A: 2/2, B: 0/2)."""
    p = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    y = np.array([[0, 1, -1], [1, 0, 1], [0, 1, 0]])
    assert M.majority_vote_with_model(y, p)[0] == 0  # A said 0
    y[0] = [1, 0, -1]
    assert M.majority_vote_with_model(y, p)[0] == 1  # A said 1: it is A, not the code


def test_majority_vote_reader_without_clear_items_gets_the_mean_reliability():
    """Reader C only read the tied item, so their reliability is imputed as the mean of
    the others' agreement with the untied majority: A 1/4, B 3/4, D 4/4 -> 2/3.
    Classes 0 and 1 have 7 votes each and the model is flat, so only reliability is left."""
    y = np.array(
        [
            [-1, 0, 1, -1],  # item 0: B says 0, C says 1 (the tie)
            [1, 0, -1, 0],  # majority 0: A wrong, B and D right
            [0, 1, -1, 1],  # majority 1: A wrong, B and D right
            [0, 1, -1, 0],  # majority 0: A and D right, B wrong
            [0, 1, -1, 1],  # majority 1: A wrong, B and D right
        ]
    )
    p = np.full((5, 2), 0.5)
    assert (y == 0).sum() == (y == 1).sum() == 7
    # B (3/4) beats C (2/3): class 0
    assert M.majority_vote_with_model(y, p)[0] == 0
    # with A (1/4) in B's place, C (2/3) wins: class 1
    y[0] = [0, -1, 1, -1]
    assert M.majority_vote_with_model(y, p)[0] == 1
    pytest.importorskip("cleanlab")
    from cleanlab.multiannotator import get_majority_vote_label

    assert get_majority_vote_label(_to_nan(y), p, verbose=False)[0] == 1


def test_majority_vote_what_is_left_goes_to_the_lowest_tied_code():
    # nothing to learn reliability from: deterministic, the lowest tied code
    assert M.majority_vote_with_model(np.array([[1, 0]]), np.array([[0.5, 0.5]]))[0] == 0
    p = np.full((1, 3), 1 / 3)
    assert M.majority_vote_with_model(np.array([[2, 1]]), p)[0] == 1  # not 0: untied
    # repeatable: the same input always gives the same answer
    y = np.array([[2, 1], [1, 2]])
    runs = {tuple(M.majority_vote_with_model(y, np.full((2, 3), 1 / 3))) for _ in range(5)}
    assert runs == {(1, 1)}


def _tie_stage(y: np.ndarray, p: np.ndarray, i: int) -> int:
    """How far cleanlab's tie-break chain has to go for item i (0: no tie)."""
    counts = np.bincount(y[i][y[i] >= 0], minlength=p.shape[1])
    tied = np.flatnonzero(counts == counts.max())
    if len(tied) == 1:
        return 0
    tied = tied[p[i, tied] == p[i, tied].max()]
    if len(tied) == 1:
        return 1
    freq = np.array([(y == c).sum() for c in range(p.shape[1])])
    tied = tied[freq[tied] == freq[tied].min()]
    return 2 if len(tied) == 1 else 3


def test_majority_vote_matches_cleanlab_tie_breaks():
    """cleanlab's ``get_majority_vote_label`` on random small panels with flat model rows,
    on every item cleanlab did not settle at random; the comparison reaches each stage
    of the tie-break chain many times."""
    pytest.importorskip("cleanlab")
    from cleanlab.multiannotator import get_majority_vote_label

    stages = np.zeros(4, int)
    random_items = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        n, r, k = int(rng.integers(4, 25)), int(rng.integers(2, 6)), int(rng.integers(2, 4))
        y = rng.integers(0, k, (n, r))
        y[rng.random((n, r)) < 0.3] = -1
        for i in np.flatnonzero((y >= 0).sum(axis=1) == 0):
            y[i, 0] = rng.integers(k)
        for j in np.flatnonzero((y >= 0).sum(axis=0) == 0):
            y[0, j] = rng.integers(k)
        p = rng.dirichlet(np.ones(k), n)
        p[rng.random(n) < 0.6] = 1.0 / k
        if seed % 2:  # append the panel with classes 0 and 1 swapped: equal frequencies
            swap = np.array([1, 0, 2])[: max(k, 2)]
            y = np.vstack([y, np.where(y >= 0, swap[y], -1)])
            p = np.vstack([p, p[:, swap]])
            n *= 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            theirs = get_majority_vote_label(_to_nan(y), p, verbose=False)
        rand = set()
        for w in caught:
            m = re.search(r"ties of examples \[([^\]]*)\]", str(w.message))
            if m:  # "[np.int64(3), np.int64(7)]" or "[3, 7]"
                rand |= {int(v) for v in re.findall(r"\d+", m.group(1).replace("int64", ""))}
        keep = np.array([i not in rand for i in range(n)])
        ours = M.majority_vote_with_model(y, p)
        assert_array_equal(ours[keep], theirs[keep], err_msg=f"seed {seed}")
        random_items += len(rand)
        for i in np.flatnonzero(keep):
            stages[_tie_stage(y, p, i)] += 1
    # stage 3 = cleanlab's annotator-quality tie-break (what it leaves goes to random)
    assert (stages[1:] >= 50).all(), stages
    assert random_items < stages[3], (random_items, stages)


# ---------------------------------------------------------------- brain's mistakenness


def test_brain_mistakenness_docstring_by_hand():
    # H = -(0.9 ln 0.9 + 0.1 ln 0.1); c = exp(-H); agree: (1 - c)/2, disagree: (1 + c)/2
    c = math.exp(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    got = M.brain_mistakenness(np.array([0, 1]), np.array([[0.9, 0.1], [0.9, 0.1]]))
    assert_allclose(got, [(1 - c) / 2, (1 + c) / 2], rtol=0, atol=1e-15)
    assert_allclose(got.round(3), [0.139, 0.861])
    # and the docstring example itself runs
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(M.brain_mistakenness, "brain_mistakenness", globs=dict(vars(M))):
        runner.run(test)
    assert runner.tries >= 1 and runner.failures == 0


def test_brain_mistakenness_formula_edges_and_readers():
    k = 4
    flat = np.full((3, k), 1 / k)
    # a flat model: c = exp(-ln K) = 1/K
    assert_allclose(
        M.brain_mistakenness(np.array([0, 1, -1]), flat), [(1 - 1 / k) / 2, (1 + 1 / k) / 2, nan]
    )
    # a certain model (a zero probability is 0 log 0 = 0): 0 when right, 1 when wrong
    sure = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert_array_equal(M.brain_mistakenness(np.array([1, 0]), sure), [0.0, 1.0])
    assert_allclose(M.confidence_entropy(flat), 1 / k)
    # several readers: each column is the one-reader score; ``predicted`` overrides argmax
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(k), 50)
    y = rng.integers(-1, k, (50, 3))
    pred = rng.integers(0, k, 50)
    both = M.brain_mistakenness(y, p, predicted=pred)
    for j in range(3):
        h = -(p * np.log(p)).sum(axis=1)
        m = np.where(pred != y[:, j], 1.0, -1.0)
        want = np.where(y[:, j] >= 0, (m * np.exp(-h) + 1) / 2, nan)
        assert_allclose(both[:, j], want, rtol=0, atol=1e-15)
        assert_allclose(both[:, j], M.brain_mistakenness(y[:, j], p, predicted=pred), atol=0)
    # without ``predicted`` the model's label is its most probable class
    assert_allclose(
        M.brain_mistakenness(y, p), M.brain_mistakenness(y, p, predicted=p.argmax(1)), atol=0
    )


def test_brain_mistakenness_matches_fiftyone_brain(dataset):
    """``fiftyone.brain.compute_mistakenness(use_logits=True)`` on a real dataset equals
    ours per sample, wherever a label is present. Where it is missing brain treats the
    label as *agreeing* with the model (m = -1, so (1 - c)/2); ours gives NaN by design:
    an unread image is not a reader's mistake."""
    import fiftyone as fo
    import fiftyone.brain as fob

    rng = np.random.default_rng(7)
    n, k = 120, 4
    classes = [f"c{c}" for c in range(k)]
    logits = rng.normal(0, 1, (n, k)) * rng.uniform(0.05, 6.0, (n, 1))
    logits[0] = [0.0, -800.0, -800.0, -800.0]  # softmax underflows to exact zeros
    logits[1] = 0.3  # a flat model
    pred = logits.argmax(axis=1)
    other = rng.random(n) < 0.2  # a stored label that is not the argmax
    pred[other] = (pred[other] + rng.integers(1, k, other.sum())) % k
    gt = np.where(rng.random(n) < 0.35, pred, rng.integers(0, k, n))
    gt[rng.random(n) < 0.15] = -1
    gt[0], gt[1], gt[2] = pred[0], (pred[1] + 1) % k, -1
    samples = []
    for i in range(n):
        s = fo.Sample(filepath=f"/tmp/mistakenness-test/x{i}.png")
        s["pred"] = fo.Classification(label=classes[pred[i]], logits=logits[i].tolist())
        if gt[i] >= 0:
            s["gt"] = fo.Classification(label=classes[gt[i]])
        samples.append(s)
    dataset.add_samples(samples)
    fob.compute_mistakenness(
        dataset, "pred", label_field="gt", mistakenness_field="m", use_logits=True, progress=False
    )
    brain = np.array(dataset.values("m"), dtype=float)
    codes = np.array([classes.index(v) if v else -1 for v in dataset.values("gt.label")])
    assert_array_equal(codes, gt)

    ours = M.brain_mistakenness(codes, _softmax(logits), predicted=pred)
    has = gt >= 0
    assert has.sum() > 80 and (~has).sum() > 5
    assert np.abs(ours[has] - brain[has]).max() < 1e-12
    assert np.isnan(ours[~has]).all()
    # brain's value for a missing label: as if the label were the model's own
    as_agreeing = M.brain_mistakenness(pred, _softmax(logits), predicted=pred)
    assert_allclose(brain[~has], as_agreeing[~has], rtol=0, atol=1e-12)
    # brain compares with the *stored* label: ignoring ``predicted`` would not match
    argmax_based = M.brain_mistakenness(codes, _softmax(logits))
    assert np.abs(argmax_based[has] - brain[has]).max() > 0.1


# ---------------------------------------------------------------- self-confidence


def test_self_confidence_explicit_and_unread():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert_allclose(M.self_confidence(np.array([1, -1]), p), [0.2, nan])
    y = np.array([[0, 2], [2, -1]])
    assert_allclose(M.self_confidence(y, p), [[0.7, 0.1], [0.8, nan]])


def test_self_confidence_matches_cleanlab_rank():
    pytest.importorskip("cleanlab")
    from cleanlab.rank import get_label_quality_scores

    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(5), 300)
    y = rng.integers(0, 5, 300)
    theirs = get_label_quality_scores(y, p, method="self_confidence")
    assert_allclose(M.self_confidence(y, p), theirs, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- masks


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool).ravel().tolist(), b.astype(bool).ravel().tolist()
    inter = sum(x and z for x, z in zip(a, b, strict=True))
    return 2 * inter / (sum(a) + sum(b))


def test_mask_mistakenness_is_one_minus_dice_on_random_masks():
    rng = np.random.default_rng(9)
    for _ in range(40):
        shape = tuple(rng.integers(3, 20, 2))
        a = (rng.random(shape) < rng.uniform(0.05, 0.6)) * rng.integers(1, 4, shape)
        b = (rng.random(shape) < rng.uniform(0.05, 0.6)).astype(np.uint8)
        if not a.any() and not b.any():
            continue
        assert M.mask_mistakenness(a, b) == pytest.approx(1 - _dice(a, b), abs=1e-15)


def test_mask_mistakenness_edges():
    empty = np.zeros((4, 5), np.uint8)
    full = np.ones((4, 5), np.uint8)
    assert M.mask_mistakenness(empty, empty) == 0.0  # both say "no lesion": agreement
    assert M.mask_mistakenness(empty, full) == 1.0
    assert M.mask_mistakenness(full, full) == 0.0
    half = full.copy()
    half[:2] = 0  # |A| = 20, |B| = 10, overlap 10: Dice = 20/30
    assert M.mask_mistakenness(full, half) == pytest.approx(1 - 2 / 3)
    assert math.isnan(M.mask_mistakenness(None, full))
    assert math.isnan(M.mask_mistakenness(full, None))
    with pytest.raises(ValueError, match=r"reader \(4, 5\), predicted \(5, 4\)"):
        M.mask_mistakenness(full, full.T)


# ---------------------------------------------------------------- precision at k


def test_precision_at_k_explicit():
    s = np.array([0.9, 0.1, 0.8, 0.3, 0.7])
    pos = np.array([True, False, False, True, True])
    # default k = 3 positives: top 3 are items 0, 2, 4 -> 2 of 3
    assert M.precision_at_k(s, pos) == pytest.approx(2 / 3)
    assert M.precision_at_k(s, pos, k=1) == 1.0
    assert M.precision_at_k(s, pos, k=2) == 0.5
    assert M.precision_at_k(s, pos, k=5) == pytest.approx(3 / 5)


def test_precision_at_k_never_ranks_nan_scores():
    # a NaN score (an unread label) is not a finding, however high its item would rank
    s = np.array([nan, 0.2, 0.5, nan])
    pos = np.array([True, True, False, False])
    assert M.precision_at_k(s, pos, k=1) == 0.0
    assert M.precision_at_k(s, pos) == 0.5  # k = 2: items 2 and 1
    # more asked for than there are scores: the unscored positive is still not found
    assert M.precision_at_k(s, pos, k=3) == pytest.approx(1 / 3)
    assert M.precision_at_k(np.array([nan, nan]), np.array([True, True])) == 0.0


def test_precision_at_k_against_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(5, 60))
        s = rng.random(n)  # distinct scores: a unique ranking
        s[rng.random(n) < 0.2] = nan
        pos = rng.random(n) < 0.3
        pos[0] = True
        k = int(rng.integers(1, n + 1))
        scored = [i for i in range(n) if not math.isnan(s[i])]
        top = sorted(scored, key=lambda i: -s[i])[:k]
        assert M.precision_at_k(s, pos, k) == pytest.approx(sum(pos[i] for i in top) / k)


def test_precision_at_k_needs_something_to_find():
    with pytest.raises(ValueError, match="k must be positive"):
        M.precision_at_k(np.array([0.5, 0.4]), np.array([False, False]))
    with pytest.raises(ValueError, match="k must be positive"):
        M.precision_at_k(np.array([0.5, 0.4]), np.array([True, False]), k=0)


# ---------------------------------------------------------------- input validation

_P2 = np.array([[0.6, 0.4], [0.3, 0.7]])


@pytest.mark.parametrize(
    "fn", [M.brain_mistakenness, M.self_confidence, M.majority_vote_with_model, M.crowdlab]
)
@pytest.mark.parametrize(
    ("labels", "probs", "match"),
    [
        (np.array([[0, 1], [1, 0]]), np.array([0.6, 0.4]), r"probs must be \(n_items, n_classes\)"),
        (np.array([[0, 1], [1, 0], [0, 0]]), _P2, "labels have 3 items, probs 2"),
        (np.array([[0, 1], [1, 2]]), _P2, r"labels must be in -1\.\.1"),
        (np.array([[0, 1], [-2, 0]]), _P2, r"labels must be in -1\.\.1"),
        (np.array([[0.0, 1.0], [1.0, 0.0]]), _P2, "integer class codes"),
        (np.array([[True, False], [False, True]]), _P2, "integer class codes"),
    ],
)
def test_bad_inputs_are_refused(fn, labels, probs, match):
    with pytest.raises(ValueError, match=match):
        fn(labels, probs)


def test_crowdlab_specific_refusals():
    with pytest.raises(ValueError, match=r"\(n_items, n_readers\)"):
        M.crowdlab(np.array([0, 1]), _P2)
    # every item read once: nothing to learn reader reliability from
    with pytest.raises(ValueError, match="at least one item read by two"):
        M.crowdlab(np.array([[0, -1], [-1, 1]]), _P2)
    with pytest.raises(ValueError, match="at least two classes"):
        M.crowdlab(np.array([[0, 0], [0, -1]]), np.ones((2, 1)))
