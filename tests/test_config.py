"""config.yaml is complete and valid for the daemon and for GaussianMixture."""

import numpy as np
import pytest
import yaml

from emstream import GaussianMixture
from emstreamd import config as daemon_config

from .conftest import ROOT, mixture_1d


def _shipped():
    with open(ROOT / "config.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_model_section_builds_a_valid_estimator():
    model = _shipped()["model"]
    gm = GaussianMixture(**model)
    assert gm.get_params()["n_components"] == model["n_components"]
    X = mixture_1d(3000, np.random.default_rng(0))
    gm.partial_fit(X[:1500]).partial_fit(X[1500:])  # validates every parameter on the way
    assert gm.n_seen_ == 3000


def test_shipped_file_sets_every_daemon_key():
    shipped = _shipped()
    for section, keys in daemon_config.DEFAULTS.items():
        if section != "model":
            assert set(shipped[section]) == set(keys), section
    assert daemon_config.validate(shipped)["batch"]["max_rows"] == 1000


@pytest.mark.parametrize("override, message", [
    ("batch.max_rows=0", "batch.max_rows must be an integer >= 1"),
    ("output.format=xml", "output.format must be csv or jsonl"),
    ("model.n_components=0", "model: n_components must be an integer >= 1"),
    ("model.n_compnents=3", "model: .*n_compnents"),
    ("batch.max_rowz=3", "unknown key"),
    ("input.columns=[-1]", "input.columns"),
    ("nonsense", "--set wants section.key=value"),
    ("refit.scheduler=ftp://host", "refit.scheduler must be null, a dask scheduler address"),
    ("refit.scheduler=local:0", "refit.scheduler must be"),
    ("drift.detector=cusum", "drift.detector must be page-hinkley, adwin or null"),
    ("drift.block=0", "drift: block must be"),
    ("model.outlier_gate=-1", "model: outlier_gate"),
    ("output.anomaly_quantile=0.001", "output.anomaly_quantile is no longer used"),
    ("output.anomaly_threshold=2", "output.anomaly_threshold must be a score in"),
    ("features.season=0", "features.season must be"),
    ("input.timestamp=[1]", "input.timestamp must be"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(daemon_config.ConfigError, match=message):
        daemon_config.load(str(ROOT / "config.yaml"),
                           [daemon_config.parse_override(override)])
