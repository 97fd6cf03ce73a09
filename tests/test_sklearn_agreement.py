"""Batch EM agrees with scikit-learn's GaussianMixture, and keeps the behaviours users rely on."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from emstream import ConvergenceWarning, GaussianMixture
from emstream.stats import COVARIANCE_TYPES

from .conftest import mixture_2d, mixture_3d


@pytest.fixture(scope="module")
def data3d():
    return mixture_3d(900, np.random.default_rng(11))


def _shared_init(X, kind, seed=0):
    """Initial parameters both libraries start from (one sklearn iteration from k-means)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        start = SkGaussianMixture(3, covariance_type=kind, max_iter=1, random_state=seed).fit(X)
    return dict(weights_init=start.weights_, means_init=start.means_,
                precisions_init=start.precisions_)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_fit_matches_sklearn_from_same_start(data3d, kind):
    init = _shared_init(data3d, kind)
    ref = SkGaussianMixture(3, covariance_type=kind, tol=1e-6, max_iter=500, **init).fit(data3d)
    ours = GaussianMixture(3, covariance_type=kind, tol=1e-6, max_iter=500, **init).fit(data3d)
    assert ours.converged_ and ref.converged_
    assert ours.n_iter_ == ref.n_iter_
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)
    assert ours.score(data3d) == pytest.approx(ref.score(data3d), rel=1e-9)
    for name in ("weights_", "means_", "covariances_", "precisions_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6,
                                   atol=1e-6, err_msg=name)
    np.testing.assert_allclose(ours.score_samples(data3d), ref.score_samples(data3d),
                               rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(data3d), ref.predict_proba(data3d),
                               atol=1e-9)
    np.testing.assert_array_equal(ours.predict(data3d), ref.predict(data3d))


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_bic_aic_and_parameter_count_match_sklearn(data3d, kind):
    init = _shared_init(data3d, kind)
    ref = SkGaussianMixture(3, covariance_type=kind, **init).fit(data3d)
    ours = GaussianMixture(3, covariance_type=kind, **init).fit(data3d)
    assert ours._n_parameters() == ref._n_parameters()
    assert ours.bic(data3d) == pytest.approx(ref.bic(data3d), rel=1e-9)
    assert ours.aic(data3d) == pytest.approx(ref.aic(data3d), rel=1e-9)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_fit_predict_equals_fit_then_predict(data3d, kind):
    a = GaussianMixture(3, covariance_type=kind, random_state=3).fit_predict(data3d)
    b = GaussianMixture(3, covariance_type=kind, random_state=3).fit(data3d).predict(data3d)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_two_warm_started_single_iterations_equal_two_iterations(data3d, kind):
    init = _shared_init(data3d, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        twice = GaussianMixture(3, covariance_type=kind, max_iter=1, tol=0, warm_start=True,
                                **init)
        twice.fit(data3d).fit(data3d)
        once = GaussianMixture(3, covariance_type=kind, max_iter=2, tol=0, **init).fit(data3d)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(twice, name), getattr(once, name), rtol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_log_likelihood_never_decreases_without_regularisation(kind):
    X = mixture_2d(2000, np.random.default_rng(5))
    trace = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(3, covariance_type=kind, reg_covar=0.0, max_iter=1, tol=0,
                             warm_start=True, random_state=0)
        for _ in range(40):
            gm.fit(X)
            trace.append(gm.lower_bound_)
    steps = np.diff(trace)
    assert steps.min() >= -1e-12 * abs(trace[-1]), steps.min()
    assert trace[-1] > trace[0]


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_sample_reproduces_means_and_covariances(kind):
    X = mixture_2d(3000, np.random.default_rng(6))
    gm = GaussianMixture(3, covariance_type=kind, random_state=1).fit(X)
    n = 200_000
    S, labels = gm.sample(n)
    assert S.shape == (n, 2) and labels.shape == (n,)
    counts = np.bincount(labels, minlength=3)
    # Multinomial counts: within 5 standard errors.
    se = np.sqrt(n * gm.weights_ * (1 - gm.weights_))
    assert np.all(np.abs(counts - n * gm.weights_) < 5 * se)
    if kind == "full":
        full = gm.covariances_
    elif kind == "tied":
        full = np.broadcast_to(gm.covariances_, (3, 2, 2))
    elif kind == "diag":
        full = np.array([np.diag(c) for c in gm.covariances_])
    else:
        full = np.array([c * np.eye(2) for c in gm.covariances_])
    for k in range(3):
        part = S[labels == k]
        se_mean = np.sqrt(np.diag(full[k]) / len(part))
        assert np.all(np.abs(part.mean(0) - gm.means_[k]) < 5 * se_mean)
        np.testing.assert_allclose(np.cov(part.T), full[k], atol=5 * np.sqrt(2 / len(part))
                                   * np.abs(full[k]).max())


def test_sklearn_clone_and_params_roundtrip():
    from sklearn.base import clone
    gm = GaussianMixture(4, covariance_type="diag", reg_covar=1e-3, step_decay=0.8)
    twin = clone(gm)
    assert twin.get_params() == gm.get_params()
    assert "covariance_type='diag'" in repr(gm)
    with pytest.raises(ValueError, match="invalid parameter"):
        gm.set_params(n_component=3)


def test_works_inside_sklearn_pipelines_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X = mixture_2d(900, np.random.default_rng(8))
    pipe = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(X)
    assert np.isfinite(pipe.score(X))
    search = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 3]}, cv=3)
    assert search.fit(X).best_params_ == {"n_components": 3}


def test_lower_bounds_trace_matches_sklearn(data3d):
    init = _shared_init(data3d, "full")
    ref = SkGaussianMixture(3, tol=1e-6, max_iter=500, **init).fit(data3d)
    ours = GaussianMixture(3, tol=1e-6, max_iter=500, **init).fit(data3d)
    if hasattr(ref, "lower_bounds_"):
        np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)
    assert len(ours.lower_bounds_) == ours.n_iter_
    assert ours.lower_bounds_[-1] == ours.lower_bound_


def test_changed_settings_do_not_silently_continue_an_old_fit(data3d):
    gm = GaussianMixture(2, random_state=0).fit(data3d)
    gm.set_params(n_components=3)
    with pytest.raises(ValueError, match="fitted with n_components=2"):
        gm.partial_fit(data3d)
    with pytest.raises(ValueError, match="fitted with n_components=2"):
        gm.set_params(warm_start=True).fit(data3d)
    assert gm.sample(10)[0].shape == (10, 3)  # still the fitted 2-component model
    gm.set_params(warm_start=False).fit(data3d)
    assert gm.means_.shape == (3, 3)


def test_feature_names_are_kept_and_checked_as_scikit_learn_does(tmp_path):
    """Fitted on a data frame, the model keeps its column names; a frame whose columns are
    swapped or renamed is refused (it was scored silently: -10,599 instead of -2.8 per point),
    names on one side only warn, and a checkpoint keeps them."""
    import pandas as pd

    from emstream import checkpoint

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 400), "b": rng.normal(50, 5, 400)})
    ours = GaussianMixture(2, random_state=0).fit(frame)
    theirs = SkGaussianMixture(2, random_state=0).fit(frame)
    np.testing.assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
    swapped = frame[["b", "a"]]
    for model in (ours, theirs):
        with pytest.raises(ValueError, match="The feature names should match"):
            model.score(swapped)

        with pytest.warns(UserWarning, match="does not have valid feature names"):
            model.score(frame.to_numpy())
    # Right after fit, partial_fit took the swapped frame and its names, and learned its
    # columns into each other's means.
    with pytest.raises(ValueError, match="The feature names should match"):
        ours.partial_fit(swapped)
    with pytest.raises(ValueError, match="The feature names should match"):
        ours.refit(swapped)  # (it refitted the columns into each other's means)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # arrays (a drift monitor's rows) have no names to check
        ours.refit(frame.to_numpy())
    loaded = checkpoint.load(checkpoint.save(ours, tmp_path / "m.json")).model
    np.testing.assert_array_equal(loaded.feature_names_in_, ["a", "b"])
    with pytest.raises(ValueError, match="The feature names should match"):
        loaded.predict(frame.rename(columns={"b": "c"}))
    # Online: the first rows learned set the names; numpy data sets none (and warns nothing).
    online = GaussianMixture(2, random_state=0, warmup_size=100)
    online.partial_fit(frame[:150])
    with pytest.raises(ValueError, match="The feature names should match"):
        online.partial_fit(swapped[150:])
    plain = GaussianMixture(2, random_state=0).fit(frame.to_numpy())
    assert not hasattr(plain, "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain.score(frame.to_numpy())
