"""Consensus: majority vote edge cases, Dawid-Skene against the 1979 paper and crowd-kit."""

import warnings

import numpy as np
import pandas as pd
import pytest

from multireader.stats.consensus import DawidSkene, MajorityVote
from multireader.stats.ratings import validate_ratings

# Dawid & Skene (1979), Table 1: 45 patients, 5 observers, classes 1-4; observer 1
# assessed every patient three times. Row: observer 1's three ratings, then observers 2-5.
_TABLE_1 = """
111 1111  333 4334  112 2122  222 3121  222 3222  222 3322  122 2111  333 3433  222 2223
232 2223  444 4444  222 3343  111 1111  222 3212  121 1111  111 2111  111 1111  111 1111
222 2221  222 1322  222 2222  222 2221  222 3222  221 2222  111 1111  111 1111  232 2222
111 1111  111 1111  112 1121  111 1111  333 3233  111 1111  222 2222  222 3232  433 4343
221 2232  232 3233  333 3432  111 1111  111 1111  121 2111  232 2222  121 1111  222 2222
"""


def _paper_ratings() -> np.ndarray:
    # each patient is two tokens: "abc" (observer 1 x3) and "defg" (observers 2-5)
    toks = _TABLE_1.split()
    rows = [[int(c) for c in toks[i] + toks[i + 1]] for i in range(0, len(toks), 2)]
    return np.array(rows) - 1


PAPER_READERS = [0, 0, 0, 1, 2, 3, 4]

# The paper's published estimates, two decimals (Dawid & Skene 1979, Tables 2-4):
# class proportions, each observer's error-rate matrix (row = true class, column =
# the observer's response), and the patients whose class probability is not 0/1.
PAPER_PRIORS = [0.40, 0.42, 0.11, 0.07]
PAPER_CONFUSIONS = [
    [[0.89, 0.11, 0.00, 0.00], [0.07, 0.88, 0.05, 0.00], [0.00, 0.34, 0.66, 0.00], [0.00, 0.00, 0.56, 0.44]],
    [[0.83, 0.17, 0.00, 0.00], [0.05, 0.63, 0.31, 0.00], [0.00, 0.00, 1.00, 0.00], [0.00, 0.00, 0.00, 1.00]],
    [[1.00, 0.00, 0.00, 0.00], [0.11, 0.79, 0.11, 0.00], [0.00, 0.40, 0.20, 0.40], [0.00, 0.00, 0.67, 0.33]],
    [[0.94, 0.06, 0.00, 0.00], [0.05, 0.84, 0.10, 0.00], [0.00, 0.00, 0.80, 0.20], [0.00, 0.00, 0.33, 0.67]],
    [[1.00, 0.00, 0.00, 0.00], [0.16, 0.73, 0.11, 0.00], [0.00, 0.21, 0.79, 0.00], [0.00, 0.00, 0.33, 0.67]],
]  # fmt: skip
# final class per patient 1..45 (the paper's estimated true classes)
PAPER_CLASSES = [
    1, 4, 2, 2, 2, 2, 1, 3, 2, 2, 4, 3, 1, 2, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1, 2, 1, 1, 1,
    1, 3, 1, 2, 2, 4, 2, 3, 3, 1, 1, 1, 2, 1, 2,
]  # fmt: skip
PAPER_UNCERTAIN = {7: [0.98, 0.02, 0, 0], 35: [0, 0.95, 0.05, 0], 38: [0, 0.02, 0.98, 0]}


# ---------------------------------------------------------------- majority vote


def test_majority_vote_counts_shares_and_labels():
    r = np.array([[0, 0, 1, 2], [2, 2, 2, 2], [1, -1, 1, 0]])
    mv = MajorityVote(3).fit(r)
    np.testing.assert_array_equal(mv.counts_, [[2, 1, 1], [0, 0, 4], [1, 2, 0]])
    np.testing.assert_array_equal(mv.n_reads_, [4, 4, 3])
    np.testing.assert_array_equal(mv.labels_, [0, 2, 1])
    np.testing.assert_allclose(mv.share_, [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(mv.probas_[2], [1 / 3, 2 / 3, 0])
    np.testing.assert_array_equal(mv.contested_, [False, False, False])


def test_majority_vote_tie_is_contested_never_broken():
    r = np.array([[0, 1], [2, 1], [2, 1], [0, 0]])
    mv = MajorityVote(3).fit(r)
    np.testing.assert_array_equal(mv.labels_, [-1, -1, -1, 0])
    np.testing.assert_array_equal(mv.contested_, [True, True, True, False])
    np.testing.assert_allclose(mv.share_, [0.5, 0.5, 0.5, 1.0])
    # a three-way tie among four readers is contested too; a 2-1-1 split is not
    mv = MajorityVote(4).fit(np.array([[0, 1, 2, -1], [0, 0, 1, 2]]))
    np.testing.assert_array_equal(mv.labels_, [-1, 0])
    np.testing.assert_array_equal(mv.contested_, [True, False])


def test_majority_vote_no_reads_gives_minus_one_zero_share_zero_probas():
    mv = MajorityVote(3).fit(np.array([[-1, -1], [1, -1]]))
    np.testing.assert_array_equal(mv.labels_, [-1, 1])
    np.testing.assert_array_equal(mv.contested_, [False, False])
    np.testing.assert_array_equal(mv.share_, [0.0, 1.0])
    np.testing.assert_array_equal(mv.probas_, [[0, 0, 0], [0, 1, 0]])
    assert not np.isnan(mv.share_).any()


def test_majority_vote_unused_class_and_single_reader():
    r = np.array([[0], [3], [-1], [0]])
    mv = MajorityVote(5).fit(r)
    np.testing.assert_array_equal(mv.labels_, [0, 3, -1, 0])
    np.testing.assert_array_equal(mv.counts_[:, [1, 2, 4]], 0)  # classes nobody used
    np.testing.assert_array_equal(mv.probas_.sum(axis=1), [1, 1, 0, 1])
    assert mv.fit_predict(r).tolist() == [0, 3, -1, 0]


def test_majority_vote_matches_crowdkit_shares_on_random_data():
    from crowdkit.aggregation import MajorityVote as CKMajorityVote

    rng = np.random.default_rng(3)
    r = rng.integers(0, 4, size=(300, 5))
    r[rng.random(r.shape) < 0.2] = -1
    mv = MajorityVote(4).fit(r)
    i, j = np.nonzero(r >= 0)
    df = pd.DataFrame({"task": i, "worker": j, "label": r[i, j]})
    ck = CKMajorityVote().fit(df).probas_
    ck = ck.reindex(index=range(len(r)), columns=range(4)).fillna(0).to_numpy()
    np.testing.assert_allclose(mv.probas_, ck, atol=1e-12)


@pytest.mark.parametrize(
    ("ratings", "n_classes", "match"),
    [
        (np.array([0, 1]), 2, "ratings must be 2-D"),
        (np.array([[0, 2]]), 2, "ratings holds 2"),
        (np.array([[0, -2]]), 2, "ratings holds -2"),
        (np.array([[0.0, np.nan]]), 2, "NaN"),
        (np.array([[0.5, 1.0]]), 2, "fractional"),
        (np.array([["a", "b"]]), 2, "integer array"),
        (np.array([[0, 1]]), 0, "n_classes"),
        (np.array([[0, 1]]), 2.0, "n_classes"),
    ],
)
def test_bad_ratings_name_the_argument(ratings, n_classes, match):
    with pytest.raises(ValueError, match=match):
        validate_ratings(ratings, n_classes)
    with pytest.raises(ValueError, match=match):
        MajorityVote(n_classes).fit(ratings)


# ---------------------------------------------------------------- Dawid-Skene


def test_dawid_skene_reproduces_the_1979_paper():
    r = _paper_ratings()
    assert r.shape == (45, 7)
    ds = DawidSkene(4, diagonal_prior=0.0).fit(r, column_readers=PAPER_READERS)
    assert ds.converged_
    np.testing.assert_allclose(ds.priors_, PAPER_PRIORS, atol=0.005)
    np.testing.assert_allclose(ds.confusions_, PAPER_CONFUSIONS, atol=0.005)
    np.testing.assert_array_equal(ds.labels_ + 1, PAPER_CLASSES)
    for patient, probs in PAPER_UNCERTAIN.items():
        np.testing.assert_allclose(ds.probas_[patient - 1], probs, atol=0.005)
    certain = np.setdiff1d(np.arange(45), np.array(list(PAPER_UNCERTAIN)) - 1)
    assert (ds.probas_[certain].max(axis=1) > 0.995).all()  # published as 1.00
    np.testing.assert_allclose(ds.confusions_.sum(axis=2), 1.0)


def test_dawid_skene_paper_converged_values_are_stable_to_tighter_tolerance():
    r = _paper_ratings()
    a = DawidSkene(4, diagonal_prior=0.0).fit(r, column_readers=PAPER_READERS)
    b = DawidSkene(4, max_iter=2000, tol=1e-12, diagonal_prior=0.0).fit(
        r, column_readers=PAPER_READERS
    )
    assert b.log_likelihood_ >= a.log_likelihood_ - 1e-9
    np.testing.assert_allclose(a.probas_, b.probas_, atol=1e-3)


def _simulate(n, n_readers, k, missing, seed):
    rng = np.random.default_rng(seed)
    truth = rng.choice(k, n, p=np.linspace(2, 1, k) / np.linspace(2, 1, k).sum())
    r = np.empty((n, n_readers), np.int64)
    for j in range(n_readers):
        acc = rng.uniform(0.5, 0.85)
        conf = np.full((k, k), (1 - acc) / (k - 1))
        np.fill_diagonal(conf, acc)
        cum = np.cumsum(conf[truth], axis=1)
        r[:, j] = (rng.random(n)[:, None] > cum).sum(axis=1)
    r[rng.random(r.shape) < missing] = -1
    return r


def _crowdkit_probas(r, k, **kwargs):
    from crowdkit.aggregation import DawidSkene as CKDawidSkene

    i, j = np.nonzero(r >= 0)
    df = pd.DataFrame({"task": i, "worker": j, "label": r[i, j]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ck = CKDawidSkene(**kwargs).fit(df)
    return ck, ck.probas_.reindex(index=range(len(r)), columns=range(k)).to_numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_matches_crowdkit_with_missing_reads(seed):
    k = 4
    r = _simulate(600, 5, k, missing=0.15, seed=seed)
    r[7] = -1  # an item nobody read: crowd-kit never sees it
    ck, ck_p = _crowdkit_probas(r, k, n_iter=100, tol=1e-5)
    ds = DawidSkene.crowdkit_settings(k).fit(r)
    has = ds.n_reads_ > 0
    assert np.abs(ds.probas_[has] - ck_p[has]).max() < 1e-4
    assert ds.n_iter_ == len(ck.loss_history_)
    np.testing.assert_allclose(ds.priors_, ck.priors_.reindex(range(k)).to_numpy(), atol=1e-4)
    # crowd-kit's errors_: rows (worker, observed), columns true -> ours transposed
    err = ck.errors_
    for w in range(5):
        ours = ds.confusions_[w].T
        theirs = err.loc[w].reindex(index=range(k), columns=range(k)).fillna(0).to_numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_dawid_skene_both_criteria_reach_the_same_optimum():
    # the crowd-kit criterion is checked against crowd-kit itself above; run to
    # convergence, the default (log-likelihood) criterion lands on the same fixed point
    k = 3
    r = _simulate(800, 4, k, missing=0.1, seed=11)
    a = DawidSkene(k, max_iter=5000, tol=1e-13, criterion="crowdkit", diagonal_prior=0.0).fit(r)
    b = DawidSkene(k, max_iter=5000, tol=1e-13, diagonal_prior=0.0).fit(r)
    assert a.converged_ and b.converged_
    assert np.abs(a.probas_ - b.probas_).max() < 1e-4
    np.testing.assert_allclose(a.confusions_, b.confusions_, atol=1e-4)


def test_dawid_skene_log_likelihood_never_decreases():
    r = _simulate(400, 4, 3, missing=0.1, seed=5)
    lls = [
        DawidSkene(3, max_iter=m, tol=0, diagonal_prior=0.0).fit(r).log_likelihood_
        for m in range(1, 12)
    ]
    assert np.all(np.diff(lls) >= -1e-9)
    assert lls[-1] > lls[0]


def test_dawid_skene_recovers_simulated_confusions():
    r = _simulate(20000, 4, 3, missing=0.05, seed=9)
    ds = DawidSkene(3).fit(r)
    # the simulation has accuracy on the diagonal and equal off-diagonal errors
    diag = np.diagonal(ds.confusions_, axis1=1, axis2=2)
    assert np.ptp(diag, axis=1).max() < 0.05
    assert ds.converged_


def test_dawid_skene_item_without_reads_gets_prior_and_minus_one():
    r = _simulate(200, 3, 3, missing=0.0, seed=1)
    r[[4, 9]] = -1
    ds = DawidSkene(3).fit(r)
    np.testing.assert_array_equal(ds.labels_[[4, 9]], [-1, -1])
    np.testing.assert_allclose(ds.probas_[4], ds.priors_)
    np.testing.assert_array_equal(ds.n_reads_[[4, 9]], [0, 0])
    np.testing.assert_allclose(ds.probas_.sum(axis=1), 1.0)


def test_dawid_skene_unanimous_readers_unused_class_and_single_reader():
    r = np.array([[0, 0, 0], [2, 2, 2], [0, 0, 0], [2, 2, 2]])
    ds = DawidSkene(4, diagonal_prior=0.0).fit(r)  # classes 1 and 3 never used, all agree
    np.testing.assert_array_equal(ds.labels_, [0, 2, 0, 2])
    np.testing.assert_allclose(ds.priors_, [0.5, 0, 0.5, 0], atol=1e-9)
    np.testing.assert_allclose(ds.confusions_[:, [0, 2], [0, 2]], 1.0, atol=1e-8)
    np.testing.assert_allclose(ds.confusions_[:, 1], 0.25)  # uninformative row
    assert not np.isnan(ds.probas_).any()
    one = DawidSkene(3, diagonal_prior=0.0).fit(np.array([[0], [1], [-1], [2]]))
    np.testing.assert_array_equal(one.labels_, [0, 1, -1, 2])
    assert one.confusions_.shape == (1, 3, 3)


def test_dawid_skene_exact_tie_is_not_broken_by_class_order():
    # two readers who always disagree symmetrically: the model cannot tell who is right
    r = np.array([[0, 1], [1, 0]])
    ds = DawidSkene(2).fit(r)
    np.testing.assert_allclose(ds.probas_, 0.5)
    np.testing.assert_array_equal(ds.labels_, [-1, -1])


def test_dawid_skene_smoothing_is_additive_on_the_expected_counts():
    r = _simulate(300, 3, 3, missing=0.1, seed=4)
    s = 0.5
    # with the crowd-kit criterion, confusions_ is the M-step from the returned probas_
    ds = DawidSkene(3, smoothing=s, criterion="crowdkit", diagonal_prior=0.0).fit(r)
    onehot = (r[:, :, None] == np.arange(3)).astype(float)  # (n, R, l)
    counts = np.einsum("ik,irl->rkl", ds.probas_, onehot)
    expected = (counts + s) / (counts + s).sum(axis=2, keepdims=True)
    np.testing.assert_allclose(ds.confusions_, expected, atol=1e-12)
    paper = DawidSkene(4, smoothing=0.5, diagonal_prior=0.0).fit(_paper_ratings(), PAPER_READERS)
    assert paper.confusions_.min() > 1e-3  # no call left at probability ~0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"smoothing": -0.1}, "smoothing"),
        ({"criterion": "elbo"}, "criterion"),
    ],
)
def test_dawid_skene_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DawidSkene(2, **kwargs).fit(np.array([[0, 1]]))


def test_dawid_skene_errors_on_no_reads_and_bad_column_readers():
    with pytest.raises(ValueError, match="no read"):
        DawidSkene(2).fit(np.full((3, 2), -1))
    with pytest.raises(ValueError, match="column_readers"):
        DawidSkene(2).fit(np.array([[0, 1]]), column_readers=[0])
    with pytest.raises(ValueError, match="column_readers"):
        DawidSkene(2).fit(np.array([[0, 1]]), column_readers=[0, -1])


def test_dawid_skene_many_columns_takes_the_row_unique_fallback():
    # (K+1)^n_columns overflows int64 here, so distinct rows are found with unique(axis=0)
    r = _simulate(300, 30, 3, missing=0.5, seed=2)
    ds = DawidSkene.crowdkit_settings(3).fit(r)
    _, ck_p = _crowdkit_probas(r, 3, n_iter=100, tol=1e-5)
    assert np.abs(ds.probas_ - ck_p).max() < 1e-4
    # duplicated items get identical posteriors and count twice in the priors
    doubled = DawidSkene(3).fit(np.vstack([r, r]))
    np.testing.assert_allclose(doubled.probas_[:300], doubled.probas_[300:])


# ------------------------------------------- the fast E/M sums against a dense reference


def _reference_em(r, k, column_readers, n_m_steps, smoothing=0.0, diagonal=0.0, multi_only=False):
    """Dawid-Skene EM written out densely (one-hot reads, einsum): vote-share start, then
    ``n_m_steps`` M-steps each followed by an E-step; the floors are ours (1e-10)."""
    n, c = r.shape
    readers = np.asarray(column_readers)
    onehot = (r[:, :, None] == np.arange(k)).astype(float)  # (n, columns, l)
    per_reader = np.zeros((n, readers.max() + 1, k))
    np.add.at(per_reader, (slice(None), readers), onehot)  # n_il^(r): a reader's columns pool
    reads = onehot.sum(axis=(1, 2))
    w = (reads > 0).astype(float)
    if multi_only and (reads >= 2).any():
        w = (reads >= 2).astype(float)
    pseudo = smoothing + diagonal * np.eye(k)
    T = onehot.sum(axis=1) / np.maximum(reads, 1)[:, None]
    for _ in range(n_m_steps):
        priors = (w[:, None] * T).sum(axis=0) / w.sum()
        cell = np.maximum(np.einsum("i,ik,irl->rkl", w, T, per_reader) + pseudo, 1e-10)
        conf = cell / cell.sum(axis=2, keepdims=True)
        log_joint = np.log(np.maximum(priors, 1e-10)) + np.einsum(
            "irl,rkl->ik", per_reader, np.log(conf)
        )
        T = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
        T /= T.sum(axis=1, keepdims=True)
        T[reads == 0] = priors
    return T, priors, conf


def _sparse_panel(n, c, k, missing, seed):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, k, (n, c))
    truth = rng.integers(0, k, n)
    agree = rng.random((n, c)) < 0.6
    r[agree] = np.broadcast_to(truth[:, None], (n, c))[agree]
    r[rng.random((n, c)) < missing] = -1
    return r


@pytest.mark.parametrize(
    ("n", "c", "k", "missing", "readers", "extra"),
    [
        # nearly every row distinct: dense column groups, no collapse
        (3000, 12, 5, 0.3, None, {}),
        # large enough for the sampled check: it skips the sort (few repeats) ...
        (20000, 12, 5, 0.3, None, {}),
        # ... or collapses (many repeats)
        (40000, 3, 2, 0.2, None, {}),
        # wide and mostly unread: sparse groups, rows found with unique(axis=0)
        (2000, 40, 3, 0.9, None, {}),
        # repeated readings: two columns per reader share a confusion matrix
        (2000, 6, 4, 0.2, [0, 0, 1, 1, 2, 2], {}),
        # few columns, many identical rows, unread rows, priors and single reads
        (
            5000, 4, 2, 0.4, None,
            {"smoothing": 0.5, "diagonal_prior": 3.0, "single_reads": "posterior_only"},
        ),
        (500, 3, 7, 0.5, None, {"diagonal_prior": 1.0}),
    ],
)  # fmt: skip
def test_dawid_skene_fast_sums_equal_a_dense_reference(n, c, k, missing, readers, extra):
    r = _sparse_panel(n, c, k, missing, seed=n + c)
    readers = list(range(c)) if readers is None else readers
    m = 6
    extra = {"diagonal_prior": 0.0, **extra}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = DawidSkene(k, max_iter=m, tol=0.0, **extra).fit(r, column_readers=np.array(readers))
    T, priors, conf = _reference_em(
        r,
        k,
        readers,
        m + 1,
        smoothing=extra.get("smoothing", 0.0),
        diagonal=extra.get("diagonal_prior", 0.0),
        multi_only=extra.get("single_reads") == "posterior_only",
    )
    assert ds.n_iter_ == m and not ds.converged_
    np.testing.assert_allclose(ds.probas_, T, atol=1e-10)
    np.testing.assert_allclose(ds.priors_, priors, atol=1e-12)
    np.testing.assert_allclose(ds.confusions_, conf, atol=1e-12)
    np.testing.assert_array_equal(ds.n_reads_, (r >= 0).sum(axis=1))
    if n >= 20000:
        from multireader.stats.consensus import _distinct_rows

        _, inverse, _, _ = _distinct_rows(r, k)
        assert (inverse is None) == (c == 12)
