"""river adapters: river's own checks, clustering quality, anomaly ranking on Shuttle."""

import functools
import itertools

import numpy as np
import pytest
from river import checks, preprocessing
from river.checks import common

from emstream.river import GaussianMixtureDetector, OnlineGaussianMixture

from .conftest import mixture_2d

ADAPTERS = [OnlineGaussianMixture, GaussianMixtureDetector]
MODELS = [cls(**params) for cls in ADAPTERS for params in cls._unit_test_params()]
IDS = [f"{type(m).__name__}-{i}" for i, m in enumerate(MODELS)]

# The dataset checks river would run for these estimators (it runs none for clusterers and
# downloads CreditCard for detectors), run here on generated data with 6 features.
DATASET_CHECKS = [
    common.check_learn_one, common.check_pickling, common.check_shuffle_features_no_impact,
    common.check_emerging_features, common.check_disappearing_features,
    common.check_radically_disappearing_features, common.check_predict_one_pure,
    common.check_predict_one_before_any_learn, common.check_no_state_aliasing_with_input,
    common.check_clone_is_independent, common.check_seeding_is_idempotent,
]


def _stream(n, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, 6))
    labels = rng.integers(0, 3, n)
    X = centres[labels] + rng.normal(size=(n, 6))
    return [({f"f{j}": float(v) for j, v in enumerate(row)}, None) for row in X]


def _generic_checks(model):
    for check in checks.yield_checks(model):
        if isinstance(check, functools.partial):  # dataset checks: run below, offline
            continue
        yield check


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_river_generic_checks(model):
    ran = 0
    for check in _generic_checks(model):
        check(model.clone())
        ran += 1
    assert ran >= 14


@pytest.mark.parametrize("check", DATASET_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_river_dataset_checks(model, check):
    check(model.clone(), dataset=_stream(150))


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_river_bounded_memory_growth(model):
    common.check_bounded_memory_growth(model.clone(), dataset=_stream(3000))


def test_predicting_before_learning_gives_defined_answers():
    clusterer, detector = OnlineGaussianMixture(3), GaussianMixtureDetector(3)
    x = {"a": 1.0, "b": 2.0}
    assert clusterer.predict_one(x) == 0
    assert clusterer.predict_proba_one(x) == {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}
    assert detector.score_one(x) == 0.0


def test_missing_and_new_features_policy():
    model = OnlineGaussianMixture(2, warmup_size=50, batch_size=10, seed=0)
    for x, _ in _stream(300):
        model.learn_one(x)
    x = dict(_stream(1, seed=5)[0][0])
    full = model.predict_proba_one(x)
    assert model.predict_proba_one({**x, "new": 123.0}) == full  # new features are ignored
    partial = {k: v for k, v in x.items() if k != "f0"}
    assert sum(model.predict_proba_one(partial).values()) == pytest.approx(1.0)


def test_one_point_scoring_matches_the_estimator():
    for kind, d in itertools.product(["full", "tied", "diag", "spherical"], [1, 2, 6]):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(600, d)) + (rng.integers(0, 3, 600) * 4)[:, None]
        detector = GaussianMixtureDetector(3, covariance_type=kind, warmup_size=200,
                                           batch_size=50, seed=0)
        for row in X:
            detector.learn_one({f"f{j}": v for j, v in enumerate(row)})
        probe = X[:20]
        ours = [detector.score_one({f"f{j}": v for j, v in enumerate(row)}) for row in probe]
        np.testing.assert_allclose(ours, -detector.model.score_samples(probe), rtol=1e-10)


def test_learn_many_in_a_pipeline():
    import pandas as pd
    X = pd.DataFrame(mixture_2d(3000, np.random.default_rng(2)), columns=["x", "y"])
    model = preprocessing.StandardScaler() | OnlineGaussianMixture(3, warmup_size=500, seed=0)
    for start in range(0, len(X), 1000):
        model.learn_many(X.iloc[start:start + 1000])
    labels = model.predict_many(X)
    assert isinstance(labels, pd.Series) and len(labels) == len(X)
    assert set(labels.unique()) == {0, 1, 2}


def test_learn_many_reads_columns_by_name_whatever_their_order_or_index_type():
    import pandas as pd
    X = mixture_2d(3000, np.random.default_rng(4))
    reference = OnlineGaussianMixture(3, warmup_size=500, seed=0)
    mixed = OnlineGaussianMixture(3, warmup_size=500, seed=0)
    frames = [pd.DataFrame(X[i:i + 500], columns=["x", "y"]) for i in range(0, 3000, 500)]
    for i, frame in enumerate(frames):
        reference.learn_many(frame)
        if i % 3 == 1:
            frame = frame[["y", "x"]]  # same names, other order
        elif i % 3 == 2:  # same names in an object-dtype index (not pyarrow strings)
            frame = pd.DataFrame(frame.to_numpy(), columns=pd.Index(["x", "y"], dtype=object))
        mixed.learn_many(frame)
    np.testing.assert_allclose(mixed.model.means_, reference.model.means_, rtol=1e-12)
    assert mixed.model.n_seen_ == 3000


def test_learn_many_takes_python_string_and_multiindex_columns(monkeypatch):
    import sys

    import pandas as pd
    X = mixture_2d(1000, np.random.default_rng(5))

    def learn(columns):
        model = OnlineGaussianMixture(3, warmup_size=400, seed=0)
        for start in range(0, 1000, 250):
            model.learn_many(pd.DataFrame(X[start:start + 250], columns=columns))
        assert model.model.n_seen_ == 1000
        assert len(model.predict_many(pd.DataFrame(X[:10], columns=columns))) == 10

    learn(pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]))  # its .array raises
    python_strings = pd.Index(["x", "y"], dtype=pd.StringDtype("python"))
    # python-backed strings must not need pyarrow (an optional extra)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    learn(python_strings)


def test_pipeline_clustering_matches_sklearn_batch_quality():
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    rng = np.random.default_rng(3)
    n = 20_000
    means = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
    covs = np.array([[[1.0, 0.6], [0.6, 1.0]], [[2.0, -0.5], [-0.5, 0.5]], [[0.7, 0.0], [0.0, 1.5]]])
    truth = rng.choice(3, n, p=[0.4, 0.35, 0.25])
    X = means[truth] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[truth],
                                 rng.normal(size=(n, 2)))
    points = [{"x": float(a), "y": float(b)} for a, b in X]
    model = preprocessing.StandardScaler() | OnlineGaussianMixture(n_components=3, seed=0)
    for x in points:
        model.learn_one(x)
    ours = adjusted_rand_score(truth, [model.predict_one(x) for x in points])
    batch = SkGaussianMixture(3, random_state=0).fit(X).predict(X)
    reference = adjusted_rand_score(truth, batch)
    assert ours >= reference - 0.01, (ours, reference)


# Shuttle's ROC AUC against HalfSpaceTrees, with the defaults: tests/test_real_data.py.


def test_missing_features_are_filled_with_their_expectation_given_the_others_to_learn():
    """Filled with their expectation under the mixture given the feature the point has (not
    zero; not the mixture's mean either, which lies between its clusters): each component's
    conditional mean, weighted by its responsibility for the value given (scipy's)."""
    from scipy.stats import norm

    model = OnlineGaussianMixture(2, warmup_size=50, batch_size=10, seed=0)
    for x, _ in _stream(300):
        model.learn_one(x)
    w, mu, cov = model.model.weights_, model.model.means_, model.model.covariances_
    learned = []
    partial_fit = model.model.partial_fit
    model.model.partial_fit = lambda data: learned.append(data.copy()) or partial_fit(data)
    model.learn_one({"f1": 1.0})  # f0, f2.. missing: filled at the flush
    model._flush()
    filled = learned[-1][-1]
    given = w * norm.pdf(1.0, mu[:, 1], np.sqrt(cov[:, 1, 1]))
    given /= given.sum()
    expected = sum(r * (m + c[:, 1] / c[1, 1] * (1.0 - m[1])) for r, m, c in zip(given, mu, cov))
    np.testing.assert_allclose(filled, expected, rtol=1e-9)
    assert filled[1] == 1.0


def test_a_filled_in_value_stays_within_what_is_learned_and_learning_goes_on():
    """A value filled in by its expectation could be beyond ±1e100 (x = 9e99 where y = 2x) or
    NaN (no component gives the point a density): the flush was refused, the buffer kept, and
    every later learn_one raised (found by a second review)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    for scale, far in ((1.0, 9e99), (1e-90, 1e100)):
        detector = GaussianMixtureDetector(n_components=1, warmup_size=50, batch_size=10,
                                           seed=0)
        for _ in range(200):
            x = scale * rng.normal()
            detector.learn_one({"x": x, "y": 2 * x + 0.01 * scale * rng.normal()})
        detector.learn_one({"x": far})
        for _ in range(30):
            x = scale * rng.normal()
            detector.learn_one({"x": x, "y": 2 * x})
        assert detector.model.n_seen_ == 230 and len(detector._buffer) == 1  # (231 learned)
        detector.learn_many(pd.DataFrame({"x": [0.5 * scale, far]}))
        assert detector.model.n_seen_ == 233
        assert np.all(np.abs(detector.model.means_) <= 1e100)


def test_a_single_flat_row_does_not_keep_a_flat_start_from_setting_its_units():
    """A first frame of one row sets no units (two are needed) but was remembered as "the
    same flat rows", so that 50 rows of the same value were skipped: reg_covar stayed 1e-6,
    and a step from 5e-5 to 6e-5 went unseen (found by a second review)."""
    import pandas as pd

    detector = GaussianMixtureDetector(n_components=1, warmup_size=5, seed=0)
    detector.learn_many(pd.DataFrame({"x": [5e-5]}))
    detector.learn_many(pd.DataFrame({"x": [5e-5] * 50}))
    assert detector.model.reg_covar < 1e-12
    assert detector.score_one({"x": 6e-5}) > detector.score_one({"x": 5e-5}) + 5



def _readings(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [{"temp": float(rng.normal()), "pressure": 1000.0 + float(rng.normal())}
            for _ in range(n)]


def test_missing_features_before_the_first_model_are_filled_with_the_points_mean():
    """Before the first model there is no mixture mean: zeros were filled in, so a few
    readings without a pressure near 1000 left a component at pressure 0, and a reading of 0
    (1,000 sd off) then scored as nearly ordinary."""
    detector = GaussianMixtureDetector(seed=0)
    for i, x in enumerate(_readings(3000), start=1):
        if i <= 256 and i % 20 == 0:
            del x["pressure"]  # 12 of the first batch lack it
        detector.learn_one(x)
    assert detector.model.means_[:, 0].min() > 990  # (features in sorted order: pressure)
    far = detector.score_one({"temp": 0.0, "pressure": 0.0})
    assert far > 100 * detector.score_one({"temp": 0.0, "pressure": 990.0})


def test_a_point_missing_a_feature_is_scored_and_labelled_on_the_features_it_has():
    """Filled with the mixture's mean, which lies between two clusters, a typical point
    missing one feature scored as a gross outlier (16.6 nats, as (0, 5) 5 sd off its cluster)
    and was labelled by the gap (found by an attack helper).  Now: its marginal surprise,
    ``-log p(a)`` under the model, and the label of its cluster."""
    import pandas as pd
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (2000, 2)), rng.normal(10, 1, (2000, 2))])
    X = X[rng.permutation(len(X))]
    detector = GaussianMixtureDetector(n_components=2, seed=0)
    clusterer = OnlineGaussianMixture(2, seed=0)
    for row in X:
        detector.learn_one({"a": float(row[0]), "b": float(row[1])})
    clusterer.learn_many(pd.DataFrame(X, columns=["a", "b"]))
    model = detector.model
    marginal = -np.log(sum(w * norm.pdf(0.0, m[0], np.sqrt(c[0, 0])) for w, m, c in
                           zip(model.weights_, model.means_, model.covariances_)))
    assert detector.score_one({"a": 0.0}) == pytest.approx(marginal, rel=1e-9)
    assert detector.score_one({"a": 0.0}) < 2.0 < 15.0 < detector.score_one({"a": 0.0, "b": 5.0})
    near, far = ({"a": 0.0, "b": 0.0}, {"a": 10.0, "b": 10.0})
    for full in (near, far):
        assert clusterer.predict_one({"a": full["a"]}) == clusterer.predict_one(full)
        assert max(clusterer.predict_proba_one({"a": full["a"]}).values()) > 0.999
    labels = clusterer.predict_many(pd.DataFrame({"a": [0.0, 10.0]})).tolist()
    assert labels == clusterer.predict_many(pd.DataFrame([near, far])).tolist()
    assert labels[0] != labels[1]


@pytest.mark.parametrize("unit", [1e-6, 1e-12])
def test_readings_in_small_units_are_told_apart_as_in_any_units(unit):
    """The adapters' reg_covar was an absolute 1e-6: in units of 1e-6 two clusters 10 sd
    apart were one, and a point 100 sd off scored as an ordinary one (found by an attack
    helper).  "auto" (the default) takes a share of the first points' variance: the same
    readings in any units give the same scores, up to the log of the unit."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (1500, 2)), rng.normal(10, 1, (1500, 2))])
    X = X[rng.permutation(len(X))]
    scores = {}
    for scale in (1.0, unit):
        detector = GaussianMixtureDetector(n_components=2, seed=0)
        clusterer = OnlineGaussianMixture(2, seed=0)
        for row in X * scale:
            detector.learn_one({"a": float(row[0]), "b": float(row[1])})
        clusterer.learn_many(pd.DataFrame(X * scale, columns=["a", "b"]))
        typical = detector.score_one({"a": 0.0, "b": 0.0})
        far = detector.score_one({"a": 100 * scale, "b": -100 * scale})
        scores[scale] = (typical - 2 * np.log(scale), far - 2 * np.log(scale))
        assert clusterer.predict_one({"a": 0.0, "b": 0.0}) != \
            clusterer.predict_one({"a": 10 * scale, "b": 10 * scale})
    np.testing.assert_allclose(scores[unit], scores[1.0], rtol=1e-3)
    assert scores[unit][1] > scores[unit][0] + 1000


@pytest.mark.parametrize("frames", [False, True], ids=["learn_one", "learn_many"])
def test_points_missing_a_feature_are_learned_in_their_cluster_not_between_clusters(frames):
    """Learned with the mixture's mean filled in, which lies between two clusters, 30% of
    points missing ``b`` made a component there and the point (0, 5), 5 sd off its cluster,
    scored below a typical point (found by a review).  Now the missing value is its
    expectation given the others under the mixture (each component's conditional mean)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (2000, 2)), rng.normal(10, 1, (2000, 2))])
    X = X[rng.permutation(len(X))]
    lacking = rng.random(len(X)) < 0.3
    lacking[:1500] = False  # (the first model from whole points)
    detector = GaussianMixtureDetector(n_components=3, seed=0, warmup_size=1000)
    if frames:
        for start in range(0, len(X), 100):
            part = pd.DataFrame(X[start:start + 100], columns=["a", "b"])
            whole = ~lacking[start:start + 100]
            detector.learn_many(part[whole])
            detector.learn_many(part[~whole][["a"]])
    else:
        for row, lacks in zip(X, lacking):
            detector.learn_one({"a": float(row[0])} if lacks else
                               {"a": float(row[0]), "b": float(row[1])})
    means_b = detector.model.means_[:, 1]
    assert not ((means_b > 3) & (means_b < 7)).any(), means_b
    assert detector.score_one({"a": 0.0, "b": 5.0}) > 10.0 > 3.0 > \
        detector.score_one({"a": 0.0, "b": 0.0})


def test_a_frame_missing_a_column_before_the_first_model_is_filled_with_the_points_mean():
    pd = pytest.importorskip("pandas")
    rows = _readings(600, seed=1)
    model = OnlineGaussianMixture(2, warmup_size=1000, seed=0)
    model.learn_many(pd.DataFrame(rows[:8]))  # a first model needs 2 (D + 1) K = 12 rows
    model.learn_many(pd.DataFrame(rows[8:11]).drop(columns="pressure"))
    assert not model.model._is_fitted()
    filled = np.concatenate(model.model._learner().buffer)[8:, 0]
    np.testing.assert_allclose(filled, np.mean([x["pressure"] for x in rows[:8]]))
    model.learn_many(pd.DataFrame(rows[11:]))
    assert model.model.means_[:, 0].min() > 990


def test_a_huge_integer_in_a_frame_is_refused_to_learn_and_scored_at_the_edge():
    """An object column holding 10**400 raised OverflowError (learn_one refuses it clearly)."""
    pd = pytest.importorskip("pandas")
    model = OnlineGaussianMixture(2, warmup_size=50, seed=0)
    model.learn_many(pd.DataFrame(np.random.default_rng(0).normal(size=(100, 2)),
                                  columns=["a", "b"]))
    huge = pd.DataFrame({"a": np.array([10**400, -10**400], dtype=object), "b": [1.0, 1.0]})
    with pytest.raises(ValueError, match="^feature .a. is NaN, infinite or beyond"):
        model.learn_many(huge)
    with pytest.raises(ValueError, match="infinite"):
        model.learn_one({"a": 10**400, "b": 1.0})
    assert model.predict_many(huge).shape == (2,)


@pytest.mark.parametrize("stage", ["nothing learned", "warming up"])
def test_bad_points_are_refused_before_the_first_model_as_after_it(stage):
    """Text, None or NaN scored 0 and labelled 0 before the first model, and raised
    ValueError after it (found by an attack helper)."""
    pd = pytest.importorskip("pandas")
    detector, clusterer = GaussianMixtureDetector(seed=0), OnlineGaussianMixture(seed=0)
    if stage == "warming up":
        for x in _readings(5):
            detector.learn_one(x)
            clusterer.learn_one(x)
    for bad in ({"temp": None}, {"temp": "a"}, {"temp": float("nan")}):
        with pytest.raises(ValueError):
            detector.score_one(bad)
        with pytest.raises(ValueError):
            clusterer.predict_one(bad)
    with pytest.raises(ValueError):
        clusterer.predict_many(pd.DataFrame({"pressure": [1.0, np.nan], "temp": [0.0, 0.0]}))
    assert detector.score_one({"temp": 0.0, "pressure": 1000.0}) >= 0.0
    assert clusterer.predict_many(pd.DataFrame(_readings(2))).tolist() == [0, 0]

# ---------------------------------------------------------------- the time-series detector
from emstream.river_series import SeriesDetector  # noqa: E402

SERIES_MODELS = [SeriesDetector(**p) for p in SeriesDetector._unit_test_params()]


@pytest.mark.parametrize("model", SERIES_MODELS, ids=["SeriesDetector"])
def test_series_detector_passes_river_checks(model):
    test_river_generic_checks(model)
    for check in DATASET_CHECKS:
        test_river_dataset_checks(model, check)
    test_river_bounded_memory_growth(model)


def test_series_detector_scores_as_the_daemons_pipeline_does():
    """score_one is the SeriesMonitor's score for the point, and it ranks an in-range spike
    (a value the series takes, at the wrong moment) far above ordinary points."""
    rng = np.random.default_rng(0)
    t = np.arange(6000)
    x = np.sin(2 * np.pi * t / 100) + 0.05 * rng.normal(size=t.size)
    x[5500] = 0.95 if x[5499] < 0 else -0.95  # in range, but not next to its neighbour
    detector = SeriesDetector(season=100, seed=0)
    scores = []
    for v in x:
        scores.append(detector.score_one({"v": float(v)}))
        detector.learn_one({"v": float(v)})
    scores = np.array(scores)
    assert scores[5500] > 0.9999
    assert np.mean(scores[2000:5500] > 0.9999) < 0.002
    assert 0.0 <= scores.min() and scores.max() <= 1.0


def test_a_bad_value_is_refused_at_once_and_leaves_the_adapter_working():
    """NaN, infinity, text or a value beyond ±1e100 given to learn_one: a ValueError naming the
    feature, before anything is kept (a NaN stayed in the buffer and every later learn_one
    failed; text raised a TypeError; score_one of 1e200 an OverflowError).  Scored, a value
    beyond the range counts as at its edge; numpy numbers and booleans are numbers."""
    import math

    from emstream.river import GaussianMixtureDetector, OnlineGaussianMixture

    rng = np.random.default_rng(0)
    detector = GaussianMixtureDetector(n_components=2, batch_size=5, warmup_size=50, seed=0)
    for value in rng.normal(size=3):
        detector.learn_one({"a": float(value)})
    for bad in (float("nan"), float("inf"), 1e200, "x", None, 10**400):  # (an int beyond
        with pytest.raises(ValueError, match="feature 'a' is"):         # float: OverflowError)
            detector.learn_one({"a": bad})
    assert len(detector._buffer) == 3
    for value in rng.normal(size=200):
        detector.learn_one({"a": np.float32(value)})
    assert detector.model._is_fitted()
    far, near = detector.score_one({"a": 1e200}), detector.score_one({"a": 0.0})
    assert math.isfinite(far) and far > 1e100 > near
    assert detector.score_one({"a": -(10**400)}) == detector.score_one({"a": -1e200})
    with pytest.raises(ValueError, match="NaN"):
        detector.score_one({"a": float("nan")})
    early = GaussianMixtureDetector(n_components=2, batch_size=50, reg_covar=0.0, seed=0)
    for _ in range(5):
        early.learn_one({"a": 1.0})  # a constant feature and no regularisation
    assert math.isfinite(early.score_one({"a": 2.0})) and math.isfinite(
        early.score_one({"a": 1e200}))
    clusterer = OnlineGaussianMixture(n_components=2, batch_size=20, warmup_size=40, seed=0)
    for value in rng.normal(size=100):
        clusterer.learn_one({"a": float(value), 1: bool(value > 0)})  # names of two types
    probabilities = clusterer.predict_proba_one({"a": 1e300, 1: True})
    assert all(math.isfinite(p) for p in probabilities.values())
    # A frame's rows the same (predict_many refused what predict_one took).
    import pandas as pd

    far = [{"a": 1e300, 1: True}, {"a": -float("inf"), 1: False}, {"a": 0.5, 1: True}]
    frame = pd.DataFrame({"a": [x["a"] for x in far], 1: [float(x[1]) for x in far]})
    assert clusterer.predict_many(frame).tolist() == [clusterer.predict_one(x) for x in far]


def test_empty_frames_odd_column_names_and_bad_batch_sizes():
    """learn_many of an empty frame fixed the features to none (every later flush failed);
    a frame with columns 'a' and 1 raised a TypeError sorting them (learn_one took them);
    predict_many of an empty frame raised once fitted; batch_size None or 'a' failed at the
    first flush with a TypeError, and 0, -5 or 2.5 were taken."""
    import pandas as pd

    from emstream.river import OnlineGaussianMixture

    rng = np.random.default_rng(0)
    model = OnlineGaussianMixture(n_components=2, batch_size=5, warmup_size=20, seed=0)
    model.learn_many(pd.DataFrame())
    model.learn_many(pd.DataFrame({"a": [], 1: []}))
    frame = pd.DataFrame({"a": rng.normal(size=40), 1: rng.normal(size=40)})
    model.learn_many(frame)
    assert model._features == (1, "a") and model.model._is_fitted()
    model.learn_one({"a": 0.5, 1: -0.5})
    assert len(model.predict_many(frame[:0])) == 0
    assert len(model.predict_many(frame)) == 40
    for bad in (None, "a", 0, -5, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            OnlineGaussianMixture(batch_size=bad)
    # The model's own settings too (they raised at the first flush, then at every learn_one,
    # the buffer growing).
    for bad, message in [({"covariance_type": "bogus"}, "covariance_type must be one of"),
                         ({"warmup_size": 2}, "warmup_size .2. must be at least n_components"),
                         ({"reg_covar": -1.0}, "reg_covar must be")]:
        with pytest.raises(ValueError, match=message):
            OnlineGaussianMixture(**bad)


def test_the_series_detector_takes_numpy_numbers_and_stands_in_for_bad_readings():
    """np.float32 / np.int64 values were silently ignored (no model after 2,000 points); a
    NaN was learned and failed a whole batch 19 points later.  Now any real number counts,
    and a reading that is not a usable number takes the feature's last value."""
    from emstream.river_series import SeriesDetector

    rng = np.random.default_rng(1)
    values = rng.normal(size=600) * 10
    scores = {}
    for cast in (float, np.float32, np.int64):
        detector = SeriesDetector(seed=0, warmup_size=100, batch_size=20)
        for value in values:
            detector.learn_one({"v": cast(value)})
        assert detector.monitor.model._is_fitted(), cast
        scores[cast] = detector.score_one({"v": cast(1e6)})
    assert all(score > 0.999 for score in scores.values())
    detector = SeriesDetector(seed=0, warmup_size=100, batch_size=20)
    for i, value in enumerate(values):
        detector.learn_one({"v": float("nan") if i == 250 else float(value)})
    assert detector.monitor.model.n_seen_ == 600 - 600 % 20
    assert 0.0 <= detector.score_one({"v": float("nan")}) <= 1.0


@pytest.mark.parametrize("make", [lambda: GaussianMixtureDetector(seed=0, warmup_size=50,
                                                                   batch_size=10),
                                  lambda: OnlineGaussianMixture(2, seed=0, warmup_size=50,
                                                                batch_size=10)],
                         ids=["detector", "clusterer"])
def test_a_refused_first_point_or_frame_chooses_no_features(make):
    """A first point refused for a bad value fixed the features: the detector then scored
    every point the same.  A first frame with a text column did the same."""
    import random

    import pandas as pd

    model = make()
    with pytest.raises(ValueError, match="not a number"):
        model.learn_one({"oops": "n/a"})
    # (numpy registers a time span as an integer: float() of it raised TypeError, and the
    # refused point fixed the features; found by an attack helper)
    for span in (np.timedelta64(5, "s"), np.timedelta64("NaT")):
        with pytest.raises(ValueError, match="not a number"):
            model.learn_one({"oops": span})
    with pytest.raises(ValueError, match="not a number"):  # (object column: learned as counts)
        model.learn_many(pd.DataFrame({"oops": pd.Series([np.timedelta64(i, "s")
                                                          for i in range(20)], dtype=object)}))
    with pytest.raises(ValueError):
        model.learn_many(pd.DataFrame({"cpu": [1.0, 2.0], "host": ["x", "y"]}))
    with pytest.raises(ValueError):  # (refused by the model: a NaN)
        model.learn_many(pd.DataFrame({"sensor_init": [np.nan, 1.0]}))
    rng = random.Random(0)
    for _ in range(500):
        model.learn_one({"cpu": rng.gauss(50, 5), "mem": rng.gauss(0.5, 0.05)})
    assert model._features == ("cpu", "mem")
    if isinstance(model, GaussianMixtureDetector):
        assert model.score_one({"cpu": 5000.0, "mem": 90.0}) > \
            model.score_one({"cpu": 50.0, "mem": 0.5}) + 100


@pytest.mark.parametrize("make", [lambda: GaussianMixtureDetector(seed=0),
                                  lambda: OnlineGaussianMixture(2, seed=0)],
                         ids=["detector", "clusterer"])
@pytest.mark.parametrize("bad", [np.inf, np.nan, 1e200, 10**400],
                         ids=["inf", "nan", "1e200", "10**400"])
def test_a_frame_s_unreal_value_is_refused_by_its_feature_s_name(make, bad):
    """learn_many said "X contains NaN or infinity ... first at row 2": no name, and a huge
    integer in an object column is no NaN (found by an attack helper)."""
    import pandas as pd

    model = make()
    model.learn_many(pd.DataFrame({"cpu": [1.0, 2.0, 3.0], "mem": [1.0, 2.0, 3.0]}))
    column = pd.Series([1.0, 2.0, bad, bad], dtype=object if bad == 10**400 else float)
    with pytest.raises(ValueError, match=r"^feature 'mem' is NaN, infinite or beyond ±1e\+100 "
                                         r"in 2 row\(s\), first at row 2; "):
        model.learn_many(pd.DataFrame({"cpu": [1.0, 2.0, 3.0, 4.0], "mem": column}))
    if isinstance(model, OnlineGaussianMixture) and bad != bad:  # (scored at the edge else)
        frame = pd.DataFrame({"cpu": [np.inf, 2.0, 3.0], "mem": [1.0, 2.0, np.nan]})
        for fresh in (model, make()):  # fitted, and before any frame
            with pytest.raises(ValueError, match=r"^feature 'mem' is NaN in 1 row\(s\), first "
                                                 r"at row 2; drop or impute"):
                fresh.predict_many(frame)


def test_points_with_none_of_the_features_are_not_learned(caplog):
    """Learned as the fill (the mixture's mean), 3,000 empty or renamed points made the gap
    between two clusters the most normal place there was.  Then they were dropped without a
    trace: now counted (``n_not_learned``) and said at the 1st, 10th, 100th... (found by an
    attack helper)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    model = GaussianMixtureDetector(n_components=2, seed=0, warmup_size=200, batch_size=50)
    for i in range(2000):
        centre = (0.0, 0.0) if i % 2 else (8.0, -8.0)
        model.learn_one({"a": centre[0] + rng.normal(), "b": centre[1] + rng.normal()})
    model._flush()
    before = model.score_one({"a": 4.0, "b": -4.0})
    for _ in range(3000):
        model.learn_one({})
        model.learn_one({"A": 4.0, "B": -4.0})
    model.learn_many(pd.DataFrame({"A": [4.0] * 1000, "B": [-4.0] * 1000}))
    model._flush()
    assert model.score_one({"a": 4.0, "b": -4.0}) == before
    assert model.n_not_learned == 4000  # (an empty point is nothing to learn, not a skip)
    said = [r.getMessage() for r in caplog.records if "not learned so far" in r.getMessage()]
    assert said == [f"GaussianMixtureDetector: {n} point(s) not learned so far: they hold none "
                    "of the features ['a', 'b'] (the last had ['A', 'B'])"
                    for n in (1, 10, 100, 1000)]
    # A numpy bool is a number, as a Python bool is.
    model.learn_one({"a": np.float32(0.5), "b": np.True_})


def test_the_series_detector_refuses_bad_settings_by_their_own_names():
    """volatility="no" switched the feature on (bool of a word), None switched it off; a bad
    calibration_window or level_window was refused as the calibrator's "size" or the level's
    "window"; warmup_size="a" failed at the first batch with int()'s own message."""
    from emstream.river_series import SeriesDetector
    from emstream.temporal import TemporalFeatures

    for bad, message in [({"volatility": "no"}, "volatility must be True or False"),
                         ({"volatility": None}, "volatility must be True or False"),
                         ({"calibration_window": 5}, "calibration_window must be an integer"),
                         ({"calibration_window": "a"}, "calibration_window must be an integer"),
                         ({"level_window": -1}, r"level_window must be an integer in \[0, "),
                         ({"level_window": 2.5}, r"level_window must be an integer in \[0, "),
                         # (as the daemon bounds them: 10**12 asked for 7 TiB at the first
                         # batch, and 10**7 took 3 s for 400 points)
                         ({"level_window": 10**12}, r"level_window must be an integer in "
                                                    r"\[0, 1000\]"),
                         ({"calibration_window": 10**12}, "calibration_window must be an "
                                                          "integer in"),
                         # (accepted, "auto" was decided from learn_one's one point: never a
                         # season, and no word of it; found by an attack helper)
                         ({"season": "auto"}, "season must be a period in points or None"),
                         # (the message offered "auto", refused above)
                         ({"season": 0}, r"season must be a period from 1 to 1e\+08 points "
                                         r"or None, got 0$")]:
        with pytest.raises(ValueError, match=message):
            SeriesDetector(**bad)
    with pytest.raises(ValueError, match="calendar must be True or False"):
        TemporalFeatures(calendar="yes")
    # The model's settings too, when the detector is made (as the other adapters do): they
    # were refused at the batch_size-th learn_one, after rows were buffered, and the seed as
    # random_state.
    for bad, message in [({"warmup_size": "a"}, "warmup_size must be an integer"),
                         ({"warmup_size": 0}, "warmup_size must be an integer"),
                         ({"n_components": 0}, "n_components must be an integer"),
                         ({"seed": -1}, "^seed must be None"), ({"seed": "3"}, "^seed must be")]:
        with pytest.raises(ValueError, match=message):
            SeriesDetector(**bad)
    # Good values of every kind are taken: numpy's bools, no level window.
    detector = SeriesDetector(volatility=np.True_, level_window=0, warmup_size=50, seed=0)
    for t in range(200):
        detector.learn_one({"v": float(t % 7)})
    assert detector.monitor.model._is_fitted() and detector.monitor.level is None


def test_the_series_detector_keeps_a_feature_whose_first_reading_failed_and_any_units():
    """A NaN first reading left its feature out for good (a spike of it then scored like an
    ordinary point); reg_covar was an absolute 1e-6, which swamped readings of the order of
    1e-4 (a 10x spike scored as the ordinary points), as the daemon's used to."""
    import math

    from emstream.river_series import SeriesDetector

    with pytest.raises(ValueError, match="batch_size"):
        SeriesDetector(batch_size=None)
    scores = {}
    for scale in (1.0, 1e-4):
        detector = SeriesDetector(season=50, seed=0)
        # (None, JSON's null, is a failed reading too: it left the feature out for good; a
        # time span mid-stream raised TypeError where the last value stands in)
        detector.learn_one({"cpu": math.nan if scale == 1.0 else None, "mem": 0.5})
        for t in range(3000):
            if t == 1500:  # (it raised TypeError; now the last value stands in, as for text)
                detector.learn_one({"cpu": np.timedelta64(5, "s"), "mem": 0.5})
            x = {"cpu": scale * (50 + math.sin(2 * math.pi * t / 50) + 0.01 * ((t * 7919) % 13)),
                 "mem": 0.5}
            detector.learn_one(x)
        assert detector._names == ("cpu", "mem")
        normal = {"cpu": scale * (50 + math.sin(2 * math.pi * 3000 / 50)), "mem": 0.5}
        scores[scale] = (detector.score_one(normal),
                         detector.score_one({"cpu": scale * 60.0, "mem": 0.5}))
    for normal, spike in scores.values():
        assert normal < 0.999 and spike > 0.9999


def test_learn_many_refuses_what_learn_one_refuses():
    """A frame with a column name twice learned its first column twice and dropped the other;
    complex values lost their imaginary part (a warning), times were learned as epoch counts
    and text such as "1.5" as a number, all of which learn_one and the estimator refuse."""
    import pandas as pd

    a = np.random.default_rng(0).normal(size=300)
    bad = {"a name twice": (pd.DataFrame(np.c_[a, 5 * a + 50], columns=["x", "x"]),
                            "appear more than once"),
           "complex": (pd.DataFrame({"a": a + 100j, "b": a}), "complex"),
           "times": (pd.DataFrame({"a": pd.to_datetime(np.arange(300), unit="s"), "b": a}),
                     "not a number"),
           "text": (pd.DataFrame({"a": [f"{v}" for v in a], "b": a}), "not a number")}
    for name, (frame, message) in bad.items():
        detector = GaussianMixtureDetector(n_components=1, warmup_size=50, seed=0)
        with pytest.raises(ValueError, match=message):
            detector.learn_many(frame)
        detector.learn_many(pd.DataFrame({"a": a, "b": a > 0}))  # then a good frame: learned
        assert detector._model.n_seen_ == 300, name
    # Before the first frame too (predict_many took a name twice and labelled every row 0)
    with pytest.raises(ValueError, match="'x' appear more than once"):
        OnlineGaussianMixture(n_components=2).predict_many(bad["a name twice"][0])
    # (a pyarrow table of numbers and times has no common dtype: numpy's DTypePromotionError
    # before the first frame, where learning said what was wrong; found by an attack helper)
    import pyarrow as pa

    table = pa.table({"a": [1.0, 2.0], "d": pa.array(np.array(["2020-01-01", "2020-01-02"],
                                                              dtype="datetime64[s]"))})
    for call in (OnlineGaussianMixture(n_components=2).learn_many,
                 OnlineGaussianMixture(n_components=2).predict_many):
        with pytest.raises(ValueError, match=r"the frame holds times \(dtype datetime64"):
            call(table)
    mixed = pd.DataFrame({"a": np.arange(300), "b": a > 0, "c": a.astype(object)})
    model = OnlineGaussianMixture(n_components=2, warmup_size=50, seed=0)
    model.learn_many(mixed)  # integers, booleans and Python floats are numbers
    assert model._model.n_seen_ == 300


def test_frames_check_the_features_values_only_and_whichever_way_they_are_read():
    """A frame missing one of the features was read column by column, unchecked: times were
    learned as epoch counts (a mean of 7.8e12), text "-4.0" as a number.  A text column beside
    the features (a host name) failed the whole frame, where learn_one ignores it."""
    import pandas as pd

    rng = np.random.default_rng(0)
    A = np.r_[rng.normal(-4, 1, (150, 2)), rng.normal(4, 1, (150, 2))][rng.permutation(300)]
    model = OnlineGaussianMixture(n_components=2, warmup_size=100, seed=0)
    model.learn_many(pd.DataFrame(A, columns=["a", "b"]))
    means = model.model.means_.copy()
    for frame, message in [(pd.DataFrame({"a": pd.to_datetime(["2020-01-01"] * 5)}), "times"),
                           (pd.DataFrame({"a": ["-4.0"] * 5}), "not a number"),
                           (pd.DataFrame({"a": [4.0 + 9j] * 5}), "complex")]:  # (b missing)
        for method in (model.learn_many, model.predict_many):
            with pytest.raises(ValueError, match=message):
                method(frame)
    np.testing.assert_array_equal(model.model.means_, means)
    extra = pd.DataFrame({"a": [4.0] * 3, "b": [4.0] * 3, "host": ["web-1"] * 3,
                          "note": [None] * 3})
    assert model.predict_many(extra).tolist() == [model.predict_one({"a": 4.0, "b": 4.0})] * 3
    seen = model.model.n_seen_
    model.learn_many(extra)
    assert model.model.n_seen_ == seen + 3
    with pytest.raises(ValueError, match="feature 'a' is 'x': not a number"):
        model.learn_many(pd.DataFrame({"a": ["x"] * 3, "b": [4.0] * 3, "host": ["h"] * 3}))


def test_the_series_detector_takes_feature_names_of_several_types():
    """A point keyed by a string and an integer ({"a": 1.0, 0: 2.0}) raised a bare TypeError
    from sorting its names; the other adapters take it."""
    detector = SeriesDetector(seed=0)
    rng = np.random.default_rng(0)
    for i in range(300):
        detector.learn_one({"a": float(rng.normal()), 0: 2.0 + float(rng.normal())})
    assert 0.0 <= detector.score_one({"a": 0.0, 0: 2.0}) < 0.9
    assert detector.score_one({"a": 0.0, 0: 200.0}) > 0.99


@pytest.mark.parametrize("method", ["learn_many", "predict_many"])
def test_frame_methods_given_an_array_say_they_take_a_data_frame(method):
    """An array raised AttributeError ("'numpy.ndarray' object has no attribute 'columns'")."""
    model = OnlineGaussianMixture()
    with pytest.raises(TypeError, match=f"{method} takes a data frame whose columns name"):
        getattr(model, method)(np.zeros((3, 1)))


def test_one_wild_first_reading_does_not_set_the_series_detector_s_units():
    """A sentinel among the first rows (1e4 or 1e7 in readings of 50 ± 2) made reg_covar a
    share of their variance, 1e3 to 1e9: every later point looked alike and a spike of 15 sd
    scored as an ordinary one.  Capped at 100 times the quartiles' variance, reg_covar is at
    most a tenth of that variance, whatever the sentinel."""
    import math

    from emstream.river_series import SeriesDetector

    rng = np.random.default_rng(5)
    noise = rng.normal(0, 2, 3000)
    for glitch in (None, 1e4, 1e7):
        detector = SeriesDetector(season=50, seed=0)
        for t in range(3000):
            value = 50 + 10 * math.sin(2 * math.pi * t / 50) + noise[t]
            detector.learn_one({"v": glitch if (t == 3 and glitch) else value})
        reg = detector.monitor.model.reg_covar
        quartiles = np.percentile(50 + 10 * np.sin(2 * np.pi * np.arange(100) / 50)
                                  + noise[:100], [25, 75])
        assert reg <= 0.11 * ((quartiles[1] - quartiles[0]) / 1.349) ** 2, (glitch, reg)
        spike = 50 + 10 * math.sin(2 * math.pi * 3000 / 50) + 30
        assert detector.score_one({"v": spike}) > 0.9999, glitch


def test_frames_of_integer_names_missing_a_feature_and_pyarrow_tables_are_read_by_name():
    """A frame lacking a feature was read column by column through narwhals, whose frame[0]
    is the first row: with pandas' default names 0, 1, ..., a square frame was read
    transposed (predict_many gave [0, 1] where predict_one gave [0, 0]), other shapes failed
    inside numpy; a pyarrow table failed as "unhashable" (found by an attack helper)."""
    import pandas as pd
    import pyarrow as pa

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (300, 3)), rng.normal(10, 1, (300, 3))]
    X[:, 1:] = rng.normal(0, 1, (600, 2))
    model = OnlineGaussianMixture(2, seed=0)
    model.learn_many(pd.DataFrame(X[rng.permutation(600)]))  # (names 0, 1, 2)
    square = pd.DataFrame([[10.0, 0.0], [10.0, 0.0]], columns=[0, 1])  # (feature 2 missing)
    assert model.predict_many(square).tolist() == [model.predict_one({0: 10.0, 1: 0.0})] * 2
    means = model._model.means_.copy()
    model.learn_many(square)
    assert np.abs(model._model.means_[:, 1] - means[:, 1]).max() < 0.1
    named = OnlineGaussianMixture(2, seed=0)
    table = pa.table({"a": X[:, 0], "b": X[:, 1]})
    named.learn_many(table)
    expected = OnlineGaussianMixture(2, seed=0)
    expected.learn_many(pd.DataFrame({"a": X[:, 0], "b": X[:, 1]}))
    np.testing.assert_array_equal(named._model.means_, expected._model.means_)
    assert list(named.predict_many(table)) == expected.predict_many(table.to_pandas()).tolist()


def test_the_series_detector_reads_decimal_readings_as_the_floats_they_stand_for():
    """A stream of decimal.Decimal readings fixed no feature: never a model, every score 0, a
    spike included, and not a word (found by an attack helper)."""
    import math
    from decimal import Decimal

    from emstream.river_series import SeriesDetector

    values = [math.sin(2 * math.pi * t / 50) for t in range(1500)] + [0.9]
    scores = {}
    for kind in (float, lambda v: Decimal(repr(v))):
        detector, out = SeriesDetector(seed=0), []
        for v in values:
            out.append(detector.score_one({"v": kind(v)}))
            detector.learn_one({"v": kind(v)})
        scores[kind is float] = out
    assert scores[True] == scores[False] and scores[False][-1] > 0.9999


@pytest.mark.parametrize("make", [lambda: GaussianMixtureDetector(seed=0, warmup_size=100),
                                  lambda: OnlineGaussianMixture(2, seed=0, warmup_size=100)],
                         ids=["detector", "clusterer"])
def test_the_adapters_read_decimal_readings_as_the_floats_they_stand_for(make):
    """The two mixtures refused decimal.Decimal ("not a number"), which the series detector
    takes: json.loads(..., parse_float=Decimal) and database drivers give them."""
    import pandas as pd
    from decimal import Decimal

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, 300), rng.normal(8, 1, 300)][rng.permutation(600)]
    models = {}
    for kind in (float, lambda v: Decimal(repr(v))):
        model = make()
        for v in X[:400]:
            model.learn_one({"v": kind(float(v))})
        model.learn_many(pd.DataFrame({"v": pd.Series([kind(float(v)) for v in X[400:]],
                                                      dtype=object)}))
        models[kind is float] = model
    np.testing.assert_array_equal(models[True]._model.means_, models[False]._model.means_)
    # A signalling NaN is a NaN, refused as one (float() of it raised "cannot convert")
    for refused in (lambda: models[False].learn_one({"v": Decimal("sNaN")}),
                    lambda: make().learn_one({"v": Decimal("sNaN")}),
                    lambda: _predict_or_score(make(), {"v": Decimal("sNaN")})):
        with pytest.raises(ValueError, match="NaN"):
            refused()


def _predict_or_score(model, x):
    return model.predict_one(x) if hasattr(model, "predict_one") else model.score_one(x)


def test_river_s_clustering_metrics_read_the_clusterer_s_centers():
    """river updates internal clustering metrics (Silhouette...) only for a model with
    ``centers``: evaluate.progressive_val_score reported inf, its first value (found by an
    attack helper)."""
    from river import cluster, evaluate, metrics

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [8, 8], [-8, 8]])
    X = centres[rng.integers(0, 3, 3000)] + rng.normal(size=(3000, 2))
    data = [({"x": float(a), "y": float(b)}, None) for a, b in X]
    ours = evaluate.progressive_val_score(data, OnlineGaussianMixture(3, seed=0),
                                          metrics.Silhouette()).get()
    kmeans = evaluate.progressive_val_score(data, cluster.KMeans(n_clusters=3, seed=0),
                                            metrics.Silhouette()).get()
    assert np.isfinite(ours) and ours < 2 * kmeans  # (lower is better)
    model = OnlineGaussianMixture(3, seed=0)
    assert model.centers == {}
