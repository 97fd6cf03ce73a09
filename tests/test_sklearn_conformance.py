"""emstream.GaussianMixture conforms to scikit-learn: its estimator checks and its own tests.

1. ``check_estimator``: every check scikit-learn yields for the estimator passes, for each
   covariance type, with no expected failures.
2. scikit-learn's own ``sklearn/mixture/tests/test_gaussian_mixture.py`` (the installed copy,
   loaded at test time) runs in a pytest subprocess with its ``GaussianMixture`` replaced by
   emstream's, reworded where only wording differs (:data:`SKLEARN_WORDING`).  The tests that
   fail must be exactly the listed ones, each with its reason.

This module is also the pytest plugin of that subprocess (``-p tests.test_sklearn_conformance``):
``pytest_collection_modifyitems`` below does the replacement.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sklearn
import sklearn.exceptions
from sklearn.utils.estimator_checks import parametrize_with_checks

import emstream
from emstream.stats import COVARIANCE_TYPES

ROOT = Path(__file__).resolve().parent.parent
SKLEARN_DIR = Path(sklearn.__file__).resolve().parent
SKLEARN_TESTS = SKLEARN_DIR / "mixture" / "tests" / "test_gaussian_mixture.py"

# --------------------------------------------------------------------------- check_estimator


@pytest.fixture()
def array_api_testing_configured(monkeypatch):
    # scikit-learn skips its array-API check unless SCIPY_ARRAY_API is set.  emstream declares
    # no array-API support, so the check only asks that enabling dispatch with numpy input
    # changes nothing; with the variable set it runs instead of being skipped.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


def _not_a_base_estimator_warning_ignored():
    # "Estimator ... does not inherit from BaseEstimator": by design, emstream never imports
    # scikit-learn, so its estimator cannot inherit from scikit-learn's base class.
    warnings.filterwarnings("ignore", "Estimator .* does not inherit", UserWarning)


with warnings.catch_warnings():
    _not_a_base_estimator_warning_ignored()
    ALL_CHECKS = parametrize_with_checks([emstream.GaussianMixture(covariance_type=kind)
                                          for kind in COVARIANCE_TYPES])


@ALL_CHECKS
def test_sklearn_estimator_check(estimator, check, array_api_testing_configured):
    with warnings.catch_warnings():
        _not_a_base_estimator_warning_ignored()
        check(estimator)


# --------------------------------------------------------------------------- the wording map

def _five_decimals(text: str) -> str:
    return f"{float(text):.5f}"


# emstream's message (a full match) -> scikit-learn's, for the same condition.  Only wording
# changes here: the exception class stays what emstream raised (its NotFittedError and
# ConvergenceWarning are scikit-learn's classes too once sklearn is loaded, see
# emstream.exceptions.sklearn_compatible).  Each row names the sklearn test that needs it.
SKLEARN_WORDING: list[tuple[str, Callable[[re.Match], str]]] = [
    # test_check_weights
    (r"weights_init must have shape \((?P<want>.*)\), got \((?P<got>.*)\)",
     lambda m: f"The parameter 'weights' should have the shape of ({m['want']}), "
               f"but got ({m['got']})"),
    # test_check_weights (scikit-learn's text labels the minimum "max value" and vice versa)
    (r"weights_init must hold finite values in \[0, 1\], got values from (?P<lo>\S+) to "
     r"(?P<hi>\S+)",
     lambda m: "The parameter 'weights' should be in the range [0, 1], but got max value "
               f"{_five_decimals(m['lo'])}, min value {_five_decimals(m['hi'])}"),
    # test_check_weights
    (r"weights_init must sum to 1, got (?P<total>\S+)",
     lambda m: "The parameter 'weights' should be normalized, but got sum(weights) = "
               f"{_five_decimals(m['total'])}"),
    # test_check_means
    (r"means_init must have shape (?P<want>\(.*\)), got (?P<got>\(.*\))",
     lambda m: f"The parameter 'means' should have the shape of {m['want']}, "
               f"but got {m['got']}"),
    # test_check_precisions
    (r"precisions_init for covariance_type='(?P<kind>\w+)' must have shape (?P<want>\(.*\)), "
     r"got (?P<got>\(.*\))",
     lambda m: f"The parameter '{m['kind']} precision' should have the shape of "
               f"{m['want']}, but got {m['got']}"),
    # test_check_precisions
    (r"precisions_init must be (symmetric|positive definite) "
     r"\(covariance_type='(?P<kind>full|tied)'\)",
     lambda m: f"The parameter '{m['kind']} precision' should be symmetric, positive-definite"),
    # test_check_precisions
    (r"precisions_init must be positive \(covariance_type='(?P<kind>diag|spherical)'\)",
     lambda m: f"The parameter '{m['kind']} precision' should be positive"),
    # test_sample
    (r"n_samples must be an integer >= 1, got (?P<got>.*)",
     lambda m: f"Invalid value for 'n_samples': {m['got']} . The sampling requires at least "
               "one sample."),
    # test_gaussian_mixture_predict_predict_proba, test_score, test_score_samples, test_sample
    (r"This GaussianMixture is not fitted yet; .*",
     lambda m: "This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate "
               "arguments before using this estimator."),
    # test_gaussian_mixture_fit_convergence_warning (a ConvergenceWarning)
    (r"Batch EM did not converge within max_iter=\d+ iterations .*",
     lambda m: "Best performing initialization did not converge. Try different init "
               "parameters, or increase max_iter, tol, or check for degenerate data."),
]


def sklearn_wording(message: str) -> str | None:
    """scikit-learn's text for an emstream message, or None if the map has no row for it."""
    for pattern, reword in SKLEARN_WORDING:
        match = re.fullmatch(pattern, message, flags=re.DOTALL)
        if match:
            return reword(match)
    return None


def _reworded(method):
    """``method`` raising and warning what it did, in scikit-learn's words where they differ."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        caught = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                return method(*args, **kwargs)
        except (ValueError, TypeError) as error:
            reworded = sklearn_wording(str(error))
            if reworded is None:
                raise
            raise type(error)(reworded) from error
        finally:
            _warn_again(caught)

    return call


def _warn_again(caught) -> None:
    """Re-issue recorded warnings, reworded, where the caller's filters apply."""
    for warning in caught:
        reworded = sklearn_wording(str(warning.message))
        message = warning.message if reworded is None else type(warning.message)(reworded)
        warnings.warn_explicit(message, warning.category, warning.filename, warning.lineno)


class SklearnWordedGaussianMixture(emstream.GaussianMixture):
    """emstream's estimator, its errors and warnings worded as scikit-learn's: behaviour is
    emstream's own (nothing but messages is touched)."""

    fit = _reworded(emstream.GaussianMixture.fit)
    fit_predict = _reworded(emstream.GaussianMixture.fit_predict)
    partial_fit = _reworded(emstream.GaussianMixture.partial_fit)
    predict = _reworded(emstream.GaussianMixture.predict)
    predict_proba = _reworded(emstream.GaussianMixture.predict_proba)
    score = _reworded(emstream.GaussianMixture.score)
    score_samples = _reworded(emstream.GaussianMixture.score_samples)
    sample = _reworded(emstream.GaussianMixture.sample)
    bic = _reworded(emstream.GaussianMixture.bic)
    aic = _reworded(emstream.GaussianMixture.aic)


def test_the_wording_map_rewords_emstream_messages_and_nothing_else():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"The parameter 'weights' should be normalized, but "
                                         r"got sum\(weights\) = 0\.80000"):
        SklearnWordedGaussianMixture(2, weights_init=[0.4, 0.4]).fit(X)
    with pytest.raises(sklearn.exceptions.NotFittedError, match="instance is not fitted yet"):
        SklearnWordedGaussianMixture(2).predict(X)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="^Best performing init"):
        SklearnWordedGaussianMixture(2, max_iter=1, random_state=0).fit(X)
    # A message without a row passes through as emstream wrote it.
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        SklearnWordedGaussianMixture(2).fit(np.full((5, 2), np.nan))
    assert sklearn_wording("covariance_type must be one of ...") is None


# --------------------------------------------------------------------------- sklearn's own tests

# scikit-learn tests that fail against emstream, each for a reason that is no bug of emstream.
# Every one exercises scikit-learn's private helpers (names starting with "_"), which emstream
# has no reason to reproduce; the behaviour each guards is checked through emstream's public
# API by the tests after test_sklearn_own_gaussian_mixture_tests.
PRIVATE_HELPER_TESTS = {
    # Builds its expected precisions with sklearn.mixture._gaussian_mixture's private
    # _estimate_gaussian_parameters and _compute_precision_cholesky, then calls the
    # estimator's private methods _set_parameters and _initialize(X, resp) (emstream's
    # estimator has neither: its initialisation is emstream.init).
    "test_gaussian_mixture_precisions_init",
    # Monkeypatches the private sklearn.mixture._gaussian_mixture._estimate_gaussian_parameters
    # and counts its calls; emstream's M-step (emstream.em) never calls it.
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters",
}

# scikit-learn tests that fail because emstream deliberately behaves otherwise (public
# behaviour, not private helpers): each difference is documented emstream behaviour.
DELIBERATE_DIFFERENCES = {
    # Expects fit to raise "ill-defined empirical covariance" when ten components fit ten
    # points on two distinct values with reg_covar=0.  emstream's default
    # variance_floor="resolution" keeps every variance at or above δ²/12 (δ = 1, the data's
    # grid step), so the components are well defined and the fit succeeds, as documented
    # (and required by tests/test_degenerate.py: degenerate data is handled, not raised).
    "test_regularisation",
}


def pytest_collection_modifyitems(config, items):
    """Plugin hook, active only in the subprocess: scikit-learn's test module gets emstream's
    estimator (reworded) as its ``GaussianMixture``."""
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    replaced = set()
    for item in items:
        module = getattr(item, "module", None)
        if module is None or not module.__name__.endswith("test_gaussian_mixture"):
            continue
        if module not in replaced:
            if module.GaussianMixture is not SklearnGaussianMixture:
                raise pytest.UsageError(f"{module.__name__} no longer tests scikit-learn's "
                                        "GaussianMixture under that name")
            module.GaussianMixture = SklearnWordedGaussianMixture
            replaced.add(module)
    if not replaced:
        raise pytest.UsageError("scikit-learn's test_gaussian_mixture was not collected")


def _run_sklearn_tests(junit: Path) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items()
           # scikit-learn's defaults: seed 42, float64 only, array-API tests skipped.
           if name not in ("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "SKLEARN_RUN_FLOAT32_TESTS",
                           "SCIPY_ARRAY_API", "PYTEST_ADDOPTS")}
    command = [sys.executable, "-m", "pytest", str(SKLEARN_TESTS),
               "-p", "tests.test_sklearn_conformance", "-p", "no:cacheprovider",
               # sklearn/conftest.py (its global_dtype, global_random_seed fixtures) applies.
               f"--rootdir={SKLEARN_DIR}", f"--confcutdir={SKLEARN_DIR}",
               f"--junitxml={junit}", "-q", "--tb=short"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _outcomes(junit: Path) -> dict[str, str]:
    """Each test id's outcome ("passed", "failed" or "skipped") from a JUnit XML report."""
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if kinds & {"failure", "error"} else
                   "skipped" if "skipped" in kinds else "passed")
        outcomes[case.get("name")] = outcome
    return outcomes


def _function(test_id: str) -> str:
    return test_id.split("[", 1)[0]


@pytest.mark.slow
def test_sklearn_own_gaussian_mixture_tests(tmp_path):
    junit = tmp_path / "sklearn.xml"
    run = _run_sklearn_tests(junit)
    assert junit.exists(), f"pytest did not run:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    outcomes = _outcomes(junit)
    failed = {_function(test) for test, outcome in outcomes.items() if outcome == "failed"}
    passed = [test for test, outcome in outcomes.items() if outcome == "passed"]
    assert failed == PRIVATE_HELPER_TESTS | DELIBERATE_DIFFERENCES, run.stdout[-6000:]
    # Not vacuous: the public tests ran (about sixty of them with scikit-learn 1.9) and
    # passed; a failed collection or replacement would leave none.
    assert len(passed) >= 40, run.stdout[-3000:]
    for test in ("test_gaussian_mixture_fit", "test_warm_start", "test_sample",
                 "test_check_precisions", "test_max_iter_zero", "test_score"):
        assert any(_function(name) == test for name in passed), test


# The public behaviour behind the private-helper tests above, through emstream's own API.

@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_precisions_init_sets_the_precision_factors(kind):
    # What test_gaussian_mixture_precisions_init guards (scikit-learn #26415).
    rng = np.random.default_rng(0)
    X = rng.random((100, 3))
    fitted = emstream.GaussianMixture(4, covariance_type=kind, random_state=0).fit(X)
    start = emstream.GaussianMixture(4, covariance_type=kind, precisions_init=fitted.precisions_,
                                     max_iter=0, random_state=0).fit(X)
    np.testing.assert_allclose(start.precisions_cholesky_, fitted.precisions_cholesky_,
                               rtol=1e-10, atol=1e-12)


def test_all_initial_parameters_given_are_used_as_given():
    # What test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters guards
    # (scikit-learn #26015): nothing is estimated from the data before the first EM step.
    X = np.random.default_rng(1).normal(size=(200, 2))
    precisions = np.array([np.eye(2) * 2.0, np.eye(2) * 0.5])
    gm = emstream.GaussianMixture(2, weights_init=[0.3, 0.7], means_init=[[-1, 0], [1, 0]],
                                  precisions_init=precisions, max_iter=0).fit(X)
    np.testing.assert_array_equal(gm.weights_, [0.3, 0.7])
    np.testing.assert_array_equal(gm.means_, [[-1, 0], [1, 0]])
    np.testing.assert_allclose(gm.precisions_, precisions, rtol=1e-12)
    assert gm.n_iter_ == 0 and not gm.converged_ and gm.lower_bound_ == -np.inf


# --------------------------------------------------------------------------- emstream's side

def test_emstream_errors_and_warnings_are_sklearn_ones_once_sklearn_is_loaded():
    X = np.random.default_rng(2).normal(size=(60, 2))
    with pytest.raises(sklearn.exceptions.NotFittedError) as raised:
        emstream.GaussianMixture(2).predict(X)
    assert isinstance(raised.value, emstream.NotFittedError)
    # Errors cross process boundaries (dask workers) by pickle, bridged on arrival.
    again = pickle.loads(pickle.dumps(raised.value))
    assert isinstance(again, emstream.NotFittedError)
    assert isinstance(again, sklearn.exceptions.NotFittedError)
    assert again.args == raised.value.args
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # scikit-learn's filter silences emstream's warning.
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        emstream.GaussianMixture(2, max_iter=1, random_state=0).fit(X)


def test_max_iter_zero_publishes_the_start_and_refuses_to_learn_online():
    X = np.random.default_rng(3).normal(size=(60, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning: nothing was asked to converge
        gm = emstream.GaussianMixture(2, means_init=[[-1, 0], [1, 0]], max_iter=0).fit(X)
    np.testing.assert_array_equal(gm.means_, [[-1, 0], [1, 0]])
    assert gm.lower_bounds_ == [] and gm.n_iter_ == 0
    assert np.all(np.isfinite(gm.score_samples(X)))
    for learn in (gm.partial_fit, gm.refit):
        with pytest.raises(ValueError, match="max_iter=0"):
            learn(X)
    gm.set_params(max_iter=100, warm_start=True).fit(X)  # EM goes on from the start
    assert gm.n_iter_ > 0 and gm.lower_bound_ > -np.inf


def test_bic_and_aic_of_the_fitted_frame_warn_of_nothing_and_agree_with_score():
    """bic and aic checked X, then scored the bare array: on the data frame the model was
    fitted on, each warned that X had no feature names (scikit-learn's do not; found by an
    attack helper)."""
    import pandas as pd

    from emstream import GaussianMixture

    X = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 2)), columns=["a", "b"])
    model = GaussianMixture(2, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bic, aic = model.bic(X), model.aic(X)
    total = model.score_samples(X).sum()
    n_parameters = 2 * (2 + 3) + 1
    np.testing.assert_allclose([bic, aic], [-2 * total + n_parameters * np.log(300),
                                            -2 * total + 2 * n_parameters], rtol=1e-12)
