"""config.yaml's model section is a valid, safely loaded set of GaussianMixture parameters."""

import numpy as np
import yaml

from emstream import GaussianMixture

from .conftest import ROOT, mixture_1d


def test_model_section_builds_a_valid_estimator():
    with open(ROOT / "config.yaml", encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    gm = GaussianMixture(**config["model"])
    assert gm.get_params()["n_components"] == config["model"]["n_components"]
    X = mixture_1d(3000, np.random.default_rng(0))
    gm.partial_fit(X[:1500]).partial_fit(X[1500:])  # validates every parameter on the way
    assert gm.n_seen_ == 3000
