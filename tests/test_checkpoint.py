"""Checkpoints: bit-exact resume, crash safety, and refusal of damaged or crafted files."""

import json
import os
import pickle
import signal
import time

import numpy as np
import pytest

from emstream import GaussianMixture, checkpoint
from emstream.checkpoint import CheckpointError
from emstream.state import to_dict
from emstream.stats import COVARIANCE_TYPES

from .conftest import mixture_2d

MODEL_ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "n_seen_",
               "n_updates_", "recent_counts_", "lower_bound_")


def assert_same_model(a, b):
    for name in MODEL_ATTRS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # Everything a resume needs, bit for bit: statistics, schedule, window, far rows, upkeep.
    assert to_dict(a)["online"] == to_dict(b)["online"]


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("split", [200, 700, 1600], ids=["warming-up", "just-warm", "online"])
def test_resume_is_bit_exact(tmp_path, kind, split):
    X = mixture_2d(3000, np.random.default_rng(0))
    make = lambda: GaussianMixture(3, covariance_type=kind, warmup_size=500,  # noqa: E731
                                   random_state=np.random.default_rng(7))
    straight = make()
    for start in range(0, len(X), 100):
        straight.partial_fit(X[start:start + 100])
    resumed = make()
    for start in range(0, split, 100):
        resumed.partial_fit(X[start:start + 100])
    path = checkpoint.save(resumed, tmp_path / "ck.json", meta={"offset": split})
    resumed, meta = checkpoint.load(path)
    assert meta == {"offset": split}
    for start in range(split, len(X), 100):
        resumed.partial_fit(X[start:start + 100])
    assert_same_model(resumed, straight)


def test_resume_between_two_provisional_fits_is_bit_exact(tmp_path):
    # Clusters far thinner than the spread, so that the warm-up's prior binds; saved at 400 rows,
    # between the provisional fits at 300 and 450: the prior comes from the rows of the last fit.
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 0.05, (400, 2)) for c in (-20.0, 0.0, 20.0)])
    X = X[rng.permutation(len(X))]
    make = lambda: GaussianMixture(3, warmup_size=500, random_state=7)  # noqa: E731
    batches = [X[start:start + 100] for start in range(0, 400, 100)] + [X[400:420]]
    straight = make()
    for batch in batches:
        straight.partial_fit(batch)
    resumed = make()
    for batch in batches[:-1]:
        resumed.partial_fit(batch)
    resumed, _ = checkpoint.load(checkpoint.save(resumed, tmp_path / "ck.json"))
    resumed.partial_fit(batches[-1])  # an online step of the provisional model, still warming up
    assert_same_model(resumed, straight)


def test_unfitted_and_batch_fitted_models_round_trip(tmp_path):
    empty = checkpoint.load(checkpoint.save(GaussianMixture(4), tmp_path / "a.json")).model
    assert empty.get_params() == GaussianMixture(4).get_params()
    X = mixture_2d(500, np.random.default_rng(1))
    gm = GaussianMixture(3, covariance_type="tied", means_init=[[0, 0], [5, 1], [1, 6]],
                         random_state=np.random.RandomState(3)).fit(X)
    back = checkpoint.load(checkpoint.save(gm, tmp_path / "b.json")).model
    assert_same_model(back, gm)
    np.testing.assert_array_equal(back.means_init, gm.means_init)
    np.testing.assert_array_equal(back.predict(X), gm.predict(X))


def test_directory_keeps_the_newest_and_skips_damaged_ones(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(np.arange(20.0)[:, None])
    for i in range(5):
        checkpoint.save(gm, tmp_path, meta={"i": i}, keep=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-00000003.json", "checkpoint-00000004.json",
                     "checkpoint-00000005.json"]
    newest = tmp_path / "checkpoint-00000005.json"
    newest.write_bytes(newest.read_bytes()[:100])  # torn
    loaded = checkpoint.load(tmp_path)
    assert loaded.meta == {"i": 3}
    assert [p.name for p, _ in loaded.skipped] == ["checkpoint-00000005.json"]
    assert "not valid JSON" in loaded.skipped[0][1]


def test_rotation_deletes_only_checkpoints(tmp_path):
    """Entries named like checkpoints that are not (a directory, someone's notes, an empty
    file) are neither deleted nor counted as kept, and do not make a save fail."""
    gm = GaussianMixture(2, random_state=0).fit(np.arange(20.0)[:, None])
    (tmp_path / "checkpoint-00000000.json").mkdir()
    (tmp_path / "checkpoint-00000001.json").write_text("my notes\n")
    (tmp_path / "checkpoint-00000002.json").write_bytes(b"")
    for i in range(4):
        written = checkpoint.save(gm, tmp_path, meta={"i": i}, keep=2)
        assert written.exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-00000000.json", "checkpoint-00000001.json",
                     "checkpoint-00000002.json", "checkpoint-00000005.json",
                     "checkpoint-00000006.json"]
    assert (tmp_path / "checkpoint-00000001.json").read_text() == "my notes\n"
    assert checkpoint.load(tmp_path).meta == {"i": 3}


def _writer(directory, single_file):
    """Child process: checkpoint in a loop until killed; checkpoint i carries meta i."""
    gm = GaussianMixture(2, random_state=0).fit(np.arange(40.0)[:, None])
    i = int(os.environ.get("EMSTREAM_FIRST", "0"))
    while True:
        i += 1
        meta = {"i": i, "padding": "x" * (1000 * (i % 37))}
        target = directory / "ck.json" if single_file else directory
        checkpoint.save(gm, target, meta=meta, keep=2)


@pytest.mark.parametrize("single_file", [True, False], ids=["file", "directory"])
def test_killed_writer_always_leaves_a_complete_checkpoint(tmp_path, single_file):
    rng = np.random.default_rng(0)
    reference = GaussianMixture(2, random_state=0).fit(np.arange(40.0)[:, None])
    last_seen = 0
    kills = 0
    for _ in range(120):
        pid = os.fork()
        if pid == 0:  # child: write until killed
            try:
                _writer(tmp_path, single_file)
            finally:
                os._exit(0)
        time.sleep(float(rng.uniform(0.0, 0.03)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        try:
            loaded = checkpoint.load(tmp_path / "ck.json" if single_file else tmp_path)
        except CheckpointError as exc:
            assert "no such file" in str(exc) or "no valid checkpoint" in str(exc)
            assert last_seen == 0, f"lost every checkpoint after {kills} kills: {exc}"
            continue
        i = loaded.meta["i"]
        assert loaded.meta == {"i": i, "padding": "x" * (1000 * (i % 37))}
        assert not loaded.skipped, loaded.skipped
        np.testing.assert_array_equal(loaded.model.means_, reference.means_)
        last_seen = i
    assert kills >= 120 and last_seen > 0


def _valid_bytes(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(np.arange(30.0)[:, None])
    return checkpoint.save(gm, tmp_path / "good.json").read_bytes()


def _edited(data: bytes, edit) -> bytes:
    document = json.loads(data)
    edit(document)
    return json.dumps(document).encode()


def _reseal(document):
    """Recompute the checksum after an edit, as a forger would."""
    import hashlib
    document["sha256"] = hashlib.sha256(checkpoint._canonical(document["content"])).hexdigest()


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("make, message", [
    (lambda good: good[: len(good) // 2], "not valid JSON"),
    (lambda good: good.replace(b'"weights"', b'"weighta"', 1), "checksum mismatch"),
    (lambda good: bytes([good[0]]) + bytes([good[1] ^ 0x40]) + good[2:], "not valid JSON"),
    (lambda good: b"", "empty file"),
    (lambda good: b"hello, world\n", "not valid JSON"),
    (lambda good: b'{"format": "something-else"}', "not an emstream checkpoint"),
    (lambda good: _edited(good, lambda d: d.update(version=2)), "newer emstream"),
    (lambda good: pickle.dumps(Boom()), "binary data"),
    (lambda good: b"!!python/object/apply:os.system ['touch pwned']\n", "not valid JSON"),
    (lambda good: b"--- !!python/object/new:os.system [touch pwned]\n", "not valid JSON"),
    (lambda good: good.replace(b'"lower_bound": ', b'"lower_bound": NaN, "x": ', 1),
     "not valid JSON"),
    (lambda good: _edited(good, lambda d: (d["content"]["model"]["online"]["model"].update(
        weights=[0.5, "rm -rf /"]), _reseal(d))), "online.model.weights is not an array"),
    (lambda good: _edited(good, lambda d: (d["content"]["model"]["online"]["model"].update(
        covariances=[[[1.0]], [[-1.0]]]), _reseal(d))), "not positive definite"),
    (lambda good: _edited(good, lambda d: (d["content"]["model"]["online"]["model"].update(
        means=[[1.0, 2.0]]), _reseal(d))),
     r"online.model.means has shape \(1, 2\), expected \(2, 1\)"),
    (lambda good: _edited(good, lambda d: (d["content"]["model"]["online"]["model"].update(
        means=[[12345.678], [0.0]]), _reseal(d))).replace(b"12345.678", b"1e999"),
     "damaged"),
    (lambda good: _edited(good, lambda d: (d["content"]["model"]["params"].update(
        n_components=0), _reseal(d))), "n_components"),
])
def test_damaged_foreign_and_crafted_files_are_refused(tmp_path, make, message):
    bad = tmp_path / "bad.json"
    bad.write_bytes(make(_valid_bytes(tmp_path)))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(CheckpointError, match=message) as info:
            checkpoint.load(bad)
    finally:
        os.chdir(cwd)
    assert str(bad) in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_state_with_infinity_is_refused_even_without_the_envelope():
    from emstream.state import from_dict, to_dict
    state = to_dict(GaussianMixture(2, random_state=0).fit(np.arange(30.0)[:, None]))
    state["online"]["model"]["means"][0][0] = float("inf")
    with pytest.raises(ValueError, match="online.model.means holds NaN or infinity"):
        from_dict(state)


def test_missing_file_and_non_serialisable_meta(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="JSON-serialisable"):
        checkpoint.save(GaussianMixture(1), tmp_path / "x.json", meta={"bad": object()})
    assert not (tmp_path / "x.json").exists()


def test_a_model_of_values_near_the_input_bound_saves_and_loads(tmp_path):
    """Values within ±1e100 are valid input; their second moments reach 1e196 here, and the
    checkpoint of what was learned from them must load again (it was refused as beyond 1e100)."""
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-3e98, 1e98, (300, 2)), rng.normal(3e98, 1e98, (300, 2))]
    gm = GaussianMixture(2, warmup_size=200, random_state=0)
    for start in range(0, 600, 100):
        gm.partial_fit(X[start:start + 100])
    assert np.abs(gm.covariances_).max() > 1e190
    back = checkpoint.load(checkpoint.save(gm, tmp_path / "big.json")).model
    assert_same_model(back, gm)
    assert np.all(np.isfinite(back.score_samples(X)))


def test_a_model_of_more_features_than_rows_saves_and_loads(tmp_path):
    """300 features fitted on 150 rows: covariances conditioned at 1e7, whose precision factors
    recomputed on load differed from the saved ones by 1e-4 of their small entries: what
    ``emstream fit`` had just written could not be read back (found by an audit)."""
    X = np.random.default_rng(0).normal(size=(150, 300)).round(3)
    gm = GaussianMixture(2, random_state=0).fit(X)
    back = checkpoint.load(checkpoint.save(gm, tmp_path / "wide.json")).model
    assert_same_model(back, gm)
    np.testing.assert_array_equal(back.score_samples(X), gm.score_samples(X))


@pytest.mark.parametrize("scale", [1e60, 1e-120])
def test_a_model_with_the_daemons_reg_covar_at_extreme_scales_loads_back(tmp_path, scale):
    """emstreamd's ``reg_covar: auto`` is a share of the first rows' variance: 1e117 for values
    near 1e60, refused on load as beyond 1e100; values near 1e-120 have precision factors near
    1e120, refused likewise.  The daemon saved what it then could not restart from (exit 65)."""
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-3.0, 1.0, (300, 1)), rng.normal(3.0, 1.0, (300, 1))] * scale
    gm = GaussianMixture(2, reg_covar=1e-3 * scale**2, warmup_size=200, random_state=0)
    for start in range(0, 600, 100):
        gm.partial_fit(X[rng.permutation(600)[:100]])
    back = checkpoint.load(checkpoint.save(gm, tmp_path / "m.json")).model
    assert_same_model(back, gm)
    np.testing.assert_array_equal(back.score_samples(X), gm.score_samples(X))


def test_initial_values_a_fit_accepts_save_and_load_and_the_others_are_refused_at_fit():
    """precisions_init of 1e120 (data on a scale of 1e-60) passed fit and dumps, and the
    checkpoint was refused on load as beyond 1e100; means_init of 1e150, where no data lie,
    passed fit too."""
    X = np.random.default_rng(0).normal(size=(400, 1)) * 1e-60
    gm = GaussianMixture(1, precisions_init=np.array([[[1e120]]]), random_state=0).fit(X)
    back = checkpoint.loads(checkpoint.dumps(gm)).model
    assert_same_model(back, gm)
    np.testing.assert_array_equal(back.precisions_init, gm.precisions_init)
    with pytest.raises(ValueError, match="means_init must lie within"):
        GaussianMixture(1, means_init=np.array([[1e150]])).fit(X)


def test_a_model_whose_settings_changed_since_its_fit_is_not_saved_unloadable():
    """set_params(n_components=3) after a fit of 2: dumps wrote what loads refused."""
    X = mixture_2d(600, np.random.default_rng(1))
    for change in ({"n_components": 3}, {"covariance_type": "diag"}):
        gm = GaussianMixture(2, random_state=0).fit(X).set_params(**change)
        with pytest.raises(ValueError, match="saving cannot continue a model fitted with"):
            checkpoint.dumps(gm)
        gm.fit(X)  # (fitted again under the new settings: saved and loaded as any)
        assert_same_model(checkpoint.loads(checkpoint.dumps(gm)).model, gm)


@pytest.mark.parametrize("seed", [2**63, 10**23])
def test_any_seed_a_fit_accepts_saves_and_loads(tmp_path, seed):
    """Seeds from 2**63 up were fitted with and saved, then refused on loading ("must be a
    non-negative 64-bit integer")."""
    X = np.random.default_rng(0).normal(size=(200, 1))
    model = GaussianMixture(2, random_state=seed).fit(X)
    loaded = checkpoint.load(checkpoint.save(model, tmp_path / "m.json")).model
    assert loaded.random_state == seed
    assert_same_model(loaded, model)


@pytest.mark.parametrize("setting", ["step_floor", "step_decay", "step_offset", "reg_covar"])
def test_a_resume_is_bit_exact_with_numpy_float32_settings(setting):
    """A checkpoint stores settings as float64; the live model learned with the float32 value
    itself, and a resumed one differed from it by up to 1e-9."""
    value = {"step_floor": 0.01, "step_decay": 0.7, "step_offset": 3.3, "reg_covar": 1e-3}
    X = np.random.default_rng(0).normal(size=(2500, 2))
    live = GaussianMixture(2, random_state=0, **{setting: np.float32(value[setting])})
    for start in range(0, 1000, 100):
        live.partial_fit(X[start:start + 100])
    resumed = checkpoint.loads(checkpoint.dumps(live)).model
    for start in range(1000, 2500, 100):
        live.partial_fit(X[start:start + 100])
        resumed.partial_fit(X[start:start + 100])
    assert_same_model(resumed, live)


def test_numpy_numbers_as_settings_are_saved_as_numbers(tmp_path):
    """fit accepts n_components=np.int64(2) and the like; save refused them as "meta must be
    JSON-serialisable" though no meta was passed."""
    X = np.random.default_rng(0).normal(size=(300, 2))
    model = GaussianMixture(np.int64(2), reg_covar=np.float32(1e-6), warm_start=np.False_,
                            random_state=np.int64(3)).fit(X)
    loaded = checkpoint.load(checkpoint.save(model, tmp_path / "m.json")).model
    assert loaded.get_params()["n_components"] == 2
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("case", ["extreme values", "one repeated value", "repeated rows"])
def test_what_the_model_learned_from_degenerate_data_loads_back(tmp_path, case):
    """Data the parser admits left checkpoints the loader refused (exit 65 on the restart):
    values of ±6e99 (a grid step of 1.2e100, beyond the ±1e100 bound on stored values), or
    one repeated value (a scatter of -9e-47, rounding, refused as not positive semi-definite)."""
    if case == "extreme values":
        X = np.tile([[6e99], [-6e99], [6e99]], (300, 1))
        model = GaussianMixture(3, random_state=0)
        for start in range(0, len(X), 100):
            model.partial_fit(X[start:start + 100])
    elif case == "one repeated value":
        model = GaussianMixture(5, random_state=0, warmup_size=30)
        model.partial_fit(np.full((30, 1), 7.0))
    else:
        model = GaussianMixture(2, random_state=0).fit(np.tile([[1.0, 2.0]], (50, 1)))
    path = checkpoint.save(model, tmp_path / "m.json")
    loaded = checkpoint.load(path).model
    probe = np.array([[7.0, 2.0][: model.n_features_in_]]) if case != "extreme values" \
        else np.array([[6e99]])
    np.testing.assert_array_equal(loaded.score_samples(probe), model.score_samples(probe))


def test_a_setting_that_would_not_load_is_refused_when_saving_and_learning(tmp_path):
    """set_params after a fit (which partial_fit and a warm fit need not look at) wrote
    checkpoints that did not load: weights_init for too few components, warmup_size below
    n_components.  partial_fit now checks given initial values at every call, and saving
    refuses what loading would."""
    from emstream.exceptions import InitialValuesError

    X = np.random.default_rng(0).normal(size=(60, 2))
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(InitialValuesError, match="weights_init"):
        model.set_params(weights_init=[0.5]).partial_fit(X)
    model.set_params(warm_start=True).fit(X)  # (a warm fit starts from the fitted model)
    with pytest.raises(ValueError, match="weights_init"):
        checkpoint.save(model, tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()
    model.set_params(weights_init=None, warmup_size=1).fit(X)
    with pytest.raises(ValueError, match="warmup_size"):
        checkpoint.save(model, tmp_path / "a.json")
    model.set_params(warmup_size=1000)
    checkpoint.save(model, tmp_path / "a.json")
    assert checkpoint.load(tmp_path / "a.json").model.warmup_size == 1000


def test_a_checkpoint_too_large_to_read_back_is_not_written(tmp_path, monkeypatch):
    """save() refuses what load() would: a checkpoint past MAX_BYTES was written (354 MB for
    1,000 columns), and the restart refused it and lost everything."""
    model = GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 3)))
    checkpoint.save(model, tmp_path / "ok")
    size = len(checkpoint.dumps(model))
    monkeypatch.setattr(checkpoint, "MAX_BYTES", size - 1)
    with pytest.raises(ValueError, match="too large to read back"):
        checkpoint.save(model, tmp_path / "big")
    assert not (tmp_path / "big").exists() or not any((tmp_path / "big").iterdir())
