"""Property-based: for arbitrary finite input, parameters stay finite, weights sum to 1 and
covariances stay positive definite — batch and online, every covariance type."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emstream import GaussianMixture
from emstream.stats import COVARIANCE_TYPES
from emstream.validation import MAX_ABS_VALUE

from .test_degenerate import assert_valid

finite = st.floats(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE, allow_nan=False,
                   allow_infinity=False, allow_subnormal=True)
# Mostly ordinary numbers, with repeats and extreme magnitudes mixed in.
values = st.one_of(finite, st.sampled_from([0.0, 1.0, -1.0, 44.44571429, 1e-300, 1e100]),
                   st.floats(min_value=-10, max_value=10))


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 3))
    return draw(arrays(np.float64, (n, d), elements=values))


SETTINGS = settings(max_examples=int(__import__("os").environ.get("EMSTREAM_HYPOTHESIS_EXAMPLES", 60)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(X=datasets(), k=st.integers(1, 4), kind=st.sampled_from(COVARIANCE_TYPES),
       reg=st.sampled_from([0.0, 1e-6]))
def test_batch_fit_keeps_parameters_valid(X, k, kind, reg):
    gm = GaussianMixture(k, covariance_type=kind, reg_covar=reg, random_state=0, max_iter=20)
    if X.shape[0] < k:
        with pytest.raises(ValueError, match="fewer than"):
            gm.fit(X)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    assert_valid(gm)
    assert np.all(np.isfinite(gm.score_samples(X)) | (gm.score_samples(X) == -np.inf))
    assert np.all(np.isfinite(gm.predict_proba(X)))


@SETTINGS
@given(X=datasets(), k=st.integers(1, 3), kind=st.sampled_from(COVARIANCE_TYPES),
       batch=st.integers(1, 7))
def test_online_keeps_parameters_valid(X, k, kind, batch):
    gm = GaussianMixture(k, covariance_type=kind, random_state=0, warmup_size=max(k, 3),
                         max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, X.shape[0], batch):
            gm.partial_fit(X[start:start + batch])
    if X.shape[0] >= gm.warmup_size:
        assert_valid(gm)
        assert gm.n_seen_ == X.shape[0]


def test_online_learning_of_huge_repeated_rows_does_not_crash():
    """Found by the property test above (a hypothesis example): rows near 1e99, all but one
    the same point, learned 3 at a time.  Two components end on a line at a scale that
    swallows reg_covar, and the upkeep's split-and-merge proposals measured their distance
    with a singular covariance: numpy.linalg.LinAlgError (old code)."""
    X = np.full((15, 2), 2.25532508e99)
    X[9, 0] = 0.0
    gm = GaussianMixture(3, covariance_type="full", random_state=0, warmup_size=3, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, 15, 3):
            gm.partial_fit(X[start:start + 3])
    assert_valid(gm)
    assert gm.n_seen_ == 15


def test_distances_between_singular_components_are_finite():
    from emstream.compare import _log_overlap, bhattacharyya

    means = np.array([[1e99, 1e99], [1e99, 1e99]])
    line = np.full((2, 2), 1.5e151)  # rank 1: reg_covar is lost at this scale
    covs = np.stack([line, line])
    assert np.all(np.isfinite(bhattacharyya(means, covs, means, covs)))
    assert np.all(np.isfinite(_log_overlap(means, covs, means, covs)))
    regular = np.stack([np.eye(2), 2 * np.eye(2)])
    small = np.array([[0.0, 0.0], [1.0, 0.0]])
    exact = bhattacharyya(small, regular, small, regular)  # the usual case is untouched
    assert exact[0, 0] == 0 and exact[0, 1] == pytest.approx(
        0.125 * 1 / 1.5 + 0.5 * (2 * np.log(1.5) - 0.5 * (0 + 2 * np.log(2))))
