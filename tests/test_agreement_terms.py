"""What "n" means (issue 17, part 4): the items and reads behind each term of the
generalised Fleiss' kappa, and that it is Fleiss (1971) with equal reads per item."""

import numpy as np
import pytest

from multireader.stats.agreement import (
    categorical_summary,
    fleiss_kappa,
    gwet_ac,
    percent_agreement,
    term_counts,
)
from multireader.stats.ratings import class_counts


def _ragged(seed=0, n=300, R=4, K=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K, n)
    r = np.where(rng.random((n, R)) < 0.7, truth[:, None], rng.integers(0, K, (n, R)))
    n_reads = rng.choice([1, 2, 3, 4], n, p=[1 / 3, 2 / 9, 2 / 9, 2 / 9])
    r[np.arange(R)[None, :] >= n_reads[:, None]] = -1
    return r


def test_term_counts_by_hand():
    r = _ragged()
    reads = (r >= 0).sum(axis=1)
    t = term_counts(r, 3)
    assert t["agreement"] == {
        "n_items": int((reads >= 2).sum()),
        "n_reads": int(reads[reads >= 2].sum()),
    }
    assert t["chance"] == {"n_items": int((reads >= 1).sum()), "n_reads": int(reads.sum())}
    assert t["chance"]["n_items"] > t["agreement"]["n_items"]


def test_fleiss_kappa_is_built_from_those_terms():
    r = _ragged(1)
    C = class_counts(r, 3)
    reads = C.sum(axis=1)
    two, one = reads >= 2, reads >= 1
    pa = (C[two] * (C[two] - 1)).sum(1) / (reads[two] * (reads[two] - 1))
    pi = (C[one] / reads[one, None]).mean(axis=0)  # every read, single reads included
    pe = (pi**2).sum()
    assert fleiss_kappa(r, 3) == pytest.approx((pa.mean() - pe) / (1 - pe), rel=1e-12)
    assert percent_agreement(r, 3) == pytest.approx(pa.mean(), rel=1e-12)
    # dropping the single reads changes kappa only through the chance term
    pi2 = (C[two] / reads[two, None]).mean(axis=0)
    pe2 = (pi2**2).sum()
    assert fleiss_kappa(r[two], 3) == pytest.approx((pa.mean() - pe2) / (1 - pe2), rel=1e-12)
    assert fleiss_kappa(r[two], 3) != pytest.approx(fleiss_kappa(r, 3), rel=1e-6)


def test_equal_reads_per_item_is_fleiss_1971_as_statsmodels():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(2)
    r = rng.integers(0, 4, (200, 5))
    r[:50] = r[:50, :1]  # some agreement
    t = term_counts(r, 4)
    assert t["agreement"] == t["chance"] == {"n_items": 200, "n_reads": 1000}
    assert fleiss_kappa(r, 4) == pytest.approx(sm_fleiss(class_counts(r, 4)), rel=1e-12)


def test_summary_reports_the_terms_of_each_statistic():
    r = _ragged(3)
    s = categorical_summary(r, 3, ordinal=True, n_boot=0)
    t = term_counts(r, 3)
    terms = s["terms"]
    assert terms["fleiss_kappa"] == t and terms["gwet_ac1"] == t
    assert terms["gwet_ac2_quadratic"] == t
    assert terms["percent_agreement"] == {"agreement": t["agreement"], "chance": None}
    for k in ("krippendorff_alpha_nominal", "krippendorff_alpha_ordinal"):
        assert terms[k] == {"agreement": t["agreement"], "chance": t["agreement"]}
    # the stored n is the agreement term's items
    assert s["overall"]["fleiss_kappa"]["n"] == t["agreement"]["n_items"] == s["n_items"]
    assert s["overall"]["gwet_ac1"]["value"] == pytest.approx(gwet_ac(r, 3), abs=1e-9)
    # a panel with no item read twice still reports its terms
    none = categorical_summary(np.array([[0, -1], [-1, 1]]), 2, n_boot=0)
    assert none["terms"]["fleiss_kappa"]["agreement"] == {"n_items": 0, "n_reads": 0}
    assert none["terms"]["fleiss_kappa"]["chance"] == {"n_items": 2, "n_reads": 2}
