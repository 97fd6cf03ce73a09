"""SufficientStats: additive, mergeable, exact far from the origin."""

import numpy as np
import pytest

from emstream.stats import COVARIANCE_TYPES, SufficientStats

from .conftest import mixture_3d


def _resp(n, k, rng):
    r = rng.uniform(size=(k, n))
    return r / r.sum(axis=0)


def _assert_stats_close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a.counts, b.counts, rtol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.scatter, b.scatter, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_halves_merge_to_whole(kind):
    rng = np.random.default_rng(0)
    X = mixture_3d(1001, rng)
    resp = _resp(len(X), 3, rng)
    whole = SufficientStats.from_chunk(X, resp, kind)
    for cut in (1, 500, 1000):
        left = SufficientStats.from_chunk(X[:cut], resp[:, :cut], kind)
        right = SufficientStats.from_chunk(X[cut:], resp[:, cut:], kind)
        _assert_stats_close(left + right, whole)
        _assert_stats_close(right + left, whole)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_statistics_match_direct_formulas(kind):
    rng = np.random.default_rng(1)
    X = mixture_3d(300, rng)
    resp = _resp(len(X), 3, rng)
    stats = SufficientStats.from_chunk(X, resp, kind)
    n = resp.sum(axis=1)
    means = resp @ X / n[:, None]
    full = np.array([(resp[k][:, None] * (X - means[k])).T @ (X - means[k]) for k in range(3)])
    expected = {"full": full, "tied": full.sum(0), "diag": np.diagonal(full, axis1=1, axis2=2),
                "spherical": np.trace(full, axis1=1, axis2=2)}[kind]
    np.testing.assert_allclose(stats.counts, n, rtol=1e-13)
    np.testing.assert_allclose(stats.means, means, rtol=1e-12)
    np.testing.assert_allclose(stats.scatter, expected, rtol=1e-11)


def test_zeros_is_identity_and_scaling_is_linear():
    rng = np.random.default_rng(2)
    X = mixture_3d(200, rng)
    s = SufficientStats.from_chunk(X, _resp(200, 3, rng), "full")
    zero = SufficientStats.zeros(3, 3, "full")
    _assert_stats_close(zero + s, s)
    _assert_stats_close(s + zero, s)
    _assert_stats_close(s.scaled(0.5) + s.scaled(0.5), s)
    blended = s.blend(s, 0.3)
    _assert_stats_close(blended, s)


def test_blend_is_weighted_sum_of_raw_moments():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 2))
    a = SufficientStats.from_chunk(X[:50], np.ones((1, 50)), "full")
    b = SufficientStats.from_chunk(X[50:] + 3, np.ones((1, 50)), "full")
    g = 0.25
    m = a.blend(b, g)
    raw1 = (1 - g) * X[:50].sum(0) + g * (X[50:] + 3).sum(0)
    n = (1 - g) * 50 + g * 50
    np.testing.assert_allclose(m.counts, [n])
    np.testing.assert_allclose(m.means[0], raw1 / n, rtol=1e-13)
    raw2 = (1 - g) * X[:50].T @ X[:50] + g * (X[50:] + 3).T @ (X[50:] + 3)
    np.testing.assert_allclose(m.scatter[0], raw2 - n * np.outer(m.means[0], m.means[0]),
                               rtol=1e-10)


@pytest.mark.parametrize("offset", [0.0, 1e8, -1e12])
def test_far_from_origin_is_as_accurate_as_near(offset):
    rng = np.random.default_rng(4)
    base = rng.normal(size=(10_000, 2))
    resp = np.ones((1, len(base)))
    chunks = [SufficientStats.from_chunk(base[i:i + 1000] + offset, resp[:, i:i + 1000], "full")
              for i in range(0, len(base), 1000)]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    # What the input holds after rounding to float64 (subtracting the offset back is exact).
    held = (base + offset) - offset
    expected = np.cov(held.T, bias=True) * len(base)
    # The scatter is computed about the data: the only precision lost is that of storing each
    # chunk's mean as a float near the offset (one ulp of it), not the offset squared as raw
    # moments would (at 1e8 those lose every digit of a unit variance).
    ulp = np.spacing(abs(offset)) if offset else 0.0
    np.testing.assert_allclose(total.scatter[0], expected, rtol=1e-12 + 2 * ulp)
    np.testing.assert_allclose(total.means[0] - offset, held.mean(0),
                               atol=4e-16 * max(abs(offset), 1))


@pytest.mark.parametrize("n", [40, 4000])  # the exact small-chunk route, the shifted one
def test_full_scatter_is_symmetric_bit_for_bit(n):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(n, 4)) @ rng.normal(size=(4, 4)) + 3.0
    # moments about a point off the data's mean (as in the E-step, about the current means)
    centres = rng.normal(size=(3, 4))
    stats = SufficientStats.from_chunk(X, _resp(n, 3, rng), "full", centres)
    np.testing.assert_array_equal(stats.scatter, stats.scatter.transpose(0, 2, 1))


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_a_blended_scatter_stays_symmetric_bit_for_bit(kind):
    """Online EM's blend of running and new statistics: the tied scatter's between-means term
    was (δ between)ᵀ δ, asymmetric in the last bits (6e-14 on heavy-tailed data)."""
    rng = np.random.default_rng(5)
    running = None
    for _ in range(40):
        X = rng.standard_cauchy(size=(int(rng.integers(2, 300)), 3))
        chunk = SufficientStats.from_chunk(X, _resp(X.shape[0], 4, rng), kind,
                                           rng.normal(size=(4, 3)))
        running = chunk if running is None else running.blend(chunk, 0.3)
        for stats in (running, running + chunk):  # (and a sum: blend's fallback, merges)
            scatter = stats.scatter if kind == "tied" else stats.scatter.transpose(1, 2, 0)
            np.testing.assert_array_equal(scatter, scatter.swapaxes(0, 1))


def test_a_design_needs_its_reference_point():
    from emstream.stats import moments_design
    rng = np.random.default_rng(9)
    X = rng.normal(size=(100, 2)) + 5.0
    resp = _resp(100, 2, rng)
    ref = np.array([4.0, 6.0])
    with_design = SufficientStats.from_chunk(X, resp, "full", ref=ref,
                                             design=moments_design(X, ref, "full"))
    _assert_stats_close(with_design, SufficientStats.from_chunk(X, resp, "full", ref=ref))
    assert moments_design(X[:10], ref, "full") is None  # small chunks: the exact route
    with pytest.raises(ValueError, match="pass ref"):
        SufficientStats.from_chunk(X, resp, "full", design=moments_design(X, ref, "full"))


def test_incompatible_statistics_refuse_to_add():
    a = SufficientStats.zeros(2, 1, "full")
    with pytest.raises(ValueError, match="cannot add"):
        a + SufficientStats.zeros(3, 1, "full")
    with pytest.raises(ValueError, match="cannot add"):
        a + SufficientStats.zeros(2, 1, "diag")


def test_e_step_is_exact_when_the_current_means_are_far_from_the_data():
    from emstream.em import e_step
    from emstream.gaussian import MixtureParams
    X = np.random.default_rng(5).normal(size=(5000, 2))
    params = MixtureParams.from_covariances([1.0], [[1e8, 1e8]], [np.eye(2) * 1e16], "full")
    expected = np.cov(X.T, bias=True) * len(X)
    for rows in (None, 40):  # one chunk, and many small chunks merged
        stats = e_step(X, params, rows=rows).stats
        np.testing.assert_allclose(stats.scatter[0], expected, rtol=1e-9)
        np.testing.assert_allclose(stats.means[0], X.mean(0), atol=1e-12)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_blend_equals_scaled_sum(kind):
    rng = np.random.default_rng(6)
    a = SufficientStats.from_chunk(mixture_3d(300, rng), _resp(300, 3, rng), kind)
    b = SufficientStats.from_chunk(mixture_3d(200, rng) + 1.0, _resp(200, 3, rng), kind)
    _assert_stats_close(a.blend(b, 0.3), a.scaled(0.7) + b.scaled(0.3), rtol=1e-13)
    # online EM blends the batch's per-point averages: totals scaled by 1/200
    _assert_stats_close(a.blend(b, 0.3, 1 / 200), a.scaled(0.7) + b.scaled(0.3 / 200),
                        rtol=1e-13)
