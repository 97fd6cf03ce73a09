"""Degenerate data is handled, not raised: parameters stay finite and positive definite."""

import warnings

import numpy as np
import pytest

from emstream import GaussianMixture
from emstream.init import reseed_dead_components
from emstream.stats import COVARIANCE_TYPES, SufficientStats

from .conftest import mixture_1d, mixture_2d


def assert_valid(gm):
    """Finite parameters, weights summing to 1, positive definite covariances."""
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert gm.weights_.sum() == pytest.approx(1.0)
    assert gm.weights_.min() >= 0
    c, d = gm.covariances_, gm.means_.shape[1]
    full = {"full": lambda: c, "tied": lambda: c[None],
            "diag": lambda: np.stack([np.diag(v) for v in c]),
            "spherical": lambda: c[:, None, None] * np.eye(d)}[gm.covariance_type]()
    for cov in full:
        np.linalg.cholesky(cov)  # raises unless positive definite


def fit_quietly(gm, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gm.fit(X)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_a_single_repeated_value(kind):
    X = np.full((100, 2), 44.44571429)
    gm = fit_quietly(GaussianMixture(3, covariance_type=kind, random_state=0), X)
    assert_valid(gm)
    np.testing.assert_allclose(gm.means_, 44.44571429)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_constant_column(kind):
    X = mixture_2d(500, np.random.default_rng(0))
    X[:, 1] = 7.0
    gm = fit_quietly(GaussianMixture(3, covariance_type=kind, random_state=0), X)
    assert_valid(gm)
    assert np.all(gm.score_samples(X) > -np.inf)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_more_components_than_distinct_values(kind):
    X = np.repeat([[0.0, 1.0], [5.0, 5.0]], 20, axis=0)
    gm = fit_quietly(GaussianMixture(4, covariance_type=kind, random_state=0), X)
    assert_valid(gm)
    labels = gm.predict(X)
    assert len(set(labels[:20]) & set(labels[20:])) == 0


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_single_outlier_1000_sd_away(kind):
    X = mixture_2d(2000, np.random.default_rng(1))
    X[100] = [1000.0, -1000.0]
    gm = fit_quietly(GaussianMixture(3, covariance_type=kind, random_state=0), X)
    assert_valid(gm)
    online = GaussianMixture(3, covariance_type=kind, random_state=0, warmup_size=500)
    for start in range(0, len(X), 50):
        online.partial_fit(X[start:start + 50])
    assert_valid(online)


@pytest.mark.parametrize("offset", [1e8, -3e10])
def test_far_from_origin_fits_as_accurately_as_near(offset):
    X = mixture_1d(20_000, np.random.default_rng(2))
    init = dict(means_init=np.array([[-4.0], [0.0], [5.0]]), weights_init=[0.2, 0.5, 0.3],
                precisions_init=np.ones((3, 1, 1)))
    near = GaussianMixture(3, tol=1e-10, max_iter=1000, **init).fit(X)
    shifted_init = dict(init, means_init=init["means_init"] + offset)
    held = (X + offset) - offset  # the data as float64 can hold it at that offset
    far = GaussianMixture(3, tol=1e-10, max_iter=1000, **shifted_init).fit(X + offset)
    ref = GaussianMixture(3, tol=1e-10, max_iter=1000, **init).fit(held)
    # A mean stored near the offset is only known to one ulp of it.
    np.testing.assert_allclose(far.means_ - offset, ref.means_,
                               atol=1e-9 + np.spacing(abs(offset)))
    np.testing.assert_allclose(far.covariances_, ref.covariances_, rtol=1e-6)
    np.testing.assert_allclose(far.weights_, ref.weights_, rtol=1e-6)
    assert far.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)
    # And rounding the data to float64 at that offset changes little.
    np.testing.assert_allclose(far.covariances_, near.covariances_, rtol=1e-4)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_clusters_millions_of_sds_apart_keep_their_own_spread(kind):
    """The last-resort variance floor was 1e-12 of the data's whole variance, which counts the
    spread between clusters: at 0 and 1e7 with unit spread every variance came out as 25 (log
    likelihood -3.24 where scikit-learn reaches -2.10), online too, whatever reg_covar and
    variance_floor."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    rng = np.random.default_rng(0)
    X = np.c_[np.r_[rng.normal(0, 1, 300), rng.normal(1e7, 1, 300)], rng.normal(size=600)]
    tight = dict(covariance_type=kind, random_state=0, tol=1e-9, max_iter=1000)
    ours = GaussianMixture(2, **tight).fit(X)
    theirs = SkGaussianMixture(2, **tight).fit(X)
    # (their starts differ: each may end at its own nearby optimum, a thousandth apart)
    assert ours.score(X) > theirs.score(X) - 0.01
    assert np.max(ours.covariances_) < 2.0
    # Online, after the warm-up (whose prior keeps provisional models humble on purpose).
    Y = np.c_[np.r_[rng.normal(0, 1, 2000), rng.normal(1e7, 1, 2000)], rng.normal(size=4000)]
    online = GaussianMixture(2, covariance_type=kind, random_state=0)
    for block in np.array_split(Y[rng.permutation(len(Y))], 40):
        online.partial_fit(block)
    assert np.max(online.covariances_) < 2.0


@pytest.mark.parametrize("scale", [1e-40, 1e40])
def test_huge_and_tiny_scales(scale):
    X = mixture_2d(1000, np.random.default_rng(3))
    gm = fit_quietly(GaussianMixture(3, random_state=0, reg_covar=0.0), X)
    scaled = fit_quietly(GaussianMixture(3, random_state=0, reg_covar=0.0), X * scale)
    assert_valid(scaled)
    # Without regularisation the fit is scale-equivariant.
    order, order_s = np.argsort(gm.means_[:, 0]), np.argsort(scaled.means_[:, 0])
    np.testing.assert_allclose(scaled.means_[order_s] / scale, gm.means_[order], rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(scaled.covariances_[order_s] / scale**2, gm.covariances_[order],
                               rtol=1e-6, atol=1e-9)
    # With the default absolute reg_covar, tiny data is swamped but nothing breaks.
    assert_valid(fit_quietly(GaussianMixture(3, random_state=0), X * scale))


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e90])
@pytest.mark.parametrize("reg_covar", [1e-6, 0.0])
def test_the_warm_up_prior_on_tiny_and_huge_scales(scale, reg_covar):
    # 2-D rows in small batches: the warm-up's matrix floor is in play.  On data far below
    # reg_covar, whitening by that floor overflowed (warnings, then a model saved by luck).
    X = mixture_2d(300, np.random.default_rng(5)) * scale
    gm = GaussianMixture(3, random_state=0, reg_covar=reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for start in range(0, 300, 50):
            gm.partial_fit(X[start:start + 50])
    assert gm._online.warming_up
    assert_valid(gm)
    assert np.isfinite(gm.score(X))


def test_emptied_component_is_reseeded_in_batch_em():
    X = mixture_1d(5000, np.random.default_rng(4))
    # One component starts a million sd away from every point: it would stay empty forever.
    init = dict(means_init=[[-4.0], [0.0], [1e6]], weights_init=[0.4, 0.4, 0.2],
                precisions_init=np.ones((3, 1, 1)))
    gm = GaussianMixture(3, tol=1e-8, max_iter=500, **init).fit(X)
    assert_valid(gm)
    assert gm.weights_.min() > 0.1
    np.testing.assert_allclose(np.sort(gm.means_.ravel()), [-4, 0, 5], atol=0.1)


def test_reseed_moves_one_dead_component_onto_the_worst_point():
    stats = SufficientStats(np.array([50.0, 1e-9, 50.0]), np.array([[0.0], [9.0], [5.0]]),
                            np.array([[50.0], [0.0], [100.0]]), "diag")
    new, n = reseed_dead_components(stats, np.array([20.0]), n_points=100)
    assert n == 1
    assert new.means[1, 0] == 20.0 and new.counts[1] == pytest.approx(1.0)
    # Pooled variance of the live components: (50 + 100) / 100 per point.
    assert new.scatter[1, 0] == pytest.approx(1.5)
    unchanged, n = reseed_dead_components(new, np.array([30.0]), n_points=100)
    assert n == 0 and unchanged is new


@pytest.mark.parametrize("route", ["_precision_cholesky_each", "_precision_cholesky_stacked"])
def test_both_factor_routes_agree_and_repair_a_singular_covariance(route):
    from emstream import gaussian

    rng = np.random.default_rng(4)
    factor = rng.normal(size=(5, 3, 6))
    covs = factor @ factor.transpose(0, 2, 1)
    covs[2] = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # rank 1: needs the jitter
    repaired = covs.copy()
    prec = getattr(gaussian, route)(repaired)
    assert np.all(np.tril(prec, -1) == 0.0)  # upper triangular, as scikit-learn's
    for k in (0, 1, 3, 4):  # untouched, and P Pᵀ = Σ⁻¹
        np.testing.assert_array_equal(repaired[k], covs[k])
        np.testing.assert_allclose(prec[k] @ prec[k].T @ covs[k], np.eye(3), atol=1e-9)
    jitter = np.diag(repaired[2] - covs[2])
    assert np.all(jitter > 0) and np.all(jitter < 1e-9 * np.trace(covs[2]))
    # condition number ~1e12 after the smallest jitter: the inverse holds to ~1e-4
    np.testing.assert_allclose(prec[2] @ prec[2].T @ repaired[2], np.eye(3), atol=1e-3)
    other = "_precision_cholesky_stacked" if route.endswith("each") else "_precision_cholesky_each"
    np.testing.assert_allclose(getattr(gaussian, other)(covs.copy()), prec, rtol=1e-9)


@pytest.mark.parametrize("gate", [1e-10, 0.5])
def test_a_gate_below_the_datas_own_spread_still_learns(gate):
    """``outlier_gate`` far below the distances of ordinary points (a user's 1e-10, or 0.5 in
    10-D): the warm-up's fit found no row within the gate of its start and returned no
    statistics, and the learner crashed.  The fit then uses every row, and far rows that keep
    coming are learned online as the stream's own."""
    X = np.random.default_rng(0).normal(size=(3000, 10)) * np.arange(1, 11)
    gm = GaussianMixture(3, outlier_gate=gate, random_state=0)
    for start in range(0, len(X), 100):
        gm.partial_fit(X[start:start + 100])
    assert np.isfinite(gm.means_).all() and np.isfinite(gm.covariances_).all()
    assert gm.n_gated_ < len(X) // 10
    # the spread of every feature is learned, not lost to the gate (sd 1 to 10)
    spread = np.sqrt(np.einsum("k,kdd->d", gm.weights_, gm.covariances_))
    np.testing.assert_allclose(spread, np.arange(1, 11), rtol=0.2)


def test_a_refit_on_a_single_row_keeps_the_model():
    """refit.window 1 with K=1 in the daemon: the held-out judging had an empty half and the
    E-step crashed on it.  With nothing to judge by, the current model stays."""
    X = np.random.default_rng(0).normal(size=(500, 1))
    gm = GaussianMixture(1, random_state=0).fit(X)
    before = gm.means_.copy(), gm.covariances_.copy()
    gm.refit(X[:1])
    np.testing.assert_array_equal(gm.means_, before[0])
    np.testing.assert_array_equal(gm.covariances_, before[1])
    assert gm.last_refit_["replaced"] is False


def test_a_batch_fit_does_not_depend_on_the_order_of_its_rows():
    """The data's resolution (its variance floor) is read from rows spread over the whole
    input: read from the first 4,096, sorted rows whose first half is one value made the
    column look like whole numbers, and a floor of 1/12 dwarfed its real spread of 0.01 (the
    same rows shuffled fitted as scikit-learn does)."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    rng = np.random.default_rng(0)
    X = np.r_[np.zeros((5000, 1)), rng.normal(0.5, 0.01, (5000, 1))]
    reference = SkGaussianMixture(2, random_state=0).fit(X).score(X)
    for data in (X, rng.permutation(X)):
        model = GaussianMixture(2, random_state=0).fit(data)
        assert model.score(X) == pytest.approx(reference, abs=1e-3)
    da = pytest.importorskip("dask.array")  # the same rows read where they live, alike
    on_dask = GaussianMixture(2, random_state=0).fit(da.from_array(X, chunks=(777, 1)))
    np.testing.assert_allclose(on_dask.covariances_,
                               GaussianMixture(2, random_state=0).fit(X).covariances_, rtol=1e-9)


@pytest.mark.parametrize("n_features", [2, 3, 5])
def test_a_scale_jump_at_the_end_of_the_warm_up_with_reg_covar_0_is_learned(n_features):
    """A warm-up at 1e-150 then rows at 1e10 (reg_covar=0, the resolution floor made on the
    tiny rows): the components' matching raised ValueError from linear_sum_assignment (NaN
    distances), the floor's whitening LinAlgError ("Eigenvalues did not converge")."""
    rng = np.random.default_rng(0)
    gm = GaussianMixture(1, reg_covar=0.0, outlier_gate=None, warmup_size=37, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gm.partial_fit(rng.normal(size=(31, n_features)) * 1e-150)
        gm.partial_fit(rng.normal(size=(6, n_features)) * 1e10)
        gm.partial_fit(rng.normal(size=(50, n_features)))
    assert_valid(gm)
    assert np.isfinite(gm.precisions_).all()
    assert np.isfinite(gm.score_samples(rng.normal(size=(5, n_features)))).all()


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_two_points_repeated_with_no_floor_at_all_keep_finite_precisions(kind):
    """reg_covar=0 and variance_floor=None: a component left a spread of 1e-304 (not quite
    nothing) was taken as a real one, and its singular covariance gave precisions_ of
    ±inf (scikit-learn refuses such data; here it is handled)."""
    X = np.repeat([[0.0, 0.0], [1.0, 1.0]], 15, axis=0)
    gm = GaussianMixture(2, covariance_type=kind, reg_covar=0, variance_floor=None,
                         random_state=0).fit(X)
    assert_valid(gm)
    assert np.isfinite(gm.precisions_).all()
    assert np.isfinite(gm.score_samples([[0.0, 0.0], [0.5, 0.5]])).all()


# (tied: one covariance, means 1e-99 apart, so the point is as far from each: a true tie)
@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
def test_a_point_whose_distance_overflows_goes_to_its_nearest_component(kind):
    """A value inside the accepted range (1e60) in data of spread 1e-100: its squared distance
    to every component overflows.  It was shared equally, and with the gate off (the river
    adapters' default) it moved every mean to 3e56; now it belongs to the component nearest
    to it, its distances compared in logs, and nothing is said on stderr."""
    X = np.random.default_rng(0).normal(size=(2000, 2)) * 1e-100
    X[1000:] += 1e-99  # two groups, so that the components differ
    gm = GaussianMixture(3, covariance_type=kind, random_state=0, reg_covar=0.0,
                         variance_floor=None, outlier_gate=None)
    for start in range(0, 2000, 100):
        gm.partial_fit(X[start:start + 100])
    far = np.array([[1e60, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (numpy's "overflow encountered in square" leaked)
        assert gm.score_samples(far)[0] == -np.inf
        resp = gm.predict_proba(far)[0]
    assert sorted(resp.tolist()) == [0.0, 0.0, 1.0]  # (the others: no exp(-700) share)
    before = gm.means_.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm.partial_fit(np.r_[far, X[:99]])
    moved = np.abs(gm.means_ - before).max(axis=1) > 1.0
    assert moved.sum() == 1  # only the component it went to
    assert_valid(gm)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_expected_rows_are_the_conditional_means_weighted_by_responsibility(covariance_type):
    """The core's fill of missing features (the river adapters learn with it), against the
    textbook formula written out per component; and a row no component gives a density is
    weighted by the mixture's weights, not NaN."""
    from scipy.stats import multivariate_normal

    from emstream.compare import full_covariances
    from emstream.gaussian import MixtureParams, expected_rows

    rng = np.random.default_rng(1)
    k, d = 3, 4
    means = rng.normal(0, 3, (k, d))
    full = np.array([a @ a.T + np.eye(d) for a in rng.normal(size=(k, d, d))])
    given = {"full": full, "tied": full[0], "diag": np.array([np.diag(c) for c in full]),
             "spherical": np.array([np.trace(c) / d for c in full])}[covariance_type]
    params = MixtureParams.from_covariances([0.2, 0.5, 0.3], means, given, covariance_type)
    covs = full_covariances(params.covariances, covariance_type, k, d)
    rows = rng.normal(0, 3, (5, d))
    observed, missing = [0, 2], [1, 3]
    got = expected_rows(rows, observed, params)
    for row, out in zip(rows, got):
        resp = np.array([w * multivariate_normal(m[observed], c[np.ix_(observed, observed)])
                         .pdf(row[observed]) for w, m, c in zip(params.weights, means, covs)])
        resp /= resp.sum()
        want = sum(r * (m[missing] + c[np.ix_(missing, observed)] @ np.linalg.solve(
            c[np.ix_(observed, observed)], row[observed] - m[observed]))
            for r, m, c in zip(resp, means, covs))
        np.testing.assert_allclose(out[missing], want, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(out[observed], row[observed])
    far = expected_rows(np.array([[1e300, 0.0, 1e300, 0.0]]), observed, params)
    assert np.isfinite(far).all()
