"""The statistics kernel: the ratings contract, the one bootstrap, the one formatter."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from multireader.stats import bootstrap as B
from multireader.stats.agreement import cohen_kappa, kappa_from_confusion, weight_matrix
from multireader.stats.estimates import Estimate, finite, fmt_ci, fmt_num, fmt_p, fmt_pct
from multireader.stats.ratings import check_n_classes, class_counts, validate_ratings

# ------------------------------------------------------------------------------ ratings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratings": np.array([0, 1])}, r"^ratings must be 2-D"),
        ({"ratings": np.array([[0, 3]])}, r"^ratings holds 3: code 3"),
        ({"ratings": np.array([[0, -2]])}, r"^ratings holds -2"),
        ({"ratings": np.array([[0.0, np.nan]])}, r"^ratings has NaN"),
        ({"ratings": np.array([[0.5, 1.0]])}, r"^ratings must hold whole class codes"),
        ({"ratings": np.array([["a", "b"]])}, r"^ratings must hold integer class codes"),
        ({"ratings": np.array([[0.0, 1.0]]), "floats": False}, r"^ratings must hold integer"),
        ({"ratings": np.array([[0], [1]]), "min_readers": 2}, r"^ratings has 1 reader column"),
        ({"ratings": np.array([[0, 1]]), "n_classes": 0}, r"^n_classes must be an integer"),
        ({"ratings": np.array([[0, 1]]), "n_classes": 2.0}, r"^n_classes must be an integer"),
        ({"ratings": np.array([[0, 1]]), "n_classes": True}, r"^n_classes must be an integer"),
        ({"ratings": np.array([[0, 0]]), "n_classes": 1, "min_classes": 2}, r"^n_classes .* 2"),
    ],
)
def test_validator_errors_name_the_argument(kwargs, match):
    kwargs = {"n_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        validate_ratings(**kwargs)


def test_validator_names_the_argument_it_is_given():
    with pytest.raises(ValueError, match=r"^reference holds 5"):
        validate_ratings(np.array([[5]]), 3, "reference")
    with pytest.raises(ValueError, match=r"^k must be"):
        check_n_classes(-1, name="k")


def test_validator_returns_contiguous_int64_and_accepts_whole_floats():
    x = validate_ratings(np.array([[0.0, 2.0], [-1.0, 1.0]]).T, 3)
    assert x.dtype == np.int64 and x.flags.c_contiguous
    assert x.tolist() == [[0, -1], [2, 1]]
    assert validate_ratings(np.array([[True, False]]), 2).tolist() == [[1, 0]]
    assert validate_ratings(np.zeros((0, 3), int), 2).shape == (0, 3)


def test_class_counts_matches_a_loop():
    rng = np.random.default_rng(0)
    x = rng.integers(-1, 4, (50, 6))
    expected = np.array([[np.sum(row == k) for k in range(4)] for row in x])
    np.testing.assert_array_equal(class_counts(x, 4), expected)
    # a class nobody used still has its column
    assert class_counts(np.array([[0, 0]]), 3).tolist() == [[2, 0, 0]]
    with pytest.raises(ValueError, match="ratings holds 3"):
        class_counts(x, 3)


def test_kappa_from_confusion_is_cohen_kappa_on_the_table():
    a = np.array([0, 1, 1, 2, 2, 0, 1])
    b = np.array([0, 1, 2, 2, 1, 0, 1])
    conf = np.bincount(a * 3 + b, minlength=9).reshape(3, 3)
    for w in (None, "linear", "quadratic"):
        k = float(kappa_from_confusion(conf, weight_matrix(3, w)))
        assert k == pytest.approx(cohen_kappa(a, b, 3, w), abs=1e-12)
    stacked = kappa_from_confusion(np.stack([conf, conf.T]), weight_matrix(3))
    assert stacked.shape == (2,) and stacked[0] == pytest.approx(stacked[1])
    with pytest.raises(ValueError, match="conf must be"):
        kappa_from_confusion(conf, np.eye(2))
    with pytest.raises(ValueError, match="weights"):
        weight_matrix(3, "cubic")


# ---------------------------------------------------------------------------- bootstrap


def _mean(s):
    return s[..., 0] / s[..., 1]


def test_bootstrap_of_a_mean_is_the_direct_numpy_computation():
    rng = np.random.default_rng(1)
    v = rng.normal(size=40)
    r = B.bootstrap(np.c_[v, np.ones(40)], _mean, n_boot=300, level=0.9, seed=7)
    # the same replicates by hand: multinomial counts of the 40 items
    counts = np.random.default_rng(7).multinomial(40, np.full(40, 1 / 40), size=300)
    reps = (counts @ v) / 40
    np.testing.assert_allclose(r.replicates, reps, rtol=1e-12)
    lo, hi = np.quantile(reps, [0.05, 0.95])
    assert r.ci_low == pytest.approx(lo, rel=1e-12) and r.ci_high == pytest.approx(hi, rel=1e-12)
    assert r.value == pytest.approx(v.mean(), rel=1e-12)
    assert (r.unit, r.n_units, r.n_boot, r.level) == ("item", 40, 300, 0.9)


def test_bootstrap_draws_are_equivalent_to_drawing_item_indices():
    # "draws": n indices per replicate, counted; the interval is that of np.random.choice
    v = np.arange(10.0)
    r = B.bootstrap(np.c_[v, np.ones(10)], _mean, n_boot=200, seed=3, method="draws")
    rng = np.random.default_rng(3)
    reps = v[rng.integers(0, 10, size=(200, 10))].mean(1)
    np.testing.assert_allclose(r.replicates, reps, rtol=1e-12)


def test_bootstrap_is_seeded():
    x = np.c_[np.arange(30.0), np.ones(30)]
    a = B.bootstrap(x, _mean, n_boot=100, seed=5)
    b = B.bootstrap(x, _mean, n_boot=100, seed=5)
    c = B.bootstrap(x, _mean, n_boot=100, seed=6)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert not np.array_equal(a.replicates, c.replicates)
    # a Generator is continued, not reseeded
    rng = np.random.default_rng(5)
    assert np.array_equal(B.bootstrap(x, _mean, n_boot=100, seed=rng).replicates, a.replicates)
    assert not np.array_equal(B.bootstrap(x, _mean, n_boot=100, seed=rng).replicates, a.replicates)


def test_group_resampling_keeps_whole_groups():
    # 8 patients with 1..8 items each; every item of patient p has value p, so a
    # replicate's (sum, count) pair must be a sum of whole patients' (p * m_p, m_p)
    sizes = np.arange(1, 9)
    groups = np.repeat([f"p{p}" for p in range(8)], sizes)
    values = np.repeat(np.arange(8.0), sizes)
    r = B.bootstrap(
        np.c_[values, np.ones(len(values))], lambda s: s, groups=groups, n_boot=400, seed=2
    )
    assert r.unit == "group" and r.n_units == 8
    sums, counts = r.replicates[:, 0], r.replicates[:, 1]
    # solve for how often each patient was drawn: counts = k @ sizes, sums = k @ (p * m_p)
    for s, c in zip(sums, counts, strict=True):
        assert c == int(c) and s == int(s)
    rng = np.random.default_rng(2)
    k = rng.multinomial(8, np.full(8, 1 / 8), size=400)
    np.testing.assert_array_equal(counts, k @ sizes)
    np.testing.assert_array_equal(sums, k @ (np.arange(8) * sizes))
    assert np.all(k.sum(1) == 8)  # 8 whole patients per replicate, never a part of one


def test_group_resampling_with_draws_keeps_whole_groups():
    groups = np.repeat(np.arange(5), 3)  # 5 patients, 3 items each
    r = B.bootstrap(np.ones((15, 1)), lambda s: s[..., 0], groups=groups, n_boot=50, method="draws")
    assert np.all(r.replicates == 15)  # 5 whole patients of 3 items each, every time


def test_rows_compress_identical_items_without_changing_the_distribution():
    cells = np.array([0, 0, 1, 2, 2, 2, 3])
    onehot = np.eye(4)[cells]
    a = B.bootstrap(np.eye(4), lambda s: s[..., 0] / s.sum(-1), rows=cells, n_boot=200, seed=1)
    ref = np.random.default_rng(1).multinomial(7, np.bincount(cells) / 7, size=200)
    np.testing.assert_allclose(a.replicates, ref[:, 0] / 7)
    full = B.bootstrap(onehot, lambda s: s[..., 0] / s.sum(-1), n_boot=2000, seed=1)
    assert a.value == full.value == pytest.approx(2 / 7)


def test_percentile_interval_skips_undefined_replicates_and_handles_none():
    reps = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    lo, hi, n = B.percentile_interval(reps, 0.5)
    assert lo[0] == pytest.approx(1.5) and hi[0] == pytest.approx(2.5)
    assert math.isnan(lo[1]) and n.tolist() == [3, 0]
    lo, hi, n = B.percentile_interval(np.zeros((0, 2)), 0.95)
    assert np.isnan(lo).all() and np.isnan(hi).all() and n.tolist() == [0, 0]


def test_bootstrap_with_no_replicates_gives_nan_bounds():
    r = B.bootstrap(np.c_[np.arange(5.0), np.ones(5)], _mean, n_boot=0)
    assert r.value == 2.0 and math.isnan(r.ci_low) and r.n_valid == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": -1}, "n_boot"),
        ({"n_boot": 1.5}, "n_boot"),
        ({"level": 1.0}, "level"),
        ({"level": "0.9"}, "level"),
        ({"groups": [1, 2]}, "groups"),
        ({"groups": [[1], [2], [3]]}, "groups"),
    ],
)
def test_bootstrap_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        B.bootstrap(np.ones((3, 2)), _mean, **kwargs)
    with pytest.raises(ValueError, match="features"):
        B.bootstrap(np.ones(3), _mean)
    with pytest.raises(ValueError, match="features"):
        B.bootstrap(np.ones((0, 2)), _mean)


# ---------------------------------------------------------------------------- estimates


def test_estimate_to_json_is_plain_and_never_nan():
    e = Estimate(float("nan"), (float("nan"), 1.0), np.int64(4), "undefined: 0/0")
    d = e.to_json()
    assert d == {"value": None, "ci": [None, 1.0], "n": 4, "note": "undefined: 0/0"}
    json.dumps(d, allow_nan=False)
    assert Estimate(np.float64(0.5)).to_json() == {
        "value": 0.5,
        "ci": None,
        "n": None,
        "note": None,
    }
    assert type(Estimate(np.float64(0.5), (np.float64(0), 1)).to_json()["ci"][0]) is float
    with pytest.raises(AttributeError):
        e.value = 1.0  # frozen


def test_finite():
    assert finite(None) is None and finite(float("inf")) is None
    assert finite(np.float32(0.25)) == 0.25 and finite(1 / 3, 4) == 0.3333


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: fmt_num(0.5234), "0.52"),
        (lambda: fmt_num(0.5234, 3), "0.523"),
        (lambda: fmt_num(None), "n/a"),
        (lambda: fmt_num(float("nan"), missing=""), ""),
        (lambda: fmt_num(12345.0, 3, significant=True), "1.23e+04"),
        (lambda: fmt_num(0.0, 3, significant=True), "0"),
        (lambda: fmt_ci(0.5234, [0.47, 0.571]), "0.52 [0.47, 0.57]"),
        (lambda: fmt_ci(0.5234, (0.47, 0.571), 3), "0.523 [0.470, 0.571]"),
        (lambda: fmt_ci(0.5, None), "0.50"),
        (lambda: fmt_ci(0.5, [None, 0.6]), "0.50"),
        (lambda: fmt_ci(float("nan"), [0.1, 0.2]), "n/a"),
        (lambda: fmt_ci({"value": 0.61, "ci": [0.5, 0.7], "n": 9}), "0.61 [0.50, 0.70]"),
        (lambda: fmt_ci(Estimate(0.1, (0.0, 0.2))), "0.10 [0.00, 0.20]"),
        (lambda: fmt_ci(None), "n/a"),
        (lambda: fmt_p(0.03217), "0.032"),
        (lambda: fmt_p(0.5), "0.5"),
        (lambda: fmt_p(0.00012), "0.00012"),
        (lambda: fmt_p(3e-7), "< 0.0001"),
        (lambda: fmt_p(None), "n/a"),
        (lambda: fmt_p(0.2, "p"), "p = 0.2"),
        (lambda: fmt_p(1e-9, "p"), "p < 0.0001"),
        (lambda: fmt_pct(0.256), "26%"),
        (lambda: fmt_pct(None), "n/a"),
    ],
)
def test_formatter_outputs(call, expected):
    assert call() == expected
