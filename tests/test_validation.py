"""Bad input and bad parameters give a ValueError that says what is wrong and what to do."""

import warnings

import numpy as np
import pytest

from emstream import GaussianMixture, NotFittedError


@pytest.fixture()
def X():
    return np.random.default_rng(0).normal(size=(100, 2))


@pytest.mark.parametrize("bad, message", [
    (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), "NaN or infinity in 1 row.*first at row 0"),
    (np.array([[1.0, 2.0], [np.inf, 1.0], [2.0, 2.0]]), "NaN or infinity.*row 1"),
    (np.empty((0, 2)), "empty"),
    (np.ones(5), "2-D.*reshape"),
    (np.ones((2, 2, 2)), "2-D"),
    ([["a", "b"], ["c", "d"]], "numeric"),
    (np.full((10, 2), 1e200), "rescale"),
    # Times were learned as counts in their own unit (days or nanoseconds), text "1.5" and
    # bytes b"1.5" as numbers (the river adapters refuse them; found by an attack helper).
    (np.arange(10).astype("datetime64[D]").reshape(5, 2), "holds times"),
    (np.arange(10).astype("timedelta64[s]").reshape(5, 2), "holds time spans"),
    (np.array([["1.5", "2"]] * 5), "holds text"),
    (np.array([[b"1.5", b"2"]] * 5), "holds bytes"),
])
def test_bad_data_is_refused_with_a_clear_message(bad, message):
    for call in (GaussianMixture(1).fit, GaussianMixture(1).partial_fit):
        with pytest.raises(ValueError, match=message):
            call(bad)


def test_another_width_during_the_warm_up_is_refused_and_changes_nothing():
    """partial_fit took rows of another width while the warm-up filled: the buffer was then
    broken for good (every later call, and a checkpoint of it, failed in numpy)."""
    from emstream import checkpoint
    from emstream.drift import DriftMonitor

    rng = np.random.default_rng(0)
    gm = GaussianMixture(2, random_state=0)
    gm.partial_fit(rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="3 features, but GaussianMixture is expecting 2"):
        gm.partial_fit(rng.normal(size=(3, 3)))
    monitor = DriftMonitor(gm)
    with pytest.raises(ValueError, match="expecting 2"):
        monitor.update(rng.normal(size=(4, 1)))
    gm.partial_fit(rng.normal(size=(50, 2)))
    assert gm._online.buffered == 55
    assert checkpoint.loads(checkpoint.dumps(gm)).model._online.buffered == 55


def test_fewer_samples_than_components(X):
    with pytest.raises(ValueError, match="fewer than 5 .n_components=5"):
        GaussianMixture(5).fit(X[:3])


def test_wrong_number_of_features_after_fit(X):
    gm = GaussianMixture(2, random_state=0).fit(X)
    for method in (gm.predict, gm.score_samples, gm.predict_proba, gm.partial_fit):
        with pytest.raises(ValueError, match="3 features, but GaussianMixture is expecting 2 features"):
            method(np.ones((4, 3)))


def test_not_fitted_is_a_value_error_that_says_what_to_do(X):
    gm = GaussianMixture(2)
    for method in (gm.predict, gm.predict_proba, gm.score_samples, gm.score):
        with pytest.raises(NotFittedError, match="call fit"):
            method(X)
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(NotFittedError):
        gm.sample(3)


@pytest.mark.parametrize("params, message", [
    (dict(n_components=0), r"n_components must be an integer in \[1, 10000\]"),
    # Beyond these a checkpoint of the fit was written and then refused on loading.
    (dict(max_iter=10**7), r"max_iter must be an integer in \[0, 1000000\]"),
    (dict(n_init=1001), r"n_init must be an integer in \[1, 1000\]"),
    (dict(warmup_size=10**8), r"warmup_size must be an integer in \[1, 10000000\]"),
    (dict(reg_covar=1e250), r"reg_covar must be a finite number in \[0, 1e\+200\]"),
    (dict(random_state=2**128), "random_state must be None, a non-negative int below 2"),
    # (bare numpy messages naming nothing, or an ambiguous truth value, or taken)
    (dict(weights_init="ab", n_components=2), "weights_init must be numeric"),
    (dict(means_init=[[1.0], [2.0, 3.0]], n_components=2), "means_init must be numeric"),
    (dict(outlier_gate=np.array([1.0])), "outlier_gate must be a single value"),
    # (the message left out the other two choices)
    (dict(outlier_gate=-1.0), r'outlier_gate must be a finite number > 0, "auto" or None, '
                              r"got -1.0"),
    (dict(init_params=np.array(["kmeans"])), "init_params must be a single value"),
    # (positive and finite, but its covariance overflowed to inf in covariances_)
    (dict(precisions_init=np.full(2, 1e-320), n_components=2, covariance_type="spherical",
          max_iter=0), "precisions_init is too small"),
    (dict(covariance_type="ful"), "covariance_type must be one of"),
    (dict(tol=-1), "tol must be"),
    (dict(reg_covar=np.nan), "reg_covar must be"),
    (dict(max_iter=-1), "max_iter"),
    (dict(n_init=1.5), "n_init"),
    (dict(init_params="kmeans+"), "init_params must be one of"),
    (dict(step_decay=0.5), r"step_decay must be a finite number in \(0.5, 1\]"),
    (dict(step_decay=1.2), "step_decay"),
    (dict(step_floor=0.0), "step_floor"),
    (dict(random_state="seed"), "random_state"),
    (dict(weights_init=[0.5, 0.6], n_components=2), "must sum to 1"),
    (dict(means_init=np.zeros((3, 2)), n_components=2), r"means_init must have shape \(2, 2\)"),
    (dict(precisions_init=-np.ones(2), n_components=2, covariance_type="spherical"),
     "positive"),
    (dict(precisions_init=np.array([[[1, 2], [2, 1]]] * 2), n_components=2),
     "positive definite"),
])
def test_bad_hyper_parameters_are_refused_at_fit_time(X, params, message):
    gm = GaussianMixture(**params)  # construction never validates (scikit-learn convention)
    with pytest.raises(ValueError, match=message):
        gm.fit(X)


def test_warm_up_smaller_than_the_components_is_refused_by_partial_fit(X):
    gm = GaussianMixture(2, warmup_size=1)
    with pytest.raises(ValueError, match="warmup_size .1. must be at least n_components"):
        gm.partial_fit(X)
    gm.fit(X)  # batch fits need no warm-up


def test_an_integer_beyond_int64_is_a_number_and_one_beyond_float_is_not_finite():
    """numpy's isfinite refuses Python integers beyond int64 (a TypeError that named no
    parameter: the daemon printed "model: ufunc 'isfinite' not supported")."""
    from emstream.validation import check_float

    assert check_float(10**30, "tol", 0.0) == 1e30
    with pytest.raises(ValueError, match=r"^tol must be a finite number in \[0, inf\), got 1000"):
        check_float(10**400, "tol", 0.0)


def test_a_drift_monitor_needs_an_emstream_mixture():
    """DriftMonitor("abc") failed at the first update with an AttributeError."""
    from emstream.drift import DriftMonitor

    with pytest.raises(TypeError, match="model must be an emstream.GaussianMixture, got str"):
        DriftMonitor("abc")


def test_a_float32_setting_against_a_bound_beyond_its_range_does_not_warn():
    """check_float compared np.float32(1e-3) with the 1e200 bound of reg_covar in float32:
    "overflow encountered in cast" on every fit with such a setting."""
    from emstream.validation import check_float

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_float(np.float32(1e-3), "reg_covar", 0.0, 1e200) == pytest.approx(1e-3)
        with pytest.raises(ValueError, match="reg_covar must be a finite number"):
            check_float(np.float32(-1.0), "reg_covar", 0.0, 1e200)


def test_a_whole_number_beyond_float64_is_a_value_error_naming_the_limit():
    """A Python int of 400 digits raised OverflowError ("int too large to convert to
    float") from fit, partial_fit, predict and score_samples."""
    fitted = GaussianMixture(1).fit(np.arange(30.0)[:, None])
    for call in (GaussianMixture(1).fit, GaussianMixture(1).partial_fit, fitted.predict,
                 fitted.score_samples):
        with pytest.raises(ValueError, match="beyond ±1e\\+100"):
            call([[10 ** 400], [1], [2]])


def test_missing_values_of_nullable_pandas_columns_are_named_as_missing():
    """pandas' NA (nullable Float64, boolean columns) gave "X must be numeric: float()
    argument must be ... not 'NAType'" (a TypeError), where NaN says to drop or impute."""
    pd = pytest.importorskip("pandas")
    missing = [pd.DataFrame({"a": pd.array([True, None, False] * 10, dtype="boolean")}),
               np.array([[1.0], [pd.NA], [3.0]] * 5, dtype=object)]
    for X in missing:
        with pytest.raises(ValueError, match="missing values .* drop or impute"):
            GaussianMixture(1).fit(X)
    with pytest.raises(ValueError, match="NaN or infinity .* drop or impute"):  # (as NaN)
        GaussianMixture(1).fit(pd.DataFrame({"a": pd.array([1.5, None, 3.0] * 10,
                                                           dtype="Float64")}))


def test_column_names_of_mixed_types_are_refused_as_scikit_learn_refuses_them():
    """A frame with str and int column names was learned as unnamed (no feature_names_in_),
    so a later frame with its columns swapped went unchecked."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(30.0), 1: np.arange(30.0) ** 2})
    with pytest.raises(TypeError, match="only supported if all input features have string"):
        GaussianMixture(1).fit(frame)


def test_verbose_may_be_a_flag_as_in_scikit_learn(caplog):
    """verbose=True was refused ("must be an integer >= 0"); scikit-learn takes a bool there."""
    import logging

    X = np.random.default_rng(0).normal(size=(200, 1))
    with caplog.at_level(logging.INFO, logger="emstream"):
        GaussianMixture(2, verbose=True, verbose_interval=1, random_state=0).fit(X)
    assert caplog.records
    with pytest.raises(ValueError, match="verbose must be an integer"):
        GaussianMixture(2, verbose=-1).fit(X)
