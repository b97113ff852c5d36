"""Agreement statistics against published values and reference implementations.

References used only in tests: scipy (correlations), scikit-learn (kappa, precision/recall),
and the GPL ``krippendorff`` package (cross-check of alpha; the project computes alpha itself).
"""
from __future__ import annotations

import json
import math
import warnings

import krippendorff
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import cohen_kappa_score, f1_score, precision_score, recall_score

from hitl.analyse import statistics as A
from hitl.analyse.agreement import compute_agreement

from . import reference_statistics as R

NAN = np.nan

# The reliability-data example in the krippendorff package's alpha() docstring / README (3 coders, 15 units).
PACKAGE_EXAMPLE = [[NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
                   [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
                   [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4]]

# Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", the worked example with 4 observers
# and 12 units (also irr's / DescTools' "C" data and irrCAC's cac.raw4raters). Published there:
# nominal 0.743, ordinal 0.815, interval 0.849 (and ratio 0.797).
KRIPPENDORFF_2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, NAN],
                     [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, 3],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]]

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges. Published: ICC(2,1) = 0.29 (= McGraw &
# Wong's ICC(A,1)) and ICC(3,1) = 0.71 (= ICC(C,1)).
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
                         dtype=float)


def expand(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rater pairs from a contingency table (rows: rater A's category, columns: rater B's)."""
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [i] * count
            b += [j] * count
    return np.array(a), np.array(b)


def no_nan(x) -> bool:
    if isinstance(x, dict):
        return all(no_nan(v) for v in x.values())
    if isinstance(x, list):
        return all(no_nan(v) for v in x)
    if isinstance(x, float):
        return math.isfinite(x)
    return True


def ties_data(rng: np.random.Generator, n: int, missing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Human stars 1-10 and a correlated one-decimal model score: ties everywhere, some missing."""
    q = rng.normal(0, 1, n)
    a = np.clip(np.rint(5.5 + 1.8 * (q + rng.normal(0, 0.6, n))), 1, 10)
    b = np.clip(np.round(5 + 2 * (q + rng.normal(0, 0.8, n)), 1), 0, 10)
    if missing:
        a[rng.random(n) < missing] = NAN
        b[rng.random(n) < missing] = NAN
    return a, b


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha
# ---------------------------------------------------------------------------------------------

def test_alpha_package_docstring_example():
    assert round(R.krippendorff_alpha(PACKAGE_EXAMPLE, "nominal"), 3) == 0.691
    assert round(R.krippendorff_alpha(PACKAGE_EXAMPLE, "interval"), 3) == 0.811
    # The package prints nominal 0.691358 and interval 0.810845 in that example; ordinal it gives 0.807.
    assert R.krippendorff_alpha(PACKAGE_EXAMPLE, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert R.krippendorff_alpha(PACKAGE_EXAMPLE, "interval") == pytest.approx(0.810845, abs=1e-6)
    assert round(R.krippendorff_alpha(PACKAGE_EXAMPLE, "ordinal"), 3) == 0.807


def test_alpha_krippendorff_2011_published_values():
    assert round(R.krippendorff_alpha(KRIPPENDORFF_2011, "nominal"), 3) == 0.743
    assert round(R.krippendorff_alpha(KRIPPENDORFF_2011, "ordinal"), 3) == 0.815
    assert round(R.krippendorff_alpha(KRIPPENDORFF_2011, "interval"), 3) == 0.849
    # irrCAC's README gives 0.74342 for the same data (krippen.alpha.raw, unweighted).
    assert R.krippendorff_alpha(KRIPPENDORFF_2011, "nominal") == pytest.approx(0.74342, abs=1e-5)


@pytest.mark.parametrize("level", ["nominal", "interval", "ordinal"])
@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_krippendorff_package_on_random_data(level, seed):
    rng = np.random.default_rng(seed)
    raters, units = rng.integers(2, 7), rng.integers(5, 60)
    if seed % 2:
        x = rng.integers(1, 6, (raters, units)).astype(float)
    else:  # decimals, as model scores have
        x = np.round(rng.normal(5, 2, (raters, units)), 1)
    x[rng.random(x.shape) < 0.35] = NAN
    ours = R.krippendorff_alpha(x, level)
    ref = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
    assert ours == pytest.approx(ref, abs=1e-10)


def test_alpha_undefined_cases():
    assert R.krippendorff_alpha(np.full((3, 4), NAN)) is None  # all missing
    assert R.krippendorff_alpha([[1, NAN], [NAN, 2]]) is None  # nothing pairable
    assert R.krippendorff_alpha([[3, 3, 3], [3, 3, 3]]) is None  # no variation: alpha is 0/0
    assert R.krippendorff_alpha([[1, 2, 3]]) is None  # one rater
    assert R.krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "ordinal") == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Correlations and differences against scipy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_correlations_match_scipy_with_ties_and_missing(seed):
    rng = np.random.default_rng(seed)
    a, b = ties_data(rng, int(rng.integers(3, 400)), missing=0.1)
    ok = np.isfinite(a) & np.isfinite(b)
    assert A.spearman(a, b) == pytest.approx(stats.spearmanr(a[ok], b[ok]).statistic, abs=1e-12)
    assert R.kendall_tau_b(a, b) == pytest.approx(stats.kendalltau(a[ok], b[ok], variant="b").statistic, abs=1e-12)
    assert R.pearson(a, b) == pytest.approx(stats.pearsonr(a[ok], b[ok]).statistic, abs=1e-12)
    d = b[ok] - a[ok]
    assert R.mae(a, b) == pytest.approx(np.abs(d).mean(), abs=1e-12)
    bias, lo, hi = R.bland_altman(a, b)
    assert bias == pytest.approx(d.mean(), abs=1e-12)
    assert lo == pytest.approx(d.mean() - 1.96 * d.std(ddof=1), abs=1e-10)
    assert hi == pytest.approx(d.mean() + 1.96 * d.std(ddof=1), abs=1e-10)


def test_correlations_continuous_values_and_heavy_ties():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.normal(size=300)
    assert R.kendall_tau_b(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
    a, b = rng.integers(0, 2, 300), rng.integers(0, 3, 300)  # ties everywhere
    assert R.kendall_tau_b(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
    assert A.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_correlations_undefined_are_none():
    assert A.spearman([5, 5, 5, 5], [1, 2, 3, 4]) is None  # constant rater
    assert R.kendall_tau_b([1, 2, 3], [7, 7, 7]) is None
    assert R.pearson([1], [2]) is None  # n < 2
    assert A.spearman([], []) is None
    assert R.pearson([NAN, NAN], [1, 2]) is None  # all missing
    assert R.mae([None, None], [1, 2]) is None
    assert R.bland_altman([], []) == (None, None, None)
    bias, lo, hi = R.bland_altman([3], [5])  # one pair: a bias, but no spread
    assert bias == 2 and lo is None and hi is None
    assert A.spearman([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)  # perfect agreement
    assert R.kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------
# Kappas against scikit-learn and published tables
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_kappas_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = list(range(0, 11)) if seed % 2 else list(range(1, 6))
    n = int(rng.integers(5, 300))
    a = rng.integers(labels[0], labels[-1] + 1, n)
    b = np.clip(a + rng.integers(-2, 3, n), labels[0], labels[-1])
    assert R.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    ref = cohen_kappa_score(a, b, labels=labels, weights="quadratic")
    assert A.quadratic_weighted_kappa(a, b, labels) == pytest.approx(ref, abs=1e-12)


def test_qwk_bins_decimals_half_up_and_clips():
    rng = np.random.default_rng(11)
    a, b = ties_data(rng, 500)
    ai, bi = np.floor(a + 0.5).astype(int), np.clip(np.floor(b + 0.5), 0, 10).astype(int)
    ref = cohen_kappa_score(ai, bi, labels=list(range(11)), weights="quadratic")
    assert A.quadratic_weighted_kappa(a, b) == pytest.approx(ref, abs=1e-12)
    # Values outside the labels are clipped to the nearest end; 6.5 rounds up to 7.
    assert A.quadratic_weighted_kappa([6.5, 12, -3], [7, 10, 0], labels=range(0, 11)) == pytest.approx(1.0)
    assert A.quadratic_weighted_kappa([5, 5], [5, 5]) is None  # one category for both: 0/0


def test_irrcac_published_3x3_table():
    # irrCAC README (Gwet): cont3x3abstractors -> Cohen's kappa 0.7964094, AC1 0.8493305, agreement 0.89.
    a, b = expand([[13, 0, 0], [0, 20, 7], [0, 4, 56]])
    assert R.cohen_kappa(a, b) == pytest.approx(0.7964094, abs=1e-7)
    assert R.gwet_ac1(a, b) == pytest.approx(0.8493305, abs=1e-7)


def test_gwet_ac1_kappa_paradox_by_hand():
    # 2x2 table: both yes 118, A yes/B no 5, A no/B yes 2, both no 0 (n = 125).
    # By hand: pa = 118/125 = 0.944; pi_yes = (123 + 120) / 250 = 0.972;
    # AC1: pe = 2 * 0.972 * 0.028 = 0.054432 -> (0.944 - 0.054432) / 0.945568 = 0.940784...
    # kappa: pe = 0.984 * 0.96 + 0.016 * 0.04 = 0.94528 -> (0.944 - 0.94528) / 0.05472 = -0.023392
    a, b = expand([[0, 2], [5, 118]])  # index 1 = yes
    a, b = a.astype(bool), b.astype(bool)
    assert R.gwet_ac1(a, b) == pytest.approx((0.944 - 0.054432) / 0.945568, abs=1e-12)
    assert round(R.gwet_ac1(a, b), 4) == 0.9408
    assert R.cohen_kappa(a, b) == pytest.approx(-0.00128 / 0.05472, abs=1e-12)
    out = A.hero_statistics(A.hero_table(a, b)[None])
    assert out["gwet_ac1"][0] == pytest.approx(R.gwet_ac1(a, b), abs=1e-12)
    assert out["cohen_kappa"][0] == pytest.approx(R.cohen_kappa(a, b), abs=1e-12)


def test_kappa_edge_cases():
    assert R.cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # 0/0
    assert R.cohen_kappa([], []) is None
    assert R.gwet_ac1([True, True], [True, True]) == pytest.approx(1.0)  # AC1 stays defined
    assert R.gwet_ac1([1, 1], [1, 1]) is None  # one category seen, none declared
    assert R.gwet_ac1([None, True], [False, None]) is None


@pytest.mark.parametrize("seed", range(5))
def test_precision_recall_f1_and_binary_kappa_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(200) < 0.3
    pred = np.where(rng.random(200) < 0.7, truth, rng.random(200) < 0.5)
    p, r, f = R.precision_recall_f1(pred, truth)
    assert p == pytest.approx(precision_score(truth, pred))
    assert r == pytest.approx(recall_score(truth, pred))
    assert f == pytest.approx(f1_score(truth, pred))
    out = A.hero_statistics(A.hero_table(pred, truth)[None])
    assert out["cohen_kappa"][0] == pytest.approx(cohen_kappa_score(pred, truth), abs=1e-12)


def test_precision_recall_undefined():
    assert R.precision_recall_f1([False, False], [True, False]) == (None, 0.0, 0.0)
    assert R.precision_recall_f1([True, False], [False, False]) == (0.0, None, 0.0)
    assert R.precision_recall_f1([False], [False]) == (None, None, None)
    assert R.precision_recall_f1([], []) == (None, None, None)


# ---------------------------------------------------------------------------------------------
# ICC
# ---------------------------------------------------------------------------------------------

def anova_icc(x: np.ndarray) -> tuple[float, float]:
    """Independent two-way ANOVA by explicit sums (McGraw & Wong 1996, Table 4, single measures)."""
    n, k = x.shape
    grand = sum(sum(row) for row in x) / (n * k)
    row_means = [sum(row) / k for row in x]
    col_means = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    ss_rows = k * sum((m - grand) ** 2 for m in row_means)
    ss_cols = n * sum((m - grand) ** 2 for m in col_means)
    ss_total = sum((x[i][j] - grand) ** 2 for i in range(n) for j in range(k))
    ms_r = ss_rows / (n - 1)
    ms_c = ss_cols / (k - 1)
    ms_e = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    icc_a = (ms_r - ms_e) / (ms_r + (k - 1) * ms_e + k / n * (ms_c - ms_e))
    icc_c = (ms_r - ms_e) / (ms_r + (k - 1) * ms_e)
    return icc_a, icc_c


def test_icc_shrout_fleiss_table_2():
    icc_a, icc_c = R.icc(*SHROUT_FLEISS.T)
    assert round(icc_a, 2) == 0.29  # ICC(2,1)
    assert round(icc_c, 2) == 0.71  # ICC(3,1)
    assert (icc_a, icc_c) == pytest.approx(anova_icc(SHROUT_FLEISS), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_icc_two_raters_fast_path_matches_anova(seed):
    rng = np.random.default_rng(seed)
    a, b = ties_data(rng, int(rng.integers(2, 300)))
    assert R.icc(a, b) == pytest.approx(anova_icc(np.column_stack([a, b])), abs=1e-10)
    # Two columns of Shrout & Fleiss too: the 2-rater table path and the k-rater path agree.
    x = SHROUT_FLEISS[:, [0, 3]]
    assert R.icc(x[:, 0], x[:, 1]) == pytest.approx(anova_icc(x), abs=1e-12)


def test_icc_edge_cases():
    assert R.icc([1], [2]) == (None, None)
    assert R.icc([], []) == (None, None)
    assert R.icc([4, 4, 4], [4, 4, 4]) == (None, None)
    assert R.icc([1, 2, 3], [1, 2, 3]) == pytest.approx((1.0, 1.0))
    icc_a, icc_c = R.icc([1, 2, 3], [3, 4, 5])  # a constant shift: consistent, not in absolute agreement
    assert icc_c == pytest.approx(1.0) and icc_a < 1


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------

def test_bootstrap_ci_reference_is_seeded():
    rng = np.random.default_rng(0)
    a, b = ties_data(rng, 200)
    one = R.bootstrap_ci(A.spearman, a, b, resamples=200, seed=5)
    assert one == R.bootstrap_ci(A.spearman, a, b, resamples=200, seed=5)
    assert one != R.bootstrap_ci(A.spearman, a, b, resamples=200, seed=6)
    assert one[0] <= A.spearman(a, b) <= one[1]
    assert R.bootstrap_ci(A.spearman, a, b, resamples=0) is None
    assert R.bootstrap_ci(A.spearman, [5, 5, 5], [1, 2, 3], resamples=50) is None  # never defined


def test_table_bootstrap_matches_image_bootstrap():
    """The contingency-table resampling gives the same intervals (up to Monte Carlo error) as the plain one."""
    rng = np.random.default_rng(1)
    a, b = ties_data(rng, 400)
    rows = rows_from({"cur": a}, {"m": b})
    pair = next(p for p in compute_agreement(rows, resamples=2000, seed=3)["pairs"] if p["a"] == "cur")
    for stat, fn in (("spearman", A.spearman), ("mae", R.mae), ("kendall_tau_b", R.kendall_tau_b)):
        ref = R.bootstrap_ci(fn, a, b, resamples=2000, seed=4)
        assert pair["ci"][stat] == pytest.approx(list(ref), abs=0.02)


@pytest.mark.parametrize("by_image", [False, True])
def test_resampled_tables_keep_n_and_are_unbiased(by_image):
    rng = np.random.default_rng(2)
    a, b = ties_data(rng, 300)
    tab = A.ContingencyTable(a, b, range(11))
    draws = np.concatenate(list(A.resampled_tables(tab.counts, 400, np.random.default_rng(0),
                                                    tab.cells if by_image else None)))
    assert draws.shape == (400, *tab.counts.shape)
    assert np.all(draws.sum(axis=(1, 2)) == 300)
    assert np.abs(draws.mean(0) - tab.counts).max() < 1.5


# ---------------------------------------------------------------------------------------------
# compute_agreement
# ---------------------------------------------------------------------------------------------

def rows_from(humans: dict, models: dict, hero_h: dict | None = None, hero_m: dict | None = None,
              modes: dict | None = None, species: list | None = None) -> list[dict]:
    """Long-table rows from per-rater arrays (NaN = not rated)."""
    rows = []
    for kind, raters, heroes in (("human", humans, hero_h or {}), ("model", models, hero_m or {})):
        for name, scores in raters.items():
            for i, s in enumerate(scores):
                h = heroes.get(name)
                if np.isnan(s) and (h is None or h[i] is None):
                    continue
                rows.append({"image_id": f"i{i}", "rater": name, "kind": kind,
                             "score": None if np.isnan(s) else float(s),
                             "hero": None if h is None or h[i] is None else bool(h[i]),
                             "mode": (modes or {}).get(name, ["blind"] * len(scores))[i] if kind == "human" else None,
                             "species": None if species is None else species[i]})
    return rows


def realistic_rows(n: int = 300, seed: int = 0, curators: int = 2) -> list[dict]:
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 1, n)
    humans, hero_h, modes = {}, {}, {}
    for c in range(curators):
        s = np.clip(np.rint(5.5 + 1.8 * (q + rng.normal(0, 0.6, n))), 1, 10)
        s[rng.random(n) < 0.3] = NAN
        humans[f"cur{c}@x.org"] = s
        hero_h[f"cur{c}@x.org"] = [bool(v) for v in q + rng.normal(0, 0.5, n) > 1]
        modes[f"cur{c}@x.org"] = list(np.where(rng.random(n) < 0.5, "assisted", "blind"))
    models, hero_m = {}, {}
    for name, bias in (("gemini@v1", 0.5), ("gpt@v1", -0.5)):
        models[name] = np.clip(np.round(5 + bias + 2 * (q + rng.normal(0, 0.8, n)), 1), 0, 10)
        hero_m[name] = [bool(v) for v in q + rng.normal(0, 0.7, n) > 1]
    species = list(rng.choice(["fox", "deer", "boar", "lynx"], n, p=[0.4, 0.3, 0.28, 0.02]))
    return rows_from(humans, models, hero_h, hero_m, modes, species)


TOP_KEYS = {"raters", "pairs", "overall", "hero", "inter_human", "by_mode", "by_species", "by_species_note",
            "readings", "parameters"}
PAIR_KEYS = {"a", "b", "kind", "n", *A.PAIR_STATS, "ci", "note"}
HERO_KEYS = {"model", "via", "threshold", "n", *A.HERO_STATS, "confusion", "ci", "note"}


def test_report_structure_and_json():
    report = compute_agreement(realistic_rows(), resamples=100)
    assert set(report) == TOP_KEYS
    json.dumps(report, allow_nan=False)
    assert no_nan(report)
    assert [r["name"] for r in report["raters"]] == ["cur0@x.org", "cur1@x.org", "gemini@v1", "gpt@v1"]
    assert set(report["raters"][0]) == {"name", "kind", "n_images", "mean_score", "hero_share"}
    kinds = sorted((p["a"], p["b"], p["kind"]) for p in report["pairs"])
    assert ("cur0@x.org", "cur1@x.org", "human-human") in kinds
    assert ("gemini@v1", "gpt@v1", "model-model") in kinds
    assert ("humans", "gemini@v1", "human-model") in kinds and ("cur0@x.org", "gpt@v1", "human-model") in kinds
    assert len(report["pairs"]) == 6 + 2
    for p in report["pairs"]:
        assert set(p) == PAIR_KEYS and set(p["ci"]) == set(A.PAIR_STATS)
        for k in A.PAIR_STATS:
            assert p[k] is not None
            lo, hi = p["ci"][k]
            assert lo <= hi
    assert [(h["model"], h["via"]) for h in report["hero"]] == [
        ("gemini@v1", "flag"), ("gemini@v1", "threshold"), ("gpt@v1", "flag"), ("gpt@v1", "threshold")]
    for h in report["hero"]:
        assert set(h) == HERO_KEYS and set(h["confusion"]) == {"tp", "fp", "fn", "tn"}
        assert sum(h["confusion"].values()) == h["n"]
    assert report["hero"][1]["threshold"] == 7.0 and report["hero"][0]["threshold"] is None
    ov = report["overall"]
    assert set(ov) == {"alpha_interval", "alpha_ordinal", "ci", "n_units", "n_raters", "note"}
    assert ov["n_raters"] == 4
    ih = report["inter_human"]
    assert ih["alpha_interval"] is not None and len(ih["pairs"]) == 1
    assert set(ih["by_mode"]) == {"assisted", "blind"}
    assert set(report["by_mode"]) == {"assisted", "blind"}
    assert "lynx" not in report["by_species"] or report["by_species"]["lynx"]["n_images"] >= 5
    for g in list(report["by_mode"].values()) + list(report["by_species"].values()):
        for m in g["models"]:
            assert set(m) == {"model", "n", "spearman", "mae", "qwk", "hero_kappa", "hero_kappa_threshold", "ci",
                              "note"}
    assert report["parameters"] == {"hero_threshold": 7.0, "resamples": 100, "seed": 0,
                                    "labels": list(range(11)), "min_n": 5}
    assert any("Landis & Koch" in s for s in report["readings"])
    assert any(s.startswith("Curators agree with each other at α") for s in report["readings"])


def test_report_point_estimates_equal_reference_implementations():
    rows = realistic_rows(n=250, seed=4)
    report = compute_agreement(rows, resamples=20)
    names = [r["name"] for r in report["raters"]]
    m = {n: np.full(250, NAN) for n in names}
    hero = {n: np.full(250, -1) for n in names}
    for r in rows:
        i = int(r["image_id"][1:])
        m[r["rater"]][i] = NAN if r["score"] is None else r["score"]
        hero[r["rater"]][i] = -1 if r["hero"] is None else int(r["hero"])
    for p in report["pairs"]:
        if p["a"] == "humans":
            cur = np.vstack([m["cur0@x.org"], m["cur1@x.org"]])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # images no curator scored: NaN, as wanted
                a = np.nanmean(cur, axis=0)
        else:
            a = m[p["a"]]
        b = m[p["b"]]
        ok = np.isfinite(a) & np.isfinite(b)
        assert p["n"] == ok.sum()
        assert p["spearman"] == pytest.approx(stats.spearmanr(a[ok], b[ok]).statistic, abs=1e-12)
        assert p["kendall_tau_b"] == pytest.approx(stats.kendalltau(a[ok], b[ok]).statistic, abs=1e-12)
        assert p["pearson"] == pytest.approx(stats.pearsonr(a[ok], b[ok]).statistic, abs=1e-12)
        assert p["bias"] == pytest.approx(np.mean(b[ok] - a[ok]), abs=1e-12)
        assert (p["icc_a1"], p["icc_c1"]) == pytest.approx(anova_icc(np.column_stack([a[ok], b[ok]])), abs=1e-10)
        ai = np.clip(np.floor(a[ok] + 0.5), 0, 10).astype(int)
        bi = np.clip(np.floor(b[ok] + 0.5), 0, 10).astype(int)
        assert p["qwk"] == pytest.approx(cohen_kappa_score(ai, bi, labels=list(range(11)), weights="quadratic"),
                                         abs=1e-12)
    everyone = np.vstack([m[n] for n in names])
    assert report["overall"]["alpha_interval"] == pytest.approx(
        krippendorff.alpha(reliability_data=everyone, level_of_measurement="interval"), abs=1e-10)
    assert report["overall"]["alpha_ordinal"] == pytest.approx(
        krippendorff.alpha(reliability_data=everyone, level_of_measurement="ordinal"), abs=1e-10)
    assert report["inter_human"]["alpha_interval"] == pytest.approx(
        krippendorff.alpha(reliability_data=everyone[:2], level_of_measurement="interval"), abs=1e-10)
    # Hero: majority of the two curators (a 1-1 split is no decision) vs the model's flag.
    yes = (hero["cur0@x.org"] == 1).astype(int) + (hero["cur1@x.org"] == 1)
    no = (hero["cur0@x.org"] == 0).astype(int) + (hero["cur1@x.org"] == 0)
    truth = np.where(yes > no, 1, np.where(no > yes, 0, -1))
    h = report["hero"][0]
    ok = (truth >= 0) & (hero["gemini@v1"] >= 0)
    assert h["n"] == ok.sum()
    assert h["cohen_kappa"] == pytest.approx(cohen_kappa_score(hero["gemini@v1"][ok], truth[ok]), abs=1e-12)
    assert h["precision"] == pytest.approx(precision_score(truth[ok], hero["gemini@v1"][ok]))
    thr = report["hero"][1]
    pred = (m["gemini@v1"] >= 7).astype(int)
    ok = truth >= 0
    assert thr["recall"] == pytest.approx(recall_score(truth[ok], pred[ok]))


def test_by_mode_uses_only_that_modes_ratings():
    n = 40
    rng = np.random.default_rng(5)
    model = np.round(rng.uniform(0, 10, n), 1)
    blind = np.clip(np.rint(rng.uniform(1, 10, n)), 1, 10)  # unrelated to the model
    assisted = np.clip(np.rint(model), 1, 10)  # copies the model
    rows = rows_from({"c@x": blind}, {"m": model}, modes={"c@x": ["blind"] * n})
    rows += rows_from({"d@x": assisted}, {}, modes={"d@x": ["assisted"] * n})
    report = compute_agreement(rows, resamples=50)
    blind_m = report["by_mode"]["blind"]["models"][0]
    assisted_m = report["by_mode"]["assisted"]["models"][0]
    assert blind_m["spearman"] == pytest.approx(A.spearman(blind, model), abs=1e-12)
    assert assisted_m["spearman"] == pytest.approx(A.spearman(assisted, model), abs=1e-12)
    assert assisted_m["spearman"] > 0.95
    # Each curator rated in one mode only: no mode has two curators on an image.
    assert report["inter_human"]["by_mode"]["blind"]["alpha_interval"] is None


def test_later_rating_of_the_same_image_wins():
    rows = rows_from({"c": np.array([1, 2, 3, 4, 5, 6.])}, {"m": np.array([1, 2, 3, 4, 5, 6.])})
    rows.append({**rows[0], "score": 9.0})  # the curator changed their mind on i0
    report = compute_agreement(rows, resamples=0)
    pair = next(p for p in report["pairs"] if p["a"] == "c")
    assert pair["n"] == 6 and pair["mae"] == pytest.approx(8 / 6)
    assert pair["ci"]["mae"] is None  # resamples = 0: no intervals


def test_seeded_report_is_reproducible_and_intervals_contain_estimates():
    rows = realistic_rows(n=200, seed=2)
    one = compute_agreement(rows, resamples=200, seed=7)
    assert one == compute_agreement(rows, resamples=200, seed=7)
    other = compute_agreement(rows, resamples=200, seed=8)
    assert one["pairs"][0]["ci"] != other["pairs"][0]["ci"]
    assert one["pairs"][0]["spearman"] == other["pairs"][0]["spearman"]
    for p in one["pairs"]:
        for k in ("spearman", "kendall_tau_b", "pearson", "mae", "bias", "qwk", "icc_c1"):
            lo, hi = p["ci"][k]
            assert lo <= p[k] <= hi, (p["a"], p["b"], k)
    for h in one["hero"]:
        lo, hi = h["ci"]["cohen_kappa"]
        assert lo <= h["cohen_kappa"] <= hi
    lo, hi = one["overall"]["ci"]["alpha_interval"]
    assert lo <= one["overall"]["alpha_interval"] <= hi


# ---------------------------------------------------------------------------------------------
# Edge cases of the report: None and a note, never NaN, never an exception
# ---------------------------------------------------------------------------------------------

def check(report: dict) -> dict:
    assert set(report) == TOP_KEYS
    json.dumps(report, allow_nan=False)
    assert no_nan(report)
    assert all(isinstance(s, str) and s for s in report["readings"])
    return report


def test_empty_input():
    report = check(compute_agreement([]))
    assert report["raters"] == [] and report["pairs"] == [] and report["hero"] == []
    assert report["overall"]["alpha_interval"] is None and "no images" in report["overall"]["note"]
    assert "no image was rated by two curators" in report["inter_human"]["note"]


def test_too_few_images():
    rows = rows_from({"c": np.array([3, 4, 5.])}, {"m": np.array([3, 5, 6.])})
    report = check(compute_agreement(rows))
    pair = report["pairs"][0]
    assert pair["spearman"] is None
    assert pair["note"] == "only 3 images rated by both; at least 5 are needed"
    assert "only 3 images" in report["overall"]["note"]


def test_constant_curator():
    rows = rows_from({"c": np.full(10, 7.0)}, {"m": np.arange(10.0)})
    report = check(compute_agreement(rows, resamples=50))
    pair = next(p for p in report["pairs"] if p["a"] == "c")
    assert pair["spearman"] is None and pair["kendall_tau_b"] is None and pair["pearson"] is None
    assert pair["ci"]["spearman"] is None
    assert "c gave every image the same score (7), so a correlation is undefined" in pair["note"]
    assert pair["mae"] is not None and pair["bias"] is not None


def test_perfect_agreement_and_single_value_everywhere():
    s = np.array([1, 2, 3, 4, 5, 6, 7, 8.0])
    rows = rows_from({"c": s}, {"m": s}, {"c": [True] * 4 + [False] * 4}, {"m": [True] * 4 + [False] * 4})
    report = check(compute_agreement(rows, resamples=50))
    pair = next(p for p in report["pairs"] if p["a"] == "c")
    for k in ("spearman", "kendall_tau_b", "pearson", "qwk", "icc_a1", "icc_c1"):
        assert pair[k] == pytest.approx(1.0)
    assert pair["mae"] == 0 and pair["loa_low"] == 0 and pair["loa_high"] == 0
    assert report["hero"][0]["cohen_kappa"] == pytest.approx(1.0)
    same = rows_from({"c": np.full(8, 5.0)}, {"m": np.full(8, 5.0)}, {"c": [False] * 8}, {"m": [False] * 8})
    report = check(compute_agreement(same, resamples=50))
    pair = next(p for p in report["pairs"] if p["a"] == "c")
    assert pair["spearman"] is None and pair["qwk"] is None and pair["icc_c1"] is None
    assert report["overall"]["alpha_interval"] is None and "same score" in report["overall"]["note"]
    flag = report["hero"][0]
    assert flag["cohen_kappa"] is None and flag["precision"] is None and flag["recall"] is None
    assert flag["gwet_ac1"] == pytest.approx(1.0) and flag["percent_agreement"] == 1.0
    assert "Cohen's kappa is undefined" in flag["note"]


def test_no_overlap_between_raters():
    rows = rows_from({"c": np.array([1, 2, 3, NAN, NAN, NAN])}, {"m": np.array([NAN, NAN, NAN, 4, 5, 6])})
    report = check(compute_agreement(rows))
    assert all(p["a"] == "humans" for p in report["pairs"])  # rater pairs without overlap are left out
    assert report["pairs"][0]["n"] == 0 and report["pairs"][0]["note"].startswith("no images rated by both")
    assert any("cannot say" in s for s in report["readings"])


def test_models_only_and_humans_only():
    report = check(compute_agreement(rows_from({}, {"a": np.arange(10.0), "b": np.arange(10.0)[::-1]})))
    assert report["hero"] == [] and report["pairs"][0]["kind"] == "model-model"
    assert report["pairs"][0]["spearman"] == pytest.approx(-1.0)
    report = check(compute_agreement(rows_from({"c": np.arange(10.0) % 10 + 1, "d": np.arange(10.0) % 10 + 1}, {})))
    assert report["inter_human"]["alpha_interval"] == pytest.approx(1.0)


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError):
        compute_agreement([{"image_id": 1, "rater": "x", "kind": "robot", "score": 1.0}])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["c1", "c2", "m1", "m2"]),
                          st.one_of(st.none(), st.integers(0, 10).map(float), st.floats(0, 10).map(lambda x: round(x, 1))),
                          st.one_of(st.none(), st.booleans()), st.sampled_from(["assisted", "blind", None]),
                          st.sampled_from(["fox", None])),
                max_size=40),
       st.integers(1, 6))
def test_any_small_input_gives_plain_json(entries, min_n):
    rows = [{"image_id": i, "rater": r, "kind": "human" if r.startswith("c") else "model", "score": s, "hero": h,
             "mode": m, "species": sp} for i, r, s, h, m, sp in entries]
    check(compute_agreement(rows, resamples=20, min_n=min_n))
