"""emstream: streaming Gaussian mixtures with one EM core for batch, online and out-of-core fits.

>>> from emstream import GaussianMixture, DriftMonitor, SufficientStats, NotFittedError
"""

from .drift import DriftMonitor
from .exceptions import ConvergenceWarning, NotFittedError
from .mixture import GaussianMixture
from .stats import SufficientStats

__all__ = ["GaussianMixture", "DriftMonitor", "SufficientStats", "NotFittedError",
           "ConvergenceWarning"]
__version__ = "0.1.0"
