"""river adapters: an online Gaussian-mixture clusterer and anomaly detector.

Both delegate learning to :class:`emstream.GaussianMixture`'s online EM.  Points given to
``learn_one`` are buffered and learned ``batch_size`` at a time (online EM's per-point step
size makes the result nearly independent of that grouping), so per-point calls stay cheap;
predictions use the model as of the last flush.

The online learner is :class:`emstream.GaussianMixture`'s, with the same defaults and guards
(:mod:`emstream.online`): a provisional model from the first flush on, variance floors at the
data's resolution, component births and split-and-merge upkeep (the outlier gate is off by
default here, see ``outlier_gate``).  With them a river pipeline needs no tuning:
``StandardScaler() | GaussianMixtureDetector()`` ranks river's Shuttle anomalies at ROC AUC 0.978 (first 20,000
points, score then learn) and 0.986 (all 49,097), against 0.926 and 0.961 for
``MinMaxScaler() | HalfSpaceTrees(seed=42)`` (``tests/test_real_data.py``).

Features are handled by name: the feature set is fixed, in sorted order, by the first point
learned (a point refused for a bad value fixes nothing).  Features that appear later are
ignored; a point or frame missing a feature is scored and labelled on the features it has
(their marginal mixture) and learned with the missing values filled with their expectation
given the others under the mixture (before the first model, the mean of the points learned
so far), and a point or frame with none of them is not learned (all filled in, it would draw
the model onto its own mean).  Before the first flush, ``predict_one``
answers 0, ``predict_proba_one`` a uniform assignment, and ``score_one`` the surprise under
independent Gaussians fitted to the points learned so far (0 before any).
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers

import numpy as np
from river import base

from . import em
from .gaussian import expected_rows
from .mixture import GaussianMixture
from .series import REG_COVAR_SHARE, units_reg_covar
from .validation import MAX_ABS_VALUE, check_array, is_number

logger = logging.getLogger("emstream")

_LARGEST = float(np.finfo(float).max)
# Sets of present features whose marginal (and regressions) are kept (see _given).
_GIVEN_KEPT = 64
_TINY = float(np.finfo(float).tiny)

__all__ = ["OnlineGaussianMixture", "GaussianMixtureDetector"]

# Above this many features the one-point path uses numpy instead of Python arithmetic.
_PYTHON_MAX_FEATURES = 4


def _arrow_key(index):
    """A frame's column names as pyarrow data if pyarrow holds them already, else None.

    That is pandas' default string columns when pyarrow is installed; python-backed strings,
    objects and MultiIndex columns (whose ``.array`` raises) are compared as lists instead.
    """
    dtype = getattr(index, "dtype", None)
    if getattr(dtype, "storage", None) != "pyarrow" and not hasattr(dtype, "pyarrow_dtype"):
        return None
    try:
        return index.array.__arrow_array__()
    except Exception:  # any other layout: the list comparison is always right
        return None


def _feature_order(names) -> tuple:
    """Feature names in a fixed order: sorted, by type first if they are of several types
    ('a' and 1, which do not compare)."""
    names = list(names)  # (a generator would be spent by the first sort)
    try:
        return tuple(sorted(names))
    except TypeError:
        return tuple(sorted(names, key=lambda name: (type(name).__name__, str(name))))


def _real_values(data: np.ndarray, columns) -> np.ndarray:
    """A frame's values (n, D) as floats, refused as ``learn_one`` refuses them: a complex,
    time or text value is not a number (``to_numpy(dtype=float)`` dropped imaginary parts
    with a warning, learned times as epoch counts and text such as "1.5" as numbers).
    TypeError: a frame this cannot read (the caller reads it column by column)."""
    kind = data.dtype.kind
    if kind in "fiub":
        return data.astype(float, copy=False)
    if kind == "O":
        for j, name in enumerate(list(columns)):
            for v in data[:, j]:
                if not is_number(v):
                    raise ValueError(f"feature {name!r} is {v!r}: not a number")
        try:
            return data.astype(float)
        except (OverflowError, ValueError):  # an integer beyond float's range: infinite, as
            # learn_one has it (and a Decimal's signalling NaN a NaN)
            return np.array([[_as_float(v) for v in row] for row in data], dtype=float)
    if kind in "cmM":
        what = {"c": "complex numbers", "m": "time spans", "M": "times"}[kind]
        raise ValueError(f"the frame holds {what} (dtype {data.dtype}): not real numbers")
    raise TypeError(kind)


def _as_float(v) -> float:
    """A number as a float: beyond float's range infinite, a Decimal's signalling NaN a NaN."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf
    except ValueError:  # (Decimal("sNaN"): "cannot convert signaling NaN to float")
        return math.nan


class _NothingKnown(Exception):
    """A point or frame to learn has none of the model's features: it is not learned.
    (Learned as the fill, the mixture's own mean, such points drew the model onto a place
    with no data: renamed keys made the gap between two clusters the most normal point.)"""


class _OnlineMixture:
    """Parameters, buffering, feature mapping and one-point scoring shared by both adapters."""

    def __init__(self, n_components: int = 3, covariance_type: str = "full",
                 reg_covar: float | str = "auto", step_decay: float = 0.8, step_floor: float | None = None,
                 warmup_size: int = 1000, batch_size: int = 256, seed: int | None = None,
                 outlier_gate: float | str | None = None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.step_decay = step_decay
        self.step_floor = step_floor
        self.warmup_size = warmup_size
        # (checked here, not at the first flush: None or "a" failed there with a TypeError,
        # and 0, -5 or 2.5 were taken)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.seed = seed
        self.outlier_gate = outlier_gate
        self._reset()
        # (checked here too, not at the first flush: "bogus" or a warm-up shorter than the
        # components raised there, then at every learn_one, while the buffer grew)
        check_model_params(self._model)

    @property
    def model(self) -> GaussianMixture:
        """The underlying :class:`emstream.GaussianMixture`."""
        return self._model

    def learn_one(self, x: dict) -> None:
        self._learn(x)

    def learn_many(self, X) -> None:
        """Learn a data frame (pandas or any narwhals-compatible frame) as one mini-batch."""
        self._learn_frame(X)

    def _reset(self) -> None:
        # "auto": a share of the first rows' variance, once they vary (scikit-learn's absolute
        # 1e-6 until then): an absolute 1e-6 swamped readings in small units, 1e-6 of
        # them and less scored all alike (found by an attack helper).
        self._units_pending = isinstance(self.reg_covar, str) and self.reg_covar == "auto"
        self._flat_row = None  # the rows of a flat start that set the units last
        self._model = GaussianMixture(
            self.n_components, covariance_type=self.covariance_type,
            reg_covar=1e-6 if self._units_pending else self.reg_covar,
            step_decay=self.step_decay, step_floor=self.step_floor,
            warmup_size=self.warmup_size, random_state=self.seed, outlier_gate=self.outlier_gate)
        self._features = None
        # The last frame's columns (a list, and as pyarrow data if they are), their order.
        self._frame_columns = self._frame_key = self._frame_order = None
        self._buffer = []
        self._partial = []  # (index in the buffer, features present) of rows missing some
        self._scorer = None
        self._fill = None
        self._given_cache = {}  # per set of features a point has: see _given
        self._stale = False  # the model changed since the scorer was prepared
        # Until the warm-up ends: running per-feature mean and scatter (Welford) of the points
        # learned, so that score_one can rank points by a plain Gaussian meanwhile.
        self._early = [0, [], []]
        # Points not learned for holding none of the features (renamed keys): counted, and
        # said at the 1st, 10th, 100th... (they were dropped without a trace).
        self.n_not_learned = 0

    def _not_learned(self, n: int, what: str) -> None:
        before, self.n_not_learned = self.n_not_learned, self.n_not_learned + n
        if len(str(self.n_not_learned)) > len(str(before)) or before == 0:
            logger.warning("%s: %d point(s) not learned so far: they hold none of the features "
                           "%s (%s)", type(self).__name__, self.n_not_learned,
                           list(self._features)[:10], what)

    # -------------------------------------------------------------- features
    def _row(self, x: dict, learning: bool = False, present: list | None = None) -> list:
        """The point's values in feature order (a missing one filled in), as floats;
        ``present``, if given, receives the indices of the features the point has when it
        lacks some (it stays empty for a whole point).

        A value that is not a number raises ValueError; so does one that is NaN, infinite or
        beyond ±1e100 (as emstreamd's parser refuses it) when it would be learned, before
        anything is kept (a bad point in the buffer made every later learn_one fail).  To be
        scored, a value beyond that range counts as at its edge: as far as any point can be.
        """
        try:
            row = [x[name] for name in self._features]
        except KeyError:
            if learning and not any(name in x for name in self._features):
                raise _NothingKnown from None
            self._refresh()
            fill = self._fill_values()
            row = [x[name] if name in x else fill[i] for i, name in enumerate(self._features)]
            if present is not None:
                present.extend(i for i, name in enumerate(self._features) if name in x)
        for v in row:  # (the usual case, floats in range, in one cheap pass)
            if type(v) is not float or not -MAX_ABS_VALUE <= v <= MAX_ABS_VALUE:
                break
        else:
            return row
        for i, v in enumerate(row):
            given = v
            if type(v) is not float:
                if not is_number(v):
                    raise ValueError(f"feature {self._features[i]!r} is {v!r}: not a number")
                # (an integer beyond float's range is beyond ±1e100 too)
                v = row[i] = _as_float(v)
            if not -MAX_ABS_VALUE <= v <= MAX_ABS_VALUE:
                if learning or v != v:
                    shown = repr(given) if len(repr(given)) <= 40 else repr(given)[:37] + "..."
                    raise ValueError(f"feature {self._features[i]!r} is {shown}: NaN, infinite "
                                     "or beyond ±1e100"
                                     + (" (the point is not learned)" if learning else ""))
                row[i] = MAX_ABS_VALUE if v > 0 else -MAX_ABS_VALUE
        return row

    # -------------------------------------------------------------- learning
    def _learn(self, x: dict) -> None:
        if not x:
            return  # nothing to learn
        fresh = self._features is None
        if fresh:
            self._features = _feature_order(x)
        present = []
        try:
            row = self._row(x, learning=True, present=present)
        except _NothingKnown:
            self._not_learned(1, f"the last had {_shown_keys(x)}")
            return
        except ValueError:
            if fresh:  # a refused first point does not choose the features
                self._features = None
            raise
        if present and self._model._is_fitted():
            # (filled at the flush, all such rows at once: the model is the same until then)
            self._partial.append((len(self._buffer), tuple(present)))
        self._buffer.append(row)
        if not self._model._is_fitted():  # (the fill comes from the mixture after)
            self._track_early(row)
        if len(self._buffer) >= self.batch_size:
            self._flush()

    def _fill_values(self) -> list:
        """What a missing feature is filled with: the mixture's mean, and before the first
        model the mean of the points learned so far (zeros filled every point learned before
        it: a phantom component at 0 of a feature near 1000, and a reading of 0 then scored as
        ordinary)."""
        if self._fill is not None:
            return self._fill
        count, mean, _ = self._early
        return list(mean) if count else [0.0] * len(self._features)

    def _given(self, present: tuple, regression: bool = False) -> list:
        """For points holding only the features ``present`` (indices): ``[the mixture of their
        marginal, each component's regression of the missing features on them (K, m, o)]``,
        the last computed only when asked for (a scorer needs none of it); kept until the
        model changes, for at most :data:`_GIVEN_KEPT` sets of features (points each missing
        others grew it without bound: 376 MB for 1,500 points of 60 features)."""
        cached = self._given_cache.get(present)
        params = self._model._params
        if cached is None:
            if len(self._given_cache) >= _GIVEN_KEPT:
                self._given_cache.clear()
            cached = self._given_cache[present] = [params.marginal(list(present)), None]
        if regression and cached[1] is None:
            cached[1] = params.regression(present)
        return cached

    def _impute(self, rows: np.ndarray, present: tuple) -> np.ndarray:
        """Rows (n, D) whose features other than ``present`` are filled with their expectation
        under the mixture given the present ones (:func:`emstream.gaussian.expected_rows`),
        within the bound a row is learned in.  (Filled with the mixture's mean, points missing
        a feature were learned in the gap between its clusters: 10% of them made a component
        there; 9e99 given, 1.8e100 expected of a feature twice it was refused, and with it
        every later flush.)"""
        marginal, regression = self._given(present, regression=True)
        filled = expected_rows(rows, present, self._model._params, marginal, regression)
        return np.clip(filled, -MAX_ABS_VALUE, MAX_ABS_VALUE)

    def _track_early_rows(self, data: np.ndarray) -> None:
        """:meth:`_track_early` for a frame's rows at once (Chan's merge of two summaries)."""
        if not data.shape[0]:
            return
        count, mean, scatter = self._early
        n = data.shape[0]
        batch_mean = data.mean(axis=0)
        batch_scatter = ((data - batch_mean) ** 2).sum(axis=0)
        if not count:
            mean[:], scatter[:] = batch_mean.tolist(), batch_scatter.tolist()
        else:
            total = count + n
            delta = batch_mean - np.asarray(mean)
            mean[:] = (np.asarray(mean) + delta * (n / total)).tolist()
            scatter[:] = (np.asarray(scatter) + batch_scatter
                          + delta * delta * (count * n / total)).tolist()
        self._early[0] = count + n

    def _track_early(self, row: list) -> None:
        count, mean, scatter = self._early
        if not mean:
            mean[:] = [0.0] * len(row)
            scatter[:] = [0.0] * len(row)
        count += 1
        for i, v in enumerate(row):
            delta = v - mean[i]
            mean[i] += delta / count
            scatter[i] += delta * (v - mean[i])
        self._early[0] = count

    def _early_surprise(self, x: dict) -> float:
        """-log p(x) under independent Gaussians fitted to the points learned so far."""
        count, mean, scatter = self._early
        if count < 2:
            return 0.0
        total = 0.0
        for v, m, s in zip(self._row(x), mean, scatter):
            # (a constant feature with reg_covar 0: the smallest variance there is)
            variance = max(s / count + self._model.reg_covar, _TINY)
            total += 0.5 * ((v - m) * (v - m) / variance + math.log(2 * math.pi * variance))
        return min(total, _LARGEST)

    def _take_units(self, data: np.ndarray, check: bool = False) -> None:
        """With ``reg_covar="auto"``: set the model's from the rows ``data`` (n, D) about to
        be learned, until rows that vary have set it (:func:`emstream.series.units_reg_covar`);
        ``check``: the rows are checked first (a frame refused sets no units)."""
        if not (self._units_pending and data.shape[0]):
            return
        first = data[0]
        if self._flat_row is not None and np.array_equal(first, self._flat_row) \
                and (data == first).all():
            return  # the same flat rows again: the same units (a flat stream paid for the
            # check and the grid's search at every frame, +50% on 100-row frames)
        if check:
            check_array(data)
        reg_covar, settled = units_reg_covar(data, REG_COVAR_SHARE)
        if reg_covar is not None:
            self._model.set_params(reg_covar=reg_covar)
        self._units_pending = not settled
        # (only rows that set the units: a single flat row sets none, and skipping the same
        # value's later frames left reg_covar at 1e-6 for good)
        self._flat_row = first.copy() if reg_covar is not None and not settled \
            and (data == first).all() else None

    def _flush(self) -> None:
        if not self._buffer:
            return
        data = np.array(self._buffer, dtype=float)
        if self._partial:  # rows missing features: their expectation given the others
            groups = {}
            for index, present in self._partial:
                groups.setdefault(present, []).append(index)
            for present, rows in groups.items():
                data[rows] = self._impute(data[rows], present)
        self._take_units(data)
        self._model.partial_fit(data)
        self._buffer, self._partial = [], []
        self._stale = True

    def _frame_rows(self, X, learning: bool = False) -> np.ndarray:
        """A data frame's rows in feature order, missing features filled in (to learn, one
        with none of the features raises :class:`_NothingKnown`)."""
        index = X.columns
        key = _arrow_key(index)
        if self._same_columns(index, key):  # a stream's frames usually share their columns
            order = self._frame_order
        else:
            columns = _distinct_columns(index)
            if self._features is None:
                self._features = _feature_order(columns)
            order = None
            if all(name in columns for name in self._features):
                order = [columns.index(name) for name in self._features]
                if order == list(range(len(columns))):
                    order = ()  # already in feature order
            self._frame_columns, self._frame_key, self._frame_order = columns, key, order
        if order is not None and hasattr(X, "to_numpy"):
            try:  # pandas: the whole frame at once, then columns by position (much cheaper
                # than selecting columns by name in pandas); only the features' values are
                # checked (a text column beside them is ignored, as learn_one ignores it)
                data = np.asarray(X.to_numpy())
                if order == ():
                    return _real_values(data, index)
                return _real_values(data[:, order], [self._frame_columns[i] for i in order])
            except TypeError:
                pass
        import narwhals as nw

        frame = nw.from_native(X, eager_only=True)
        if learning and not any(name in frame.columns for name in self._features):
            raise _NothingKnown
        data = np.empty((len(frame), len(self._features)))
        self._refresh()
        fill = self._fill_values()
        for i, name in enumerate(self._features):
            if name not in frame.columns:
                data[:, i] = fill[i]
                continue
            data[:, i] = _column_values(frame, name)
        present = tuple(i for i, name in enumerate(self._features) if name in frame.columns)
        if learning and len(present) < len(self._features) and self._model._is_fitted() \
                and (np.abs(data[:, present]) <= MAX_ABS_VALUE).all():  # (else refused)
            data = self._impute(data, present)
        return data

    def _same_columns(self, index, key) -> bool:
        """Whether a frame's columns are the last frame's, in the same order."""
        last = self._frame_key
        if key is not None and last is not None and type(key) is type(last):
            return key.equals(last)  # in C, 6x cheaper than listing pyarrow-backed names
        return self._frame_columns is not None and list(index) == self._frame_columns

    def _learn_frame(self, X) -> None:
        X = _check_frame(X, "learn_many")
        if len(X) == 0 or len(X.columns) == 0:
            # Nothing to learn, as from an empty dict (an empty frame fixed the features to
            # none, and every later flush failed).
            return
        fresh = self._features is None
        try:
            data = self._frame_rows(X, learning=True)
            self._flush()
            with _naming_features(data, self._features, learning=True):
                self._take_units(data, check=True)  # (a NaN, refused, sets no units)
                self._model.partial_fit(data)
            if not self._model._is_fitted():  # (after: rows it refused are not tracked)
                self._track_early_rows(data)
        except _NothingKnown:
            self._not_learned(len(X), f"the last frame had {_shown_keys(X.columns)}")
            return
        except (ValueError, TypeError):
            if fresh:  # a refused first frame (a text column, a NaN) chooses no features
                self._features = None
                self._frame_columns = self._frame_key = self._frame_order = None
            raise
        self._stale = True

    # -------------------------------------------------------------- scoring one point
    def _refresh(self) -> None:
        """Bring the scorer and the missing-feature fill up to date with the model, lazily."""
        if self._stale:
            self._stale = False
            if self._model._is_fitted():
                self._prepare_scorer()

    def _prepare_scorer(self) -> None:
        """Per-model constants for scoring single points without numpy's call overhead."""
        params = self._model._params
        self._given_cache = {}
        k, d = params.means.shape
        pc = params.precisions_cholesky
        kind = params.covariance_type
        if kind == "full":
            factors = pc
        elif kind == "tied":
            factors = np.broadcast_to(pc, (k, d, d))
        elif kind == "diag":
            factors = np.array([np.diag(p) for p in pc])
        else:
            factors = np.array([p * np.eye(d) for p in pc])
        self._fill = (params.weights @ params.means).tolist()
        if d > _PYTHON_MAX_FEATURES:
            self._scorer = ("numpy", params.means, np.ascontiguousarray(factors),
                            params.log_normaliser)
            return
        if d == 1:
            # (mean, sqrt(precision / 2), log normaliser): one line of arithmetic per component.
            scale = factors[:, 0, 0] * math.sqrt(0.5)
            self._scorer = ("1d", list(zip(params.means[:, 0].tolist(), scale.tolist(),
                                           params.log_normaliser.tolist())), None, None)
            return
        # Column j of Pᵀ(x - μ) only involves rows i <= j of the upper-triangular P.
        columns = [[[(i, float(factors[c, i, j])) for i in range(d) if factors[c, i, j] != 0.0]
                    for j in range(d)] for c in range(k)]
        self._scorer = ("python", params.means.tolist(), columns,
                        params.log_normaliser.tolist())

    def _log_joint(self, x: dict):
        """``log π_k p(x | k)`` for every component, or None before the warm-up ends."""
        self._refresh()
        if self._scorer is None:
            self._check_point(x)
            return None
        present = []
        row = self._row(x, present=present)
        if present:
            # Scored on the features it has (their marginal mixture): filled with the
            # mixture's mean, which lies between its clusters, a typical point missing one
            # feature scored as a gross outlier (found by an attack helper).
            given = np.array([[row[i] for i in present]])
            return em.log_joint_chunk(given, self._given(tuple(present))[0])[:, 0].tolist()
        kind, means, factors, const = self._scorer
        if kind == "1d":
            v = row[0]
            return [c - ((v - m) * h) * ((v - m) * h) for m, h, c in means]
        if kind == "numpy":
            y = np.einsum("kij,ki->kj", factors, np.asarray(row) - means)
            return (const - 0.5 * np.einsum("kj,kj->k", y, y)).tolist()
        out = []
        for mean, columns, c in zip(means, factors, const):
            diff = [v - m for v, m in zip(row, mean)]
            total = 0.0
            for column in columns:
                y = 0.0
                for i, p in column:
                    y += p * diff[i]
                total += y * y
            out.append(c - 0.5 * total)
        return out

    def _check_point(self, x: dict) -> None:
        """A point scored or labelled before there is a model is refused as it would be
        after (text or NaN got 0 before the first model, and a ValueError after it)."""
        if self._features is not None:
            self._row(x)
            return
        for name, v in x.items():
            if not is_number(v):
                raise ValueError(f"feature {name!r} is {v!r}: not a number")
            if math.isnan(_as_float(v)):
                raise ValueError(f"feature {name!r} is NaN")

    def _check_frame_values(self, X) -> None:
        """:meth:`_check_point` for a frame's rows."""
        # (before the first frame: a frame with a name twice was taken here, refused later)
        names = self._features if self._features is not None else _distinct_columns(X.columns)
        rows = self._frame_rows(X) if self._features is not None else _frame_values(X, names)
        with _naming_features(rows, names, learning=False):
            check_array(np.clip(rows, -MAX_ABS_VALUE, MAX_ABS_VALUE))

    def _log_density(self, x: dict) -> float | None:
        joint = self._log_joint(x)
        if joint is None:
            return None
        top = max(joint)
        if top == -math.inf:
            return -math.inf
        return top + math.log(sum(math.exp(v - top) for v in joint))


@contextlib.contextmanager
def _naming_features(data: np.ndarray, names, learning: bool):
    """Re-raise the estimator's ValueError about a NaN (to learn: also an infinity or a value
    beyond the model's limit, which scoring takes as at that edge) in ``data`` (n, D) naming
    the first such feature of ``names`` (its message gives a row and no column: a frame's user
    looks for a name)."""
    try:
        yield
    except ValueError:
        bad = ~(np.abs(data) <= MAX_ABS_VALUE) if learning else np.isnan(data)
        if not bad.any():
            raise
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, column])
        what = f"NaN, infinite or beyond ±{MAX_ABS_VALUE:g}" if learning else "NaN"
        raise ValueError(f"feature {names[column]!r} is {what} in {rows.size} row(s), first "
                         f"at row {rows[0]}; drop or impute those rows first"
                         + (" (the frame is not learned)" if learning else "")) from None


def _shown_keys(keys) -> str:
    keys = list(keys)
    return repr(keys[:10])[:-1] + (", ...]" if len(keys) > 10 else "]")


def _frame_values(X, names) -> np.ndarray:
    """All of a frame's values (n, D) as floats, refused as :func:`_real_values` refuses
    them; column by column where the frame has no common dtype (pyarrow's numbers beside
    times: numpy's DTypePromotionError, a traceback, where learning said what was wrong)."""
    try:
        return _real_values(np.asarray(X.to_numpy()), names)
    except TypeError:
        pass
    import narwhals as nw

    frame = nw.from_native(X, eager_only=True)
    data = np.empty((len(frame), len(names)))
    for i, name in enumerate(names):
        data[:, i] = _column_values(frame, name)
    return data


def _column_values(frame, name) -> np.ndarray:
    """A narwhals frame's column ``name`` as floats (n,), checked as the whole-frame path
    checks (assigned into floats, times became epoch counts, text "-4.0" a number and complex
    values lost their imaginary part).  (By name: frame[name] takes an integer as a row's
    position, and a square frame of pandas' default names 0, 1, ... was read transposed.)"""
    values = np.asarray(frame.get_column(name).to_numpy()).reshape(-1, 1)
    try:
        return _real_values(values, [name])[:, 0]
    except TypeError:
        raise ValueError(f"feature {name!r} holds {values.dtype} values: not real "
                         "numbers") from None


def _distinct_columns(index) -> list:
    """A frame's column names as a list, or ValueError if a name appears more than once."""
    columns = list(index)
    if len(set(columns)) != len(columns):
        twice = sorted({repr(c) for c in columns if columns.count(c) > 1})
        raise ValueError(f"frame columns {', '.join(twice)} appear more than once: each "
                         "feature needs a name of its own")
    return columns


def _check_frame(X, method: str):
    """``X`` as a data frame whose ``columns`` are the features' names (an array had no
    ``columns``: an AttributeError); a pyarrow table or record batch, whose ``columns`` are
    its arrays, through narwhals."""
    if hasattr(X, "column_names") and hasattr(X, "num_rows"):  # (pyarrow: "unhashable")
        import narwhals as nw

        return nw.from_native(X, eager_only=True)
    if isinstance(X, np.ndarray) or not hasattr(X, "columns"):
        raise TypeError(f"{method} takes a data frame whose columns name the features (pandas, "
                        f"or any narwhals-compatible frame), got {type(X).__name__}: wrap it, "
                        "e.g. pd.DataFrame(X, columns=['x0', 'x1'])")
    return X


def check_model_params(model: GaussianMixture) -> None:
    """An adapter's model's hyper-parameters, checked when the adapter is made (not at its
    first flush, after rows were buffered), named as the adapter names them (``seed``)."""
    try:
        model._validate_params()
    except ValueError as exc:
        raise ValueError(str(exc).replace("random_state", "seed")) from None
    if model.warmup_size < model.n_components:
        raise ValueError(f"warmup_size ({model.warmup_size}) must be at least n_components "
                         f"({model.n_components})")


class OnlineGaussianMixture(_OnlineMixture, base.Clusterer):
    """Online Gaussian mixture clustering (stepwise EM, Cappé & Moulines 2009).

    Parameters
    ----------
    n_components
        Number of mixture components (clusters).
    covariance_type
        "full", "tied", "diag" or "spherical".
    reg_covar
        Added to every variance: a number, or "auto" (the default): a thousandth of the
        variance of the first points learned (of the feature that varies least), so that the
        same readings in any units give the same scores (a fixed 1e-6 swamped readings of
        1e-6 and less).
    step_decay
        Exponent α of the per-point step size ``t^-α``, in (0.5, 1].
    step_floor
        Lower bound on the step size (forgetting); None for a stationary stream.
    warmup_size
        Points buffered and refitted while the model warms up (a provisional model scores and
        learns from the first flush on; see :class:`emstream.GaussianMixture`).
    batch_size
        Points learned together by ``learn_one`` (predictions lag by at most this many).
    seed
        Random seed for the initialisation.
    outlier_gate
        Squared Mahalanobis distance beyond which a point is not learned unless such points
        recur (``"auto"``: 64.4 in 1-D; see :class:`emstream.GaussianMixture`).  None (the
        default) learns every point, as river's learners do: the scaler in front of a river
        model moves the scale under it while it settles, and far points are then the scaler's
        doing (on Shuttle, with ``StandardScaler``, "auto" lost one seed of ten: ROC AUC 0.91).

    Examples
    --------
    >>> from river import datasets, preprocessing
    >>> from emstream.river import OnlineGaussianMixture
    >>> model = preprocessing.StandardScaler() | OnlineGaussianMixture(
    ...     n_components=3, warmup_size=200, seed=42)
    >>> for x, _ in datasets.Bananas().take(1000):
    ...     model.learn_one(x)
    >>> model.predict_one({"1": 0.5, "2": -0.2}) in (0, 1, 2)
    True
    >>> sorted(model.predict_proba_one({"1": 0.5, "2": -0.2}))
    [0, 1, 2]
    """

    @property
    def centers(self) -> dict:
        """Each component's mean by feature name, ``{k: {feature: mean}}``, as river's
        ``cluster.KMeans`` has them (empty before the first model): river's internal
        clustering metrics (Silhouette...) read them, and reported their first value, inf,
        without them."""
        self._refresh()
        if not self._model._is_fitted():
            return {}
        return {k: dict(zip(self._features, mean.tolist()))
                for k, mean in enumerate(self._model.means_)}

    @classmethod
    def _unit_test_params(cls):
        yield {"n_components": 2, "warmup_size": 20, "batch_size": 5, "seed": 1}
        yield {"n_components": 3, "covariance_type": "diag", "warmup_size": 30, "seed": 2}

    def predict_proba_one(self, x: dict) -> dict:
        joint = self._log_joint(x)
        if joint is None:
            return {k: 1.0 / self.n_components for k in range(self.n_components)}
        top = max(joint)
        if top == -math.inf:
            return {k: 1.0 / len(joint) for k in range(len(joint))}
        weights = [math.exp(v - top) for v in joint]
        total = sum(weights)
        return {k: w / total for k, w in enumerate(weights)}

    def predict_one(self, x: dict) -> int:
        joint = self._log_joint(x)
        if joint is None:
            return 0
        return joint.index(max(joint))

    def predict_many(self, X):
        """Labels of every row of a data frame (a pandas Series for pandas input)."""
        X = _check_frame(X, "predict_many")
        if not self._model._is_fitted() or len(X) == 0:  # (no rows: no labels, fitted or not)
            if len(X):
                self._check_frame_values(X)
            labels = np.zeros(len(X), dtype=int)
        else:
            rows = self._frame_rows(X)
            # As predict_one: a value beyond ±1e100 counts as at that edge (NaN still raises),
            # and rows missing features are labelled on the features they have.
            columns = set(X.columns)
            present = [i for i, name in enumerate(self._features) if name in columns]
            with _naming_features(rows, self._features, learning=False):
                rows = np.clip(rows, -MAX_ABS_VALUE, MAX_ABS_VALUE)
                if 0 < len(present) < len(self._features):
                    check_array(rows)
                    joint = em.log_joint_chunk(rows[:, present], self._given(tuple(present))[0])
                    labels = np.argmax(joint, axis=0)
                else:
                    labels = self._model.predict(rows)
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            return labels
        return pd.Series(labels, index=X.index) if isinstance(X, pd.DataFrame) else labels


class GaussianMixtureDetector(_OnlineMixture, base.AnomalyDetector):
    """Anomaly scores from an online Gaussian mixture: the surprise ``-log p(x)``.

    Higher is more anomalous.  Parameters are those of :class:`OnlineGaussianMixture`.

    Parameters
    ----------
    n_components
    covariance_type
    reg_covar
    step_decay
    step_floor
    warmup_size
    batch_size
    seed
    outlier_gate

    Examples
    --------
    >>> from river import anomaly, datasets
    >>> from emstream.river import GaussianMixtureDetector
    >>> detector = anomaly.QuantileFilter(
    ...     GaussianMixtureDetector(n_components=3, warmup_size=200, seed=0), q=0.99)
    >>> for x, _ in datasets.Bananas().take(500):
    ...     detector.learn_one(x)
    >>> detector.score_one({"1": 0.1, "2": 0.2}) < detector.score_one({"1": 40.0, "2": 40.0})
    True
    """


    @classmethod
    def _unit_test_params(cls):
        yield {"n_components": 2, "warmup_size": 20, "batch_size": 5, "seed": 1}

    def score_one(self, x: dict) -> float:
        log_density = self._log_density(x)
        if log_density is None:
            return self._early_surprise(x) if self._features is not None else 0.0
        # A point no component can explain (overflow) gets the largest finite score.
        return min(-log_density, _LARGEST)
