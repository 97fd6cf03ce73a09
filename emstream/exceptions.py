"""Errors and warnings raised by emstream.

emstream never imports scikit-learn, yet code written for scikit-learn catches
``sklearn.exceptions.NotFittedError`` and filters ``sklearn.exceptions.ConvergenceWarning``.
:func:`sklearn_compatible` bridges the two: once scikit-learn's exceptions module is loaded,
what emstream raises or warns is an instance of both libraries' classes.
"""

from __future__ import annotations

import sys


class NotFittedError(ValueError, AttributeError):
    """The model has no parameters yet: call ``fit`` or ``partial_fit`` first.

    Subclasses both ``ValueError`` and ``AttributeError``, like scikit-learn's, so code that
    catches either keeps working; raised through :func:`sklearn_compatible`, it is also
    scikit-learn's ``NotFittedError`` whenever scikit-learn is loaded.
    """


class InitialValuesError(ValueError):
    """``weights_init``/``means_init``/``precisions_init`` do not fit the data (their width
    is not the rows'), found when ``partial_fit`` first sees rows."""


class ConvergenceWarning(UserWarning):
    """Batch EM stopped at ``max_iter`` before the log-likelihood settled within ``tol``.

    Warned through :func:`sklearn_compatible`, it is also scikit-learn's ``ConvergenceWarning``
    whenever scikit-learn is loaded, so its filters apply.
    """


_BRIDGED: dict[tuple[type, type], type] = {}


def sklearn_compatible(cls: type) -> type:
    """``cls``, or, once ``sklearn.exceptions`` is loaded, a subclass of ``cls`` and of
    scikit-learn's class of the same name.

    Only a module already imported is looked at (scikit-learn is never imported here): code
    that names scikit-learn's class in an ``except`` clause or a warnings filter has imported
    it, so whenever it matters the bridge is there.

    Parameters
    ----------
    cls : type
        :class:`NotFittedError` or :class:`ConvergenceWarning`.

    Returns
    -------
    type
        Raise or warn an instance of it: ``raise sklearn_compatible(NotFittedError)(msg)``,
        ``warnings.warn(sklearn_compatible(ConvergenceWarning)(msg))`` (an instance, so that
        filters see the bridged category).

    Examples
    --------
    >>> import sklearn.exceptions
    >>> bridged = sklearn_compatible(NotFittedError)
    >>> issubclass(bridged, (NotFittedError, sklearn.exceptions.NotFittedError))
    True
    >>> issubclass(sklearn_compatible(ConvergenceWarning), sklearn.exceptions.ConvergenceWarning)
    True
    """
    theirs = getattr(sys.modules.get("sklearn.exceptions"), cls.__name__, None)
    if not isinstance(theirs, type) or issubclass(cls, theirs):
        return cls
    bridged = _BRIDGED.get((cls, theirs))
    if bridged is None:
        bridged = type(cls.__name__, (cls, theirs), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__, "__reduce__": _reduce_bridged, "_emstream_class": cls})
        _BRIDGED[(cls, theirs)] = bridged
    return bridged


def _reduce_bridged(self):
    # Pickled (to or from a dask worker, say) by its emstream class, and bridged again on
    # arrival if scikit-learn is loaded there.
    return _rebuild, (self._emstream_class, self.args)


def _rebuild(cls: type, args: tuple):
    return sklearn_compatible(cls)(*args)
