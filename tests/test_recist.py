"""RECIST 1.1 per reader and agreement between readers (multireader.stats.recist).

Known answers are worked by hand in the comments (sums, percent changes, the thresholds
exactly at and just off -30 %, +20 % / +5 mm, 10 mm nodes); peers are SimpleITK (the
Feret diameter and the oriented bounding box of a label), statsmodels and scikit-learn
(Cohen's and Fleiss' kappa) and pingouin (ICC).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from multireader.errors import MultireaderError
from multireader.stats import recist as R
from multireader.stats.agreement import UndefinedStatisticError
from multireader.stats.lesions import label_lesions
from multireader.stats.recist import Lesion

# ------------------------------------------------------------------ helpers


def _sitk_shape(mask2d: np.ndarray, spacing) -> sitk.LabelShapeStatisticsImageFilter:
    img = sitk.GetImageFromArray(mask2d.astype(np.uint8))
    img.SetSpacing((float(spacing[1]), float(spacing[0])))  # SimpleITK is (x=col, y=row)
    f = sitk.LabelShapeStatisticsImageFilter()
    f.ComputeFeretDiameterOn()
    f.ComputeOrientedBoundingBoxOn()
    f.Execute(img)
    return f


def _blob(rng: np.random.Generator, shape=(48, 56)) -> np.ndarray:
    """The largest component of smoothed noise: an irregular, non-convex lesion."""
    m = ndimage.gaussian_filter(rng.random(shape), 3.5) > 0.52
    lab, n = ndimage.label(m)
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    return lab == 1 + int(np.argmax(sizes))


def _ellipse(shape, spacing, a, b, theta) -> np.ndarray:
    """Pixels whose centre lies in the ellipse of semi-axes a, b (mm) rotated by theta."""
    r, c = np.mgrid[: shape[0], : shape[1]].astype(float)
    y, x = (r - shape[0] / 2) * spacing[0], (c - shape[1] / 2) * spacing[1]
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _vec_mm(ends, spacing) -> np.ndarray:
    (r0, c0), (r1, c1) = ends
    return np.array([(r1 - r0) * spacing[0], (c1 - c0) * spacing[1]])


# ------------------------------------------------------------- 1. diameters


def test_feret_between_pixel_centres_equals_simpleitk_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(12):
        m = _blob(rng)
        sp = rng.uniform(0.3, 2.0, 2)
        d = R.lesion_diameters(m, sp, "centers")
        assert d.long_axis_mm == pytest.approx(_sitk_shape(m, sp).GetFeretDiameter(1), rel=1e-9)
        # the ends reported are pixels of the lesion, that far apart
        assert np.linalg.norm(_vec_mm(d.long_axis_ends, sp)) == pytest.approx(d.long_axis_mm)
        (r0, c0), (r1, c1) = d.long_axis_ends
        assert m[round(r0), round(c0)] and m[round(r1), round(c1)]


def test_edges_and_centres_differ_by_one_pixel_along_a_run():
    m = np.zeros((5, 15), bool)
    m[2, 2:12] = True  # a run of 10 pixels along a row
    sp = (0.8, 0.7)
    # centres: (10 - 1) * 0.7 = 6.3 mm, SimpleITK's Feret; edges: 10 * 0.7 = 7.0 mm long,
    # and across the one-pixel run the pixel height 0.8 mm
    assert R.lesion_diameters(m, sp, "centers").long_axis_mm == pytest.approx(6.3)
    assert _sitk_shape(m, sp).GetFeretDiameter(1) == pytest.approx(6.3)
    e = R.lesion_diameters(m, sp)
    assert e.long_axis_mm == pytest.approx(math.hypot(7.0, 0.8))  # corner to corner
    # the chord perpendicular to that diagonal, corner to the far side: 0.8 * L / 7
    assert e.short_axis_mm == pytest.approx(0.8 * math.hypot(7.0, 0.8) / 7.0)
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    assert R.lesion_diameters(one, sp, "centers").long_axis_mm == 0.0
    assert R.lesion_diameters(one, sp).long_axis_mm == pytest.approx(math.hypot(0.8, 0.7))


def test_axis_aligned_rectangle_by_hand():
    # 8 rows x 20 cols at (row 1.0, col 0.5) mm: 8 mm x 10 mm by the pixel edges
    m = np.zeros((12, 24), bool)
    m[2:10, 2:22] = True
    d = R.lesion_diameters(m, (1.0, 0.5))
    assert d.long_axis_mm == pytest.approx(math.hypot(8, 10))  # the diagonal
    # the longest chord perpendicular to the diagonal (8, 10): from a corner along
    # (-10, 8) / |.| until it meets the far side, 8 / (8 / hypot) = hypot(8, 10) * 8 / 10
    assert d.short_axis_mm == pytest.approx(math.hypot(8, 10) * 8 / 10)


def test_ellipses_with_known_axes():
    rng = np.random.default_rng(3)
    for _ in range(10):
        sp = rng.uniform(0.5, 1.5, 2)
        a = rng.uniform(10, 30)
        b = rng.uniform(4, a / 1.6)
        m = _ellipse((120, 120), sp, a, b, rng.uniform(0, math.pi))
        pix = math.hypot(*sp)
        for conv in ("edges", "centers"):
            d = R.lesion_diameters(m, sp, conv)
            # rasterising moves each end by at most one pixel
            assert abs(d.long_axis_mm - 2 * a) <= pix
            assert abs(d.short_axis_mm - 2 * b) <= pix
            # the short axis is perpendicular to the long axis
            u, v = _vec_mm(d.long_axis_ends, sp), _vec_mm(d.short_axis_ends, sp)
            assert abs(u @ v) <= 1e-9 * (u @ u + v @ v)
        # centres are inside the pixel edges: never longer
        c = R.lesion_diameters(m, sp, "centers")
        e = R.lesion_diameters(m, sp, "edges")
        assert c.long_axis_mm < e.long_axis_mm
        # peer for the short axis: SimpleITK's oriented bounding box (principal axes,
        # pixel corners) of an elongated ellipse has the edges' axes within a pixel
        obb = sorted(_sitk_shape(m, sp).GetOrientedBoundingBoxSize(1))
        assert e.short_axis_mm == pytest.approx(obb[0], abs=pix)
        assert e.long_axis_mm == pytest.approx(obb[1], abs=pix)


def test_3d_measures_the_slice_where_the_long_axis_is_largest():
    rng = np.random.default_rng(5)
    vol = np.zeros((5, 40, 40), bool)
    sp3 = (5.0, 0.7, 0.9)
    for z, a in zip(range(5), (4, 8, 12, 9, 3), strict=True):
        vol[z] = _ellipse((40, 40), sp3[1:], a, a / 2, 0.3)
    d = R.lesion_diameters(vol, sp3, "centers")
    assert d.slice_index == 2
    per_slice = [_sitk_shape(vol[z], sp3[1:]).GetFeretDiameter(1) for z in range(5)]
    assert d.long_axis_mm == pytest.approx(max(per_slice))
    # two lesions in one volume, measured one by one from the labels
    vol2 = np.zeros((6, 50, 60), bool)
    vol2[:3, 5:20, 5:20] = _blob(rng, (15, 15))[None]
    vol2[3:, 25:45, 30:55] = _ellipse((20, 25), sp3[1:], 7, 4, 1.0)[None]
    labels, n = label_lesions(vol2)
    both = R.labelled_lesion_diameters(labels, n, sp3, "centers")
    assert len(both) == 2
    for i, d in enumerate(both):
        z = d.slice_index
        assert d.long_axis_mm == pytest.approx(
            _sitk_shape(labels[z] == i + 1, sp3[1:]).GetFeretDiameter(1)
        )
        (r0, c0), _ = d.long_axis_ends  # ends in the full volume's pixel coordinates
        assert labels[z, round(r0), round(c0)] == i + 1


def test_empty_mask_and_bad_input():
    d = R.lesion_diameters(np.zeros((4, 4)), (1, 1))
    assert (d.long_axis_mm, d.short_axis_mm, d.slice_index) == (0.0, 0.0, None)
    with pytest.raises(MultireaderError, match="spacing"):
        R.lesion_diameters(np.ones((3, 3)), (1, -1))
    with pytest.raises(MultireaderError, match="convention"):
        R.lesion_diameters(np.ones((3, 3)), (1, 1), "corners")
    with pytest.raises(MultireaderError, match="mask"):
        R.lesion_diameters(np.ones(3), (1, 1))


# ------------------------------------------------------- 2. target selection


def _rules_of(violations):
    return [v.rule for v in violations]


def test_measurability_thresholds():
    node = lambda s: Lesion("n", "node", 30.0, s, nodal=True)  # noqa: E731
    assert R.lesion_measurability(node(9.9)) == "non_pathological"
    assert R.lesion_measurability(node(10.0)) == "non_measurable"
    assert R.lesion_measurability(node(14.9)) == "non_measurable"
    assert R.lesion_measurability(node(15.0)) == "measurable"
    assert R.lesion_measurability(Lesion("a", "lung", 10.0)) == "measurable"
    assert R.lesion_measurability(Lesion("a", "lung", 9.9)) == "non_measurable"
    # 7 mm slices: the minimum is max(10, 2 x 7) = 14 mm
    thick = R.RecistRules(slice_thickness_mm=7.0)
    assert R.lesion_measurability(Lesion("a", "lung", 13.0), thick) == "non_measurable"
    assert R.lesion_measurability(Lesion("a", "lung", 14.0), thick) == "measurable"


LESIONS = [
    Lesion("liver1", "liver", 42.0),
    Lesion("liver2", "liver", 31.0),
    Lesion("liver3", "liver", 25.0),
    Lesion("lung1", "lung", 18.0),
    Lesion("lung2", "lung", 9.0),  # below 10 mm: non-measurable
    Lesion("node1", "mediastinum", 30.0, 22.0, nodal=True),
    Lesion("node2", "axilla", 25.0, 14.0, nodal=True),  # 10-15 mm: non-target node
    Lesion("node3", "pelvis", 24.0, 17.0, nodal=True),
    Lesion("bone1", "bone", 35.0),
]


def test_valid_choice_has_no_violation():
    assert R.validate_targets(LESIONS, ["liver1", "liver2", "lung1", "node1", "bone1"]) == []


def test_each_rule_is_named():
    # three targets in the liver: the per-organ cap is 2
    v = R.validate_targets(LESIONS, ["liver1", "liver2", "liver3"])
    assert _rules_of(v) == ["max_per_organ"]
    assert v[0].lesion_ids == ("liver1", "liver2", "liver3") and "liver" in v[0].message
    # a 9 mm lesion is not measurable
    v = R.validate_targets(LESIONS, ["liver1", "lung2"])
    assert _rules_of(v) == ["non_nodal_too_small"] and v[0].lesion_ids == ("lung2",)
    assert "9 mm < 10 mm" in v[0].message
    # a 14 mm node is a non-target node
    v = R.validate_targets(LESIONS, ["node2"])
    assert _rules_of(v) == ["node_too_small"] and "non-target" in v[0].message
    # six targets, two organs over the cap: nodes in three sites are one organ
    v = R.validate_targets(LESIONS, ["liver1", "liver2", "lung1", "node1", "node3", "bone1"])
    assert _rules_of(v) == ["max_targets"]
    v = R.validate_targets(LESIONS, ["node1", "node3", "node2"])
    assert _rules_of(v) == ["node_too_small", "max_per_organ"]
    assert "lymph node" in v[1].message
    per_site = R.RecistRules(nodes_one_organ=False)
    assert _rules_of(R.validate_targets(LESIONS, ["node1", "node3", "node2"], per_site)) == [
        "node_too_small"
    ]
    v = R.validate_targets(LESIONS, ["liver1", "liver1", "nope"])
    assert _rules_of(v) == ["unknown_lesion", "duplicate_target"]
    with pytest.raises(MultireaderError, match="short_axis_mm"):
        R.validate_targets([Lesion("n", "node", 20.0, nodal=True)], ["n"])
    with pytest.raises(MultireaderError, match="unique"):
        R.validate_targets([Lesion("a", "x", 20.0), Lesion("a", "y", 20.0)], [])


def test_selection_by_the_rule():
    # measurable by size (nodes by short axis): liver1 42, bone1 35, liver2 31,
    # liver3 25 (liver full), node1 22, lung1 18, node3 17; lung2, node2 excluded
    assert R.select_targets(LESIONS) == ["liver1", "bone1", "liver2", "node1", "lung1"]
    # covering organs first picks the largest of each organ: liver, bone, lymph
    # nodes, lung; then the largest left (liver2)
    assert R.select_targets(LESIONS, cover_organs=True) == [
        "liver1",
        "bone1",
        "node1",
        "lung1",
        "liver2",
    ]
    assert R.validate_targets(LESIONS, R.select_targets(LESIONS)) == []
    dicts = [{"lesion_id": "a", "organ": "lung", "long_axis_mm": 11.0}]
    assert R.select_targets(dicts) == ["a"]


# ----------------------------------------------------------- 3. sums and nadir


def test_sum_uses_short_axis_of_nodes():
    # liver 30 + lung 20 (long axes) + node 18 (short axis) = 68 mm; NaN -> not evaluable
    long_ = [[30.0, 20.0, 40.0], [np.nan, 10.0, 40.0]]
    short = [[15.0, 12.0, 18.0], [np.nan, 8.0, 9.0]]
    s = R.sum_of_diameters(long_, short, [False, False, True])
    assert s[0] == 68.0 and np.isnan(s[1])
    with pytest.raises(MultireaderError, match="short_axis_mm"):
        R.sum_of_diameters(long_, None, [False, False, True])


def test_nadir_and_percent_changes_after_a_pr():
    # baseline 100, 60 (-40 %: PR), 70, 72
    sums = [100.0, 60.0, 70.0, 72.0]
    assert R.nadir(sums).tolist() == [100.0, 100.0, 60.0, 60.0]
    assert R.percent_change_from_baseline(sums) == pytest.approx([0, -40, -30, -28])
    # from the nadir of 60: 70 is +16.7 %, 72 is +20 % (and +12 mm)
    assert R.percent_change_from_nadir(sums) == pytest.approx([0, -40, 100 / 6, 20])
    # 70 mm is still -30 % from baseline: PR; 72 mm is -28 % from baseline but +20 % and
    # +12 mm from the nadir: PD
    assert R.target_response([[s] for s in sums]) == ["PR", "PR", "PD"]
    # an unevaluable timepoint does not become the nadir
    assert R.nadir([100.0, np.nan, 80.0]).tolist() == [100.0, 100.0, 100.0]
    with pytest.raises(MultireaderError, match="baseline"):
        R.nadir([0.0, 1.0])


# ----------------------------------------------------------------- 4. responses


def test_partial_response_threshold_is_inclusive():
    # baseline 30 + 20 = 50 mm; 21 + 14 = 35 mm is (35 - 50) / 50 = -30.0 %: PR
    assert R.target_response([[30.0, 20.0], [21.0, 14.0]]) == ["PR"]
    # baseline 100 mm; 70.1 mm is -29.9 %: SD
    assert R.target_response([[60.0, 40.0], [42.1, 28.0]]) == ["SD"]


def test_progression_needs_20_percent_and_5_mm_from_the_nadir():
    # baseline 30, nadir 24.5 (-18.3 %: SD); 29.4 is +20 % (4.9 / 24.5) but +4.9 mm: SD
    assert R.target_response([[30.0], [24.5], [29.4]]) == ["SD", "SD"]
    # baseline 30, nadir 25; 30 is +20 % (5 / 25) and +5 mm: PD
    assert R.target_response([[30.0], [25.0], [30.0]]) == ["SD", "PD"]
    # +25 % from a nadir of 16 but only +4 mm: SD
    assert R.target_response([[20.0], [16.0], [20.0]]) == ["SD", "SD"]


def test_complete_response_needs_nodes_below_10_mm():
    # a liver lesion (long axis) and a node (short axis 16 mm): baseline 20 + 16 = 36
    nodal = [False, True]
    long_ = [[20.0, 25.0], [0.0, 15.0], [0.0, 15.0]]
    short = [[12.0, 16.0], [0.0, 9.9], [0.0, 10.0]]
    # node 9.9 mm: CR (the sum, 9.9 mm, is not 0); node 10.0 mm: 10 / 36 = -72 %: PR
    assert R.target_response(long_, short, nodal) == ["CR", "PR"]


def test_new_lesion_and_non_target_progression_are_pd_whatever_the_sum():
    table = [[50.0], [0.0], [0.0]]  # the target disappeared: target CR
    assert R.target_response(table) == ["CR", "CR"]
    assert R.timepoint_responses(table, new_lesions=[False, True]) == ["CR", "PD"]
    assert R.timepoint_responses(table, non_target=["CR", "PD"]) == ["CR", "PD"]
    assert R.timepoint_responses(table, non_target=["non-CR/non-PD", "NE"]) == ["PR", "PR"]


def test_missing_target_is_not_evaluable_unless_already_progressed():
    # baseline 30 + 20 = 50; then the second target is not assessed
    assert R.target_response([[30.0, 20.0], [25.0, np.nan]]) == ["NE"]
    # the assessed target alone is 70 mm: +40 %, +20 mm whatever the other adds: PD
    assert R.target_response([[30.0, 20.0], [70.0, np.nan]]) == ["PD"]


def test_overall_response_table():
    assert R.overall_response("CR", "CR") == "CR"
    assert R.overall_response("CR", None) == "CR"
    assert R.overall_response("CR", "NE") == "PR"
    assert R.overall_response("PR", "NE") == "PR"
    assert R.overall_response("SD", "non-CR/non-PD") == "SD"
    assert R.overall_response("NE", "non-CR/non-PD") == "NE"
    assert R.overall_response("NE", "PD") == "PD"
    assert R.overall_response(None, "non-CR/non-PD") == "non-CR/non-PD"
    assert R.overall_response(None, "CR", True) == "PD"
    with pytest.raises(MultireaderError, match="non_target"):
        R.overall_response("SD", "stable")


def test_best_overall_response():
    bor = R.best_overall_response
    # unconfirmed: a PR at any time before progression
    assert bor(["SD", "PR", "SD", "PD"], [42, 84, 126, 168]) == "PR"
    # SD needs 6 weeks (42 days) from baseline: day 35 is too early, day 42 is enough
    assert bor(["SD", "PD"], [35, 70]) == "PD"
    assert bor(["SD", "PD"], [42, 84]) == "SD"
    assert bor(["SD"], [35]) == "NE"
    assert bor(["SD", "NE"], [35, 70], min_sd_days=56) == "NE"
    # nothing after the first PD counts
    assert bor(["PD", "CR"], [42, 84]) == "PD"
    assert bor([], []) == "NE"
    # confirmation after >= 28 days
    assert bor(["PR", "SD"], [56, 84], confirmation_days=28) == "SD"
    assert bor(["PR", "PR"], [56, 70], confirmation_days=28) == "SD"  # 14 days apart
    assert bor(["PR", "CR"], [56, 84], confirmation_days=28) == "PR"
    assert bor(["CR", "CR"], [56, 84], confirmation_days=28) == "CR"
    assert bor(["CR", "PR"], [56, 84], confirmation_days=28) == "PR"
    with pytest.raises(MultireaderError, match="days"):
        bor(["SD"], [1, 2])


# ----------------------------------------------------------------- 5. agreement


def _random_categories(rng, n=300, readers=3, p_agree=0.7):
    truth = rng.integers(0, 4, n)
    out = np.where(
        rng.random((n, readers)) < p_agree, truth[:, None], rng.integers(0, 4, (n, readers))
    )
    return np.array(R.RESPONSES)[out]


def test_discordance_by_hand():
    # 4 patient-timepoints, 1 disagreement; an item with one read is left out
    cats = [["PR", "PR"], ["PR", "SD"], ["SD", "SD"], ["PD", "PD"], ["SD", None]]
    assert R.discordance_rate(cats) == 0.25
    # three readers: one item of two has any disagreement
    assert R.discordance_rate([["CR", "CR", "PR"], ["SD", "SD", "SD"]]) == 0.5


def test_response_agreement_against_statsmodels_and_sklearn():
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa

    rng = np.random.default_rng(7)
    cats = _random_categories(rng)
    codes = R.response_codes(cats)
    out = R.response_agreement(cats)
    table, _ = aggregate_raters(codes, n_cat=4)
    assert out["fleiss_kappa"]["value"] == pytest.approx(fleiss_kappa(table, method="fleiss"))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        k = out["pairwise_cohen_kappa"][a][b]
        assert k == pytest.approx(cohen_kappa_score(codes[:, a], codes[:, b]))
        conf = np.zeros((4, 4))
        np.add.at(conf, (codes[:, a], codes[:, b]), 1)
        assert k == pytest.approx(cohens_kappa(conf).kappa)
    lin = R.response_agreement(cats, weights="linear")["pairwise_cohen_kappa"][0][1]
    assert lin == pytest.approx(cohen_kappa_score(codes[:, 0], codes[:, 1], weights="linear"))
    # two readers: discordance is 1 - percent agreement
    two = R.response_agreement(cats[:, :2])
    assert two["discordance_rate"]["value"] == pytest.approx(1 - two["percent_agreement"]["value"])
    assert two["discordance_rate"]["value"] == pytest.approx(np.mean(cats[:, 0] != cats[:, 1]))


def test_response_agreement_resamples_patients():
    rng = np.random.default_rng(8)
    cats = _random_categories(rng, n=240)
    patients = np.repeat(np.arange(60), 4)  # 4 follow-ups per patient
    out = R.response_agreement(cats, groups=patients, n_boot=300, seed=1)
    again = R.response_agreement(cats, groups=patients, n_boot=300, seed=1)
    assert out == again
    for key in ("percent_agreement", "fleiss_kappa", "discordance_rate"):
        lo, hi = out[key]["ci"]
        assert lo < out[key]["value"] < hi
    # NE as a category adds a class; as missing it drops the read
    cats[0, 0] = "NE"
    assert R.response_codes(cats, "class")[0, 0] == 4
    assert R.response_codes(cats)[0, 0] == -1
    with pytest.raises(MultireaderError, match="categories"):
        R.response_codes([["CR", "MR"]])


def test_icc_of_sums_against_pingouin():
    import pandas as pd
    import pingouin as pg

    rng = np.random.default_rng(11)
    n, k = 40, 3
    true = rng.uniform(30, 150, n)
    vals = true[:, None] * (1 + rng.normal(0, 0.08, (n, k))) + np.array([0.0, 3.0, -2.0])
    out = R.measurement_agreement(vals, n_boot=200, groups=np.arange(n) // 2)
    long = pd.DataFrame(
        {
            "item": np.repeat(np.arange(n), k),
            "reader": np.tile(np.arange(k), n),
            "y": vals.ravel(),
        }
    )
    peer = pg.intraclass_corr(long, targets="item", raters="reader", ratings="y")
    peer = peer.set_index("Type")["ICC"]
    for ours, theirs in (
        ("ICC(1,1)", "ICC(1,1)"),
        ("ICC(2,1)", "ICC(A,1)"),
        ("ICC(3,1)", "ICC(C,1)"),
    ):
        assert out["icc"][ours]["value"] == pytest.approx(peer[theirs])
    # the patient-bootstrap ICC's point estimate is the same ICC, from feature sums
    for form, theirs in (("ICC(2,1)", "ICC(A,1)"), ("ICC(3,1)", "ICC(C,1)")):
        b = out["icc_bootstrap"][form]
        assert b["value"] == pytest.approx(peer[theirs])
        assert b["ci"][0] < b["value"] < b["ci"][1]
    # Bland-Altman of reader 0 minus reader 1 has a bias near the planted -3 mm
    assert out["bland_altman"][0][1]["bias"] == pytest.approx(np.mean(vals[:, 0] - vals[:, 1]))


def test_repeatability_coefficient_by_hand_and_against_bland_altman():
    # items (10, 12), (20, 19), (30, 30): squared deviations from the item means
    # 1 + 1, 0.25 + 0.25, 0 = 2.5 on 3 degrees of freedom, wSD = sqrt(2.5 / 3) = 0.9129,
    # RC = 1.96 sqrt(2) wSD = 2.77 x 0.9129 = 2.530
    rc = R.repeatability_coefficient([[10.0, 12.0], [20.0, 19.0], [30.0, 30.0]])
    assert rc["wsd"] == pytest.approx(math.sqrt(2.5 / 3))
    assert rc["rc"] == pytest.approx(2.7718 * math.sqrt(2.5 / 3), rel=1e-4)
    assert rc["df"] == 3 and rc["rc_ci"][0] < rc["rc"] < rc["rc_ci"][1]
    # two readers: wSD^2 = mean(d^2) / 2 (Bland & Altman 1999, sec. 4)
    rng = np.random.default_rng(2)
    v = rng.normal(50, 10, (30, 1)) + rng.normal(0, 2, (30, 2))
    d = v[:, 0] - v[:, 1]
    assert R.repeatability_coefficient(v)["wsd"] == pytest.approx(math.sqrt(np.mean(d**2) / 2))
    m = R.measurement_agreement(v, n_boot=100)
    assert m["repeatability_coefficient"]["value"] == pytest.approx(
        R.repeatability_coefficient(v)["rc"]
    )


def test_target_selection_overlap():
    # {L1, L2, L3} vs {L2, L3, L4}: 2 shared of 4 in all
    assert R.target_selection_jaccard(["L1", "L2", "L3"], ["L2", "L3", "L4"]) == 0.5
    m = R.pairwise_target_selection_jaccard([{"L1", "L2"}, {"L2"}, set(), set()])
    assert m[0, 1] == 0.5 and m[0, 2] == 0.0 and np.isnan(m[2, 3]) and m[1, 1] == 1.0
    with pytest.raises(UndefinedStatisticError):
        R.target_selection_jaccard([], [])


def test_reader_drift_flags_the_drifting_reader():
    rng = np.random.default_rng(4)
    n_lesions, n_sessions = 25, 8
    true = rng.uniform(12, 60, n_lesions)
    session = np.repeat(np.arange(n_sessions), n_lesions)
    diam = np.tile(true, n_sessions)[:, None] * np.exp(rng.normal(0, 0.03, (len(session), 3)))
    diam[:, 2] *= 1.03**session  # reader 2 measures 3 % larger each session
    out = R.reader_drift(diam, session)
    assert [r["drifting"] for r in out] == [False, False, True]
    d2 = out[2]
    assert d2["slope_per_session"] > 0.02 and d2["spearman_rho"] > 0.5
    assert d2["bias_by_session"][7.0] > d2["bias_by_session"][0.0] * 1.15
    assert d2["reference_readers"] == [0, 1] and d2["flag_step"] == 0
    # against the plain mean of the others, reader 0 would seem to drift down (its
    # reference includes reader 2); against the readers not flagged it does not
    assert abs(out[0]["slope_per_session"]) < 0.005
    # two readers: a trend between them is flagged on both, it cannot be attributed
    pair = R.reader_drift(diam[:, 1:], session)
    assert [r["drifting"] for r in pair] == [True, True]
    assert not any(r["drifting"] for r in R.reader_drift(diam[:, :2], session))
    with pytest.raises(MultireaderError, match="session"):
        R.reader_drift(diam, session[:-1])


def test_docstring_examples_print_what_they_show():
    import doctest

    globs = {**vars(R), "np": np}
    res = doctest.testmod(R, globs=globs, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 20 and res.failed == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: R.RecistRules(max_per_organ=0), "max_per_organ"),
        (lambda: R.RecistRules(slice_thickness_mm=-1.0), "slice_thickness_mm"),
        (lambda: R.RecistRules(pr_change_pct=30.0), "pr_change_pct"),
        (lambda: R.sum_of_diameters([[1.0, 2.0]], nodal=[True]), "nodal"),
        (lambda: R.sum_of_diameters([[1.0, -2.0]]), "diameters"),
        (lambda: R.target_response([[np.nan], [1.0]]), "baseline"),
        (lambda: R.timepoint_responses([[9.0], [8.0]], new_lesions=[1, 0]), "new_lesions"),
        (lambda: R.percent_change_from_baseline([[1.0]]), "sums"),
        (lambda: R.best_overall_response(["OK"], [1]), "responses"),
        (lambda: R.validate_targets(LESIONS, "liver1"), "target_ids"),
        (lambda: R.select_targets([{"organ": "lung"}]), "lesion_id"),
        (lambda: R.response_agreement([["CR"], ["PR"]]), "categories"),
        (lambda: R.response_agreement([["CR", "PR"]], ne="class", weights="linear"), "ne"),
        (lambda: R.repeatability_coefficient([[1.0, np.nan]]), "values"),
        (lambda: R.target_selection_jaccard("L1", ["L1"]), "a must"),
        (lambda: R.labelled_lesion_diameters(np.zeros((2, 2)), 1, (1, 1)), "labels"),
    ],
)
def test_input_errors_name_the_argument(call, match):
    with pytest.raises(MultireaderError, match=match):
        call()
