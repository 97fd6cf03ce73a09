"""Errors and warnings raised by emstream."""


class NotFittedError(ValueError, AttributeError):
    """The model has no parameters yet: call ``fit`` or ``partial_fit`` first.

    Subclasses both ``ValueError`` and ``AttributeError``, like scikit-learn's, so code that
    catches either keeps working.
    """


class ConvergenceWarning(UserWarning):
    """Batch EM stopped at ``max_iter`` before the log-likelihood settled within ``tol``."""
