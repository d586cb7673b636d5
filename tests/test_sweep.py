"""dmft.sweep: a sweep is exactly the runs it is made of (locally and on a 2-process Dask cluster),
the cache computes nothing twice and resumes interrupted sweeps, divergences are recorded, bad
input is refused before anything runs, and ``dmft sweep config.toml`` works end to end.

Every comparison here is exact (``assert_array_equal``): a sweep point is one deterministic call of
the same function on the same configuration, so its curves must be the same bits as the direct call.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

import dmft
import finite_size
from dmft import _cache
from dmft._serialize import config_from_dict
from dmft.cli_sweep import _final, load_sweep_config, main as sweep_main
from dmft.errors import UnsupportedError
from dmft._sweep import sweep
from dmft.result import Result

MODEL = dmft.DeepLinear(depth=2, width_ratio=1.0)
DATA = dmft.GaussianData(alpha=2.0)
TRAINING = dmft.GradientDescent(learning_rate=0.1, steps=12)
SIMULATE = {"dim": 12, "seeds": 2}  # tiny networks: a point costs a few milliseconds
OVER = {"model.width_ratio": [0.5, 2.0], "training.learning_rate": [0.05, 0.1]}


def simulate_point(width_ratio, learning_rate, **overrides):
    """The independent answer: ``finite_size.simulate`` called directly on the replaced objects."""
    model = replace(MODEL, width_ratio=width_ratio)
    training = replace(TRAINING, learning_rate=learning_rate)
    return finite_size.simulate(model, DATA, training, **{**SIMULATE, **overrides})


def assert_point_equals(ds, result, **where):
    point = ds.sel(**where)
    for name in ("test_loss", "train_loss", "test_loss_sem", "train_loss_sem"):
        np.testing.assert_array_equal(point[name].values, getattr(result, name), err_msg=f"{name} at {where}")
    assert str(point["status"].values) == "ok" and str(point["reason"].values) == ""
    assert str(point["method"].values) == result.method


# --------------------------------------------------------------------------- run functions counted by tests

CALLS = {"count": 0, "fail_after": None}


def counted_simulate(model, data, training, **options):
    """``finite_size.simulate`` that counts its calls and, when told, fails after ``fail_after`` calls
    (an interruption: the cache must keep what finished)."""
    if CALLS["fail_after"] is not None and CALLS["count"] >= CALLS["fail_after"]:
        raise KeyboardInterrupt("simulated interruption")
    CALLS["count"] += 1
    return finite_size.simulate(model, data, training, **options)


def returns_nan(model, data, training, **options):
    result = finite_size.simulate(model, data, training, **options)
    if training.learning_rate == 0.1:
        return replace(result, test_loss=np.full_like(result.test_loss, np.nan))
    return result


def unsupported_at_wide(model, data, training, **options):
    if model.width_ratio > 1.0:
        raise UnsupportedError("no answer for wide networks (test)")
    return finite_size.simulate(model, data, training, **options)


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.update(count=0, fail_after=None)


@pytest.fixture(autouse=True)
def no_user_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache: the default folder of every test is its own."""
    monkeypatch.setenv("DMFT_CACHE_DIR", str(tmp_path / "default-cache"))


def cache_files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- a sweep is its runs


def test_local_sweep_equals_the_individual_simulations(tmp_path):
    ds = sweep(MODEL, DATA, TRAINING, over=OVER, run="simulate", run_options=SIMULATE,
               cache=tmp_path, progress=False)
    assert ds["test_loss"].dims == ("width_ratio", "learning_rate", "step")
    np.testing.assert_array_equal(ds["step"], np.arange(TRAINING.steps + 1))
    np.testing.assert_array_equal(ds["width_ratio"], [0.5, 2.0])
    np.testing.assert_array_equal(ds["learning_rate"], [0.05, 0.1])
    for width_ratio in OVER["model.width_ratio"]:
        for learning_rate in OVER["training.learning_rate"]:
            assert_point_equals(ds, simulate_point(width_ratio, learning_rate),
                                width_ratio=width_ratio, learning_rate=learning_rate)
    base = json.loads(ds.attrs["base_config"])
    assert config_from_dict(base["model"]) == MODEL and config_from_dict(base["data"]) == DATA
    assert config_from_dict(base["training"]) == TRAINING
    assert json.loads(ds.attrs["run_options"]) == SIMULATE and ds.attrs["run"] == "simulate"
    assert json.loads(ds.attrs["over"]) == OVER
    assert ds["width_ratio"].attrs["sweep_parameter"] == "model.width_ratio"


def test_sweep_of_dmft_solve_equals_the_individual_solves(tmp_path):
    """run="solve" (the default) on the depth-0 model: each point is dmft.solve of its configuration."""
    data = dmft.GaussianData(alpha=2.0, noise=0.1)
    over = {"data.alpha": [0.5, 2.0], "training.learning_rate": [0.1, 0.3]}  # below 2 / lambda_max = 0.34 at alpha 0.5
    ds = sweep(dmft.Linear(), data, TRAINING, over=over, cache=tmp_path, progress=False)
    for alpha in over["data.alpha"]:
        for learning_rate in over["training.learning_rate"]:
            expected = dmft.solve(dmft.Linear(), replace(data, alpha=alpha), replace(TRAINING, learning_rate=learning_rate))
            point = ds.sel(alpha=alpha, learning_rate=learning_rate)
            np.testing.assert_array_equal(point["test_loss"], expected.test_loss)
            np.testing.assert_array_equal(point["train_loss"], expected.train_loss)
            assert str(point["method"].values) == expected.method


def test_nested_zipped_whole_object_and_run_option_sweeps(tmp_path):
    data = dmft.GaussianData(alpha=2.0, spectrum=dmft.PowerLaw(a=1.5, b=0.5, modes=4))
    # nested field: data.spectrum.a
    ds = sweep(MODEL, data, TRAINING, over={"data.spectrum.a": [1.0, 2.0]}, run="simulate",
               run_options=SIMULATE, cache=tmp_path, progress=False)
    for a in (1.0, 2.0):
        expected = finite_size.simulate(MODEL, replace(data, spectrum=dmft.PowerLaw(a=a, b=0.5, modes=4)),
                                        TRAINING, **SIMULATE)
        np.testing.assert_array_equal(ds["test_loss"].sel(a=a), expected.test_loss)
    # the same values as whole objects: a string coordinate (repr), identical curves
    spectra = [dmft.PowerLaw(a=a, b=0.5, modes=4) for a in (1.0, 2.0)]
    whole = sweep(MODEL, data, TRAINING, over={"data.spectrum": spectra}, run="simulate",
                  run_options=SIMULATE, cache=tmp_path, progress=False)
    assert list(whole["spectrum"].values) == [repr(s) for s in spectra]
    np.testing.assert_array_equal(whole["test_loss"].values, ds["test_loss"].values)
    assert whole.attrs["points_cached"] == 2  # same configurations, same cache keys
    # zip: lists stepped together along `point`, each parameter a coordinate on it
    zipped = sweep(MODEL, DATA, TRAINING, over=OVER, zip=True, run="simulate", run_options=SIMULATE,
                   cache=tmp_path, progress=False)
    assert zipped["test_loss"].dims == ("point", "step")
    for i, (width_ratio, learning_rate) in enumerate(zip(*OVER.values())):
        assert zipped["width_ratio"].values[i] == width_ratio
        np.testing.assert_array_equal(zipped["test_loss"].isel(point=i),
                                      simulate_point(width_ratio, learning_rate).test_loss)
    # a run option (finite-size scaling over D)
    by_dim = sweep(MODEL, DATA, TRAINING, over={"run.dim": [8, 16]}, run="simulate", run_options=SIMULATE,
                   cache=tmp_path, progress=False)
    np.testing.assert_array_equal(by_dim["test_loss"].sel(dim=16),
                                  simulate_point(1.0, TRAINING.learning_rate, dim=16).test_loss)


def test_swept_steps_pad_shorter_curves_with_nan(tmp_path):
    ds = sweep(MODEL, DATA, TRAINING, over={"training.steps": [5, 12]}, run="simulate", run_options=SIMULATE,
               cache=tmp_path, progress=False)
    assert ds.sizes["step"] == 13
    short = finite_size.simulate(MODEL, DATA, replace(TRAINING, steps=5), **SIMULATE)
    np.testing.assert_array_equal(ds["test_loss"].sel(steps=5).values[:6], short.test_loss)
    assert np.all(np.isnan(ds["test_loss"].sel(steps=5).values[6:]))
    # the CLI's "final" figure reads each point's own last step
    np.testing.assert_array_equal(_final(ds["test_loss"], None).values,
                                  [short.test_loss[-1], ds["test_loss"].sel(steps=12).values[-1]])


# --------------------------------------------------------------------------- the same on a Dask cluster


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded worker processes (a few seconds to start)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=":0") as local_cluster:
        yield local_cluster


def test_cluster_sweep_equals_the_local_sweep_and_the_individual_runs(cluster, tmp_path, capsys):
    from distributed import Client, get_task_stream

    over = {**OVER, "training.learning_rate": [0.05, 0.1, 50.0]}  # 50: diverges, recorded on the worker
    local = sweep(MODEL, DATA, TRAINING, over=over, run="simulate", run_options=SIMULATE,
                  use_cache=False, progress=False)
    with Client(cluster) as client, get_task_stream(client) as stream:
        remote = sweep(MODEL, DATA, TRAINING, over=over, run="simulate", run_options=SIMULATE,
                       client=client, cache=tmp_path, progress=True)
    assert "dashboard" in capsys.readouterr().out
    tasks = [t for t in stream.data if str(t["key"]).startswith("dmft-sweep")]
    assert len(tasks) == 6 and remote.attrs["points_computed"] == 6  # one task per configuration
    xr.testing.assert_equal(remote, local)
    assert_point_equals(remote, simulate_point(2.0, 0.1), width_ratio=2.0, learning_rate=0.1)
    assert set(remote["status"].sel(learning_rate=50.0).values) == {"diverged"}
    # a scheduler address instead of a Client; everything now comes from the cache
    again = sweep(MODEL, DATA, TRAINING, over=over, run="simulate", run_options=SIMULATE,
                  client=cluster.scheduler_address, cache=tmp_path, progress=False)
    assert again.attrs["points_computed"] == 0 and again.attrs["points_cached"] == 6
    xr.testing.assert_equal(again, local)
    # and with use_cache=False the address path computes on the cluster
    fresh = sweep(MODEL, DATA, TRAINING, over={"model.width_ratio": [0.5]}, run="simulate",
                  run_options=SIMULATE, client=cluster.scheduler_address, use_cache=False, progress=False)
    np.testing.assert_array_equal(fresh["test_loss"].sel(width_ratio=0.5),
                                  simulate_point(0.5, TRAINING.learning_rate).test_loss)


# --------------------------------------------------------------------------- the cache


def test_second_identical_sweep_computes_nothing_and_returns_identical_data(tmp_path):
    over = {**OVER, "training.learning_rate": [0.05, 0.1, 50.0]}
    first = sweep(MODEL, DATA, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
                  cache=tmp_path, progress=False)
    assert CALLS["count"] == 6 and first.attrs["points_computed"] == 6
    # 4 results and 2 recorded divergences on disk, no temporary files left behind
    files = cache_files(tmp_path)
    assert sum(f.endswith(".npz") for f in files) == 4 and sum(f.endswith(".diverged.json") for f in files) == 2
    assert not [f for f in files if f.endswith(".tmp")]
    second = sweep(MODEL, DATA, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
                   cache=tmp_path, progress=False)
    assert CALLS["count"] == 6, "the cached sweep called the run function"
    assert second.attrs["points_computed"] == 0 and second.attrs["points_cached"] == 6
    xr.testing.assert_equal(first, second)
    # use_cache=False computes again, and gives the same bits
    third = sweep(MODEL, DATA, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
                  cache=tmp_path, use_cache=False, progress=False)
    assert CALLS["count"] == 12
    xr.testing.assert_equal(first, third)


def test_interrupted_sweep_resumes_with_only_the_missing_points(tmp_path):
    complete = sweep(MODEL, DATA, TRAINING, over=OVER, run="simulate", run_options=SIMULATE,
                     use_cache=False, progress=False)
    CALLS["fail_after"] = 3
    with pytest.raises(KeyboardInterrupt):
        sweep(MODEL, DATA, TRAINING, over=OVER, run=counted_simulate, run_options=SIMULATE,
              cache=tmp_path, progress=False)
    assert len(cache_files(tmp_path)) == 3
    CALLS.update(count=0, fail_after=None)
    resumed = sweep(MODEL, DATA, TRAINING, over=OVER, run=counted_simulate, run_options=SIMULATE,
                    cache=tmp_path, progress=False)
    assert CALLS["count"] == 1 and resumed.attrs["points_cached"] == 3
    xr.testing.assert_equal(resumed, complete)


def test_cache_key_is_the_content_and_the_folder_follows_the_documented_rule(tmp_path, monkeypatch):
    key = _cache.cache_key("solve", MODEL, DATA, TRAINING, {"x": 1})
    # equal configurations built differently (int vs float, numpy scalars) give the same key
    same = _cache.cache_key("solve", dmft.DeepLinear(depth=2, width_ratio=1), dmft.GaussianData(alpha=np.float64(2)),
                            dmft.GradientDescent(0.1, 12), {"x": np.int64(1)})
    assert same == key
    different = [
        _cache.cache_key("simulate", MODEL, DATA, TRAINING, {"x": 1}),
        _cache.cache_key("solve", replace(MODEL, gamma0=0.5), DATA, TRAINING, {"x": 1}),
        _cache.cache_key("solve", MODEL, DATA, TRAINING, {"x": 2}),
    ]
    monkeypatch.setattr(dmft, "__version__", "0.0.0-test")
    different.append(_cache.cache_key("solve", MODEL, DATA, TRAINING, {"x": 1}))
    assert len(set(different + [key])) == 5
    with pytest.raises(TypeError, match=r"run_options\['x'\]"):
        _cache.cache_key("solve", MODEL, DATA, TRAINING, {"x": object()})
    # folder: argument, then $DMFT_CACHE_DIR, then the platform's user cache directory
    monkeypatch.setenv("DMFT_CACHE_DIR", str(tmp_path / "env"))
    assert _cache.cache_folder(tmp_path / "arg") == tmp_path / "arg"
    assert _cache.cache_folder() == tmp_path / "env"
    monkeypatch.delenv("DMFT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert _cache.cache_folder() == tmp_path / ".cache" / "dmft"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.cache_folder() == tmp_path / "xdg" / "dmft"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _cache.cache_folder() == tmp_path / "Library" / "Caches" / "dmft"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert _cache.cache_folder() == tmp_path / "local" / "dmft" / "Cache"


def test_default_cache_folder_is_the_environment_variable(tmp_path):
    sweep(MODEL, DATA, TRAINING, over={"model.width_ratio": [0.5]}, run="simulate", run_options=SIMULATE,
          progress=False)
    assert len(cache_files(tmp_path / "default-cache")) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_file_is_computed_again(damage, tmp_path):
    over = {"model.width_ratio": [0.5]}
    first = sweep(MODEL, DATA, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
                  cache=tmp_path, progress=False)
    (stored,) = [p for p in tmp_path.rglob("*.npz")]
    content = stored.read_bytes()
    stored.write_bytes(b"not a result" if damage == "garbage" else content[: len(content) // 2])
    again = sweep(MODEL, DATA, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
                  cache=tmp_path, progress=False)
    assert CALLS["count"] == 2
    xr.testing.assert_equal(first, again)
    rewritten = dmft.Result.load(stored)  # rewritten with the same curves
    np.testing.assert_array_equal(rewritten.test_loss, first["test_loss"].sel(width_ratio=0.5))


# --------------------------------------------------------------------------- failures


def test_diverging_point_is_recorded_and_the_rest_completes(tmp_path):
    over = {"training.learning_rate": [0.05, 50.0, 0.1]}
    ds = sweep(MODEL, DATA, TRAINING, over=over, run="simulate", run_options=SIMULATE,
               cache=tmp_path, progress=False)
    bad = ds.sel(learning_rate=50.0)
    assert str(bad["status"].values) == "diverged"
    assert "DivergenceError" in str(bad["reason"].values) and "learning_rate" in str(bad["reason"].values)
    assert np.all(np.isnan(bad["test_loss"])) and np.all(np.isnan(bad["train_loss"]))
    with pytest.raises(dmft.DivergenceError):  # the independent check: the direct call does diverge
        finite_size.simulate(MODEL, DATA, replace(TRAINING, learning_rate=50.0), **SIMULATE)
    for learning_rate in (0.05, 0.1):
        assert_point_equals(ds, simulate_point(1.0, learning_rate), learning_rate=learning_rate)
    # a run that returns non-finite curves without raising is also marked
    marked = sweep(MODEL, DATA, TRAINING, over=over, run=returns_nan, run_options=SIMULATE,
                   use_cache=False, progress=False)
    assert list(marked["status"].values) == ["ok", "diverged", "diverged"]
    assert "non-finite test_loss" in str(marked["reason"].sel(learning_rate=0.1).values)


def test_other_errors_stop_the_sweep_naming_the_point(tmp_path):
    with pytest.raises(UnsupportedError, match="wide networks") as caught:
        sweep(MODEL, DATA, TRAINING, over={"model.width_ratio": [0.5, 2.0]}, run=unsupported_at_wide,
              run_options=SIMULATE, cache=tmp_path, progress=False)
    assert "model.width_ratio=2.0" in "".join(getattr(caught.value, "__notes__", []))
    assert len(cache_files(tmp_path)) == 1  # the point finished before it is kept


@pytest.mark.parametrize("over, error, message", [
    ({"modle.width_ratio": [1.0]}, ValueError, "must start with one of model., data., training., run."),
    ({"model.widht_ratio": [1.0]}, ValueError, "DeepLinear \\(model\\) has no field 'widht_ratio'"),
    ({"model": [dmft.Linear()]}, ValueError, "and name a field"),
    ({"data.spectrum.a": [1.0]}, ValueError, "data.spectrum is None in the base configuration"),
    ({"data.teacher.density.x": [1.0]}, ValueError, "data.teacher is None"),
    ({"training.learning_rate": [0.1, -1.0]}, ValueError,
     "training.learning_rate=-1.0: `learning_rate` must be positive"),
    ({"training.steps": [2.5]}, TypeError, "training.steps=2.5: `steps` must be an integer"),
    ({"model.width_ratio": 2.0}, TypeError, "values must be a list"),
    ({"model.parameterization": "mup"}, TypeError, "values must be a list"),
    ({"model.width_ratio": []}, ValueError, "list of values is empty"),
    ({"model.width_ratio": [1.0, 1.0]}, ValueError, "values repeat"),
    ({"training.steps": [10], "run.steps": [1]}, ValueError,
     "'training.steps' and 'run.steps' would both be the Dataset dimension 'steps'"),
    ({"run.step": [1]}, ValueError, "its Dataset name 'step' is taken"),
    ({"data.alpha": [None]}, ValueError, "sweep point data.alpha=None: GradientDescent trains on a fixed data set"),
])
def test_bad_names_and_values_raise_clear_errors_before_anything_runs(over, error, message, tmp_path):
    with pytest.raises(error, match=message):
        sweep(MODEL, DATA, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
              cache=tmp_path, progress=False)
    assert CALLS["count"] == 0 and not cache_files(tmp_path)


def test_invalid_combinations_are_checked_together(tmp_path):
    # the two lists of a Spectrum must have equal lengths: each zipped pair is applied in one replace
    data = dmft.GaussianData(alpha=2.0, spectrum=dmft.Spectrum(eigenvalues=[2.0, 0.5], teacher_variances=[1.0, 1.0]))
    over = {"data.spectrum.eigenvalues": [(2.0, 0.5), (2.0, 1.0, 0.5)],
            "data.spectrum.teacher_variances": [(1.0, 1.0), (1.0, 1.0, 1.0)]}
    zipped = sweep(MODEL, data, TRAINING, over=over, zip=True, run="simulate", run_options=SIMULATE,
                   use_cache=False, progress=False)
    three = dmft.Spectrum(eigenvalues=(2.0, 1.0, 0.5), teacher_variances=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(zipped["test_loss"].isel(point=1),
                                  finite_size.simulate(MODEL, replace(data, spectrum=three), TRAINING, **SIMULATE).test_loss)
    assert list(zipped["eigenvalues"].values) == ["(2.0, 0.5)", "(2.0, 1.0, 0.5)"]
    with pytest.raises(ValueError, match=r"data.spectrum.eigenvalues=\(2.0, 0.5\), "
                                         r"data.spectrum.teacher_variances=\(1.0, 1.0, 1.0\): .*same length"):
        sweep(MODEL, data, TRAINING, over=over, run=counted_simulate, run_options=SIMULATE,
              use_cache=False, progress=False)
    assert CALLS["count"] == 0
    with pytest.raises(ValueError, match="'data.spectrum' and 'data.spectrum.eigenvalues' overlap"):
        sweep(MODEL, data, TRAINING, over={"data.spectrum": [three], "data.spectrum.eigenvalues": [(1.0, 2.0)]},
              run=counted_simulate, run_options=SIMULATE, use_cache=False, progress=False)
    with pytest.raises(ValueError, match="zip=True needs value lists of equal length"):
        sweep(MODEL, DATA, TRAINING, over={"model.depth": [1, 2], "model.gamma0": [1.0]}, zip=True,
              run=counted_simulate, run_options=SIMULATE, use_cache=False, progress=False)


def test_bad_run_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="`run` must be one of"):
        sweep(MODEL, DATA, TRAINING, over=OVER, run="train", cache=tmp_path, progress=False)
    with pytest.raises(TypeError, match="`run_options` \\['dimension'\\] do not fit simulate"):
        sweep(MODEL, DATA, TRAINING, over=OVER, run="simulate", run_options={"dimension": 12},
              cache=tmp_path, progress=False)
    with pytest.raises(TypeError, match="`client` must be None, a dask.distributed.Client"):
        sweep(MODEL, DATA, TRAINING, over=OVER, run="simulate", run_options=SIMULATE, client=4,
              cache=tmp_path, progress=False)
    with pytest.raises(TypeError, match="`over` must be a dict"):
        sweep(MODEL, DATA, TRAINING, over=["model.width_ratio"], cache=tmp_path, progress=False)


# --------------------------------------------------------------------------- the command line

CONFIG = """
[model]
type = "DeepLinear"
depth = 2

[data]
alpha = 2.0

[training]
learning_rate = 0.1
steps = 12

[over]
"model.parameterization" = ["mup", "ntk"]
"training.learning_rate" = [0.05, 0.1, 50.0]

[run]
kind = "simulate"
options = { dim = 12, seeds = 2 }

[[figures]]
kind = "curves"
file = "figures/curves.png"

[[figures]]
kind = "final"
x = "learning_rate"
logx = true
file = "figures/final.png"
"""


def test_command_line_sweep_end_to_end(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out" / "results.nc"
    argv = [str(config), "--out", str(out), "--cache", str(tmp_path / "cache"), "--quiet"]
    assert sweep_main(argv) == 0
    assert "6 points (6 computed, 0 from the cache), 2 diverged" in capsys.readouterr().out
    direct = sweep(MODEL, DATA, TRAINING, run="simulate", run_options=SIMULATE, use_cache=False, progress=False,
                   over={"model.parameterization": ["mup", "ntk"], "training.learning_rate": [0.05, 0.1, 50.0]})
    with xr.open_dataset(out) as written:
        xr.testing.assert_equal(written.load(), direct)
        assert "[over]" in written.attrs["config_file"]
    for name in ("curves.png", "final.png"):
        assert (tmp_path / "out" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # again, without figures (same configurations, so the same cache keys): nothing computed
    config.write_text(CONFIG.split("[[figures]]")[0])
    assert sweep_main(argv) == 0
    assert "(0 computed, 6 from the cache)" in capsys.readouterr().out
    assert sweep_main([*argv, "--no-cache"]) == 0
    assert "(6 computed, 0 from the cache)" in capsys.readouterr().out


def test_command_line_on_a_running_scheduler(cluster, tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG.split("[[figures]]")[0])
    out = tmp_path / "results.nc"
    assert sweep_main([str(config), "--out", str(out), "--scheduler", cluster.scheduler_address, "--no-cache",
                       "--quiet"]) == 0
    local = tmp_path / "local.nc"
    assert sweep_main([str(config), "--out", str(local), "--no-cache", "--quiet"]) == 0
    # a scheduler file, as `dask scheduler --scheduler-file` writes it on a batch system
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"address": cluster.scheduler_address}))
    by_file = tmp_path / "by-file.nc"
    assert sweep_main([str(config), "--out", str(by_file), "--scheduler", str(scheduler_file), "--no-cache",
                       "--quiet"]) == 0
    with xr.open_dataset(out) as remote, xr.open_dataset(local) as here, xr.open_dataset(by_file) as other:
        xr.testing.assert_equal(remote.load(), here.load())
        xr.testing.assert_equal(other.load(), here.load())
    assert sweep_main([str(config), "--scheduler", str(tmp_path / "missing.json"), "--quiet"]) == 2
    assert "scheduler file" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.replace('type = "DeepLinear"', 'type = "GaussianData"'), "\\[model\\] needs type = one of"),
    (lambda c: c.replace("depth = 2", "depht = 2"), "\\[model\\]: .*depht"),
    (lambda c: c.replace("[run]", "[runs]"), "unknown table"),
    (lambda c: c.replace('x = "learning_rate"', 'x = "gamma0"'), "x must be one of the swept parameters"),
    (lambda c: c.replace('kind = "curves"', 'kind = "heatmap"'), "kind must be one of"),
    (lambda c: c.replace("[0.05, 0.1, 50.0]", "[0.05, -0.1]"), "training.learning_rate=-0.1"),
    (lambda c: c.replace("[over]", "[over]\n\"model.width\" = [1.0]"), "has no field 'width'"),
    (lambda c: c + "\n[data.spectrum]\na = 1.0\n", "\\[data.spectrum\\] needs a `type`"),
    (lambda c: c.replace("alpha = 2.0", "alpha = ="), "sweep.toml|Invalid"),
])
def test_command_line_rejects_a_bad_configuration_before_running(edit, message, tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(edit(CONFIG))
    assert sweep_main([str(config), "--out", str(tmp_path / "r.nc"), "--cache", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("dmft sweep: error:")


    assert re.search(message, error), error
    assert not (tmp_path / "r.nc").exists() and not (tmp_path / "cache").exists()


def test_configuration_file_none_and_online_sgd(tmp_path):
    config = tmp_path / "online.toml"
    config.write_text(CONFIG.replace("alpha = 2.0", 'alpha = "none"').replace(
        "[training]", '[training]\ntype = "OnlineSGD"\nbatch_ratio = 0.5'))
    parsed = load_sweep_config(config)
    assert parsed.data == dmft.GaussianData(alpha=None)
    assert parsed.training == dmft.OnlineSGD(learning_rate=0.1, steps=12, batch_ratio=0.5)
    assert parsed.kind == "simulate" and parsed.options == SIMULATE and len(parsed.figures) == 2


def test_the_sweep_command_is_part_of_dmft_cli():
    """``dmft sweep`` is wired into the package's command line (dmft/cli.py), and dmft/cli_sweep.py
    does not import dmft/cli.py (one direction only: what both need is in dmft/_cli_common.py)."""
    import ast
    from pathlib import Path

    from dmft import cli

    parser = cli.make_parser()
    assert "sweep" in parser._subparsers._group_actions[0].choices
    args = parser.parse_args(["sweep", "c.toml", "--workers", "2"])
    assert args.workers == 2 and args.run.__module__ == "dmft.cli_sweep"
    tree = ast.parse((Path(__file__).resolve().parents[1] / "dmft" / "cli_sweep.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not imported & {"cli", "dmft.cli"}, imported


@pytest.mark.slow
def test_cluster_documentation_example(tmp_path, monkeypatch, capsys):
    """The local-cluster example of docs/cluster.md runs as written (its own asserts included).

    Slow (its own cluster start-up, 5-10 s on 2 busy cores); the fast suite covers the same path in
    ``test_cluster_sweep_equals_the_local_sweep_and_the_individual_runs``."""
    from pathlib import Path

    pytest.importorskip("distributed")

    text = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    assert "LocalCluster(n_workers=2" in example
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/cluster.md", "exec"), {"__name__": "__main__"})
    expected = dmft.solve(dmft.Linear(), dmft.GaussianData(alpha=2.0, noise=0.1), dmft.GradientDescent(0.1, 50))
    assert capsys.readouterr().out.splitlines()[-1] == str(expected.test_loss[-1])
    with xr.open_dataset(tmp_path / "alpha-sweep.nc") as written:
        assert written["test_loss"].sel(alpha=2.0, learning_rate=0.1).values[-1] == expected.test_loss[-1]


@pytest.mark.slow
def test_command_line_starts_a_local_cluster_with_workers(tmp_path):
    """``--workers 2`` starts its own LocalCluster (slow: a second cluster start-up); the fast suite
    covers the cluster path through ``--scheduler``."""
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG.split("[[figures]]")[0])
    assert sweep_main([str(config), "--out", str(tmp_path / "w.nc"), "--workers", "2", "--no-cache", "--quiet"]) == 0
    assert sweep_main([str(config), "--out", str(tmp_path / "s.nc"), "--no-cache", "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "w.nc") as remote, xr.open_dataset(tmp_path / "s.nc") as here:
        xr.testing.assert_equal(remote.load(), here.load())


def test_an_empty_sweep_is_the_base_configuration(tmp_path):
    ds = sweep(MODEL, DATA, TRAINING, run="simulate", run_options=SIMULATE, cache=tmp_path, progress=True)
    assert ds["test_loss"].dims == ("step",) and str(ds["status"].values) == "ok"
    np.testing.assert_array_equal(ds["test_loss"], finite_size.simulate(MODEL, DATA, TRAINING, **SIMULATE).test_loss)


def test_the_documented_configuration_file_runs(tmp_path, capsys):
    """The example in ``dmft sweep --help`` (the dmft.cli_sweep docstring) is a working configuration."""
    import dmft.cli_sweep as cli_sweep

    example = cli_sweep.__doc__.split("optional)::")[1].split("Figure keys")[0]
    config = tmp_path / "example.toml"
    config.write_text("\n".join(line[4:] for line in example.splitlines()))
    parsed = load_sweep_config(config)
    assert parsed.model == dmft.DeepLinear(depth=2, width_ratio=1.0)
    assert parsed.data.spectrum == dmft.PowerLaw(a=1.5, modes=8)
    assert sweep_main([str(config), "--out", str(tmp_path / "example.nc"), "--no-cache", "--quiet"]) == 0
    assert "6 points (6 computed, 0 from the cache), 0 diverged" in capsys.readouterr().out
    assert (tmp_path / "final.png").exists() and (tmp_path / "curves.png").exists()


# --------------------------------------------------------------------------- time: steps and flows

SAVE_AT = (0.0, 0.25, 1.0, 4.0)
FLOW = dmft.GradientFlow(time=4.0, save_at=SAVE_AT)


def exact_population_flow(model, data, training):
    """The independent answer for a flow: population gradient flow of depth 0 (THEORY.md section 3
    with ``alpha -> infinity``): ``d beta / dt = beta* - beta``, so the excess test loss of an
    isotropic teacher of variance 1 is ``exp(-2 t)``, and the train loss equals the test loss."""
    t = np.asarray(training.save_at)
    loss = np.exp(-2 * t) + data.noise**2
    return Result(model, data, training, test_loss=loss, train_loss=loss.copy(), time=t, method="exact")


def off_grid_flow(model, data, training):
    t = np.asarray(training.save_at) * (1.5 if data.noise > 0 else 1.0)
    return Result(model, data, training, test_loss=np.exp(-2 * t), train_loss=np.exp(-2 * t), time=t)


def test_a_flow_sweep_has_time_as_its_axis_and_the_closed_form_values(tmp_path):
    data = dmft.GaussianData(alpha=None)
    ds = sweep(dmft.Linear(), data, FLOW, over={"data.noise": [0.0, 0.5]}, run=exact_population_flow,
               cache=tmp_path, progress=False)
    assert ds["test_loss"].dims == ("noise", "time")
    np.testing.assert_array_equal(ds["time"], SAVE_AT)
    for noise in (0.0, 0.5):
        np.testing.assert_allclose(ds["test_loss"].sel(noise=noise), np.exp(-2 * np.array(SAVE_AT)) + noise**2,
                                   rtol=1e-15)
    assert float(ds["test_loss"].sel(noise=0.5, time=1.0)) == pytest.approx(math.exp(-2) + 0.25, rel=1e-15)
    # cached: the same Dataset, time included, from the files
    again = sweep(dmft.Linear(), data, FLOW, over={"data.noise": [0.0, 0.5]}, run=exact_population_flow,
                  cache=tmp_path, progress=False)
    assert again.attrs["points_cached"] == 2
    xr.testing.assert_equal(again, ds)  # values and coordinates (time included); attrs count the cache hits
    # a one-point sweep has the layout of Result.to_xarray
    single = exact_population_flow(dmft.Linear(), data, FLOW)
    xr.testing.assert_equal(sweep(dmft.Linear(), data, FLOW, run=exact_population_flow, use_cache=False,
                                  progress=False)[["test_loss", "train_loss"]], single.to_xarray()[["test_loss", "train_loss"]])


def test_flow_sweep_figures_use_the_flow_time(tmp_path):
    import matplotlib.pyplot as plt

    from dmft.cli_sweep import plot_sweep_curves, plot_sweep_final

    ds = sweep(dmft.Linear(), dmft.GaussianData(alpha=None), FLOW, over={"data.noise": [0.0, 0.5]},
               run=exact_population_flow, use_cache=False, progress=False)
    ax = plot_sweep_curves(ds)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "time"
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), SAVE_AT[1:])  # t = 0 has no place on a log axis
    ax = plot_sweep_final(ds, "noise", time=0.9, logy=False)  # the nearest report time, 1.0
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [math.exp(-2), math.exp(-2) + 0.25], rtol=1e-15)
    assert ax.get_ylabel() == "test loss at time 1"
    with pytest.raises(ValueError, match="give time="):
        plot_sweep_final(ds, "noise", step=3)
    plt.close("all")


def test_a_discrete_sweep_keeps_step_and_gains_a_time_coordinate(tmp_path):
    ds = sweep(MODEL, DATA, TRAINING, over={"model.width_ratio": [0.5, 2.0]}, run="simulate",
               run_options=SIMULATE, cache=tmp_path, progress=False)
    assert ds["test_loss"].dims == ("width_ratio", "step")
    assert ds["time"].dims == ("step",)
    np.testing.assert_array_equal(ds["time"], np.arange(TRAINING.steps + 1, dtype=float))


@pytest.mark.parametrize(
    "training,over,message",
    [
        (dmft.GradientFlow(time=4.0), {"data.noise": [0.0, 0.1]}, "needs common report times: give the base GradientFlow `save_at`"),
        (FLOW, {"training.save_at": [SAVE_AT, (0.0, 2.0)]}, "the same `save_at` at every point"),
        (FLOW, {"training.time": [4.0, 8.0]}, "Dataset name 'time' is taken.*the longest time"),
    ],
)
def test_flow_sweeps_without_common_times_are_refused_before_anything_runs(training, over, message, tmp_path):
    calls = []

    def never(*args, **kwargs):  # pragma: no cover - must not run
        calls.append(args)

    with pytest.raises(ValueError, match=message):
        sweep(dmft.Linear(), dmft.GaussianData(alpha=None), training, over=over, run=never, cache=tmp_path,
              progress=False)
    assert not calls and not any(tmp_path.iterdir())


def test_a_run_reporting_at_other_times_is_an_error_naming_the_point(tmp_path):
    with pytest.raises(ValueError, match=r"sweep point data.noise=0.5: the run reported at times"):
        sweep(dmft.Linear(), dmft.GaussianData(alpha=None), FLOW, over={"data.noise": [0.0, 0.5]},
              run=off_grid_flow, use_cache=False, progress=False)


def test_cache_key_includes_schedules_and_flow_settings():
    rates = dmft.schedules.warmup_cosine(0.1, 12, warmup=3)
    nudged = rates.copy()
    nudged[7] = np.nextafter(nudged[7], 1.0)  # one rate, one ulp
    keys = {
        _cache.cache_key("solve", MODEL, DATA, dmft.GradientDescent(rates, 12)),
        _cache.cache_key("solve", MODEL, DATA, dmft.GradientDescent(nudged, 12)),
        _cache.cache_key("solve", MODEL, DATA, dmft.GradientDescent(0.1, 12)),
        _cache.cache_key("solve", MODEL, DATA, FLOW),
        _cache.cache_key("solve", MODEL, DATA, FLOW.replace(rtol=1e-6)),
        _cache.cache_key("solve", MODEL, DATA, FLOW.replace(save_at=(0.0, 4.0))),
        _cache.cache_key("solve", MODEL, DATA, FLOW.replace(save_at=None)),
        _cache.cache_key("solve", MODEL, DATA, FLOW.replace(time=5.0)),
    }
    assert len(keys) == 8
    assert _cache.cache_key("solve", MODEL, DATA, dmft.GradientDescent(list(rates), 12)) == \
        _cache.cache_key("solve", MODEL, DATA, dmft.GradientDescent(tuple(rates), 12))


def warned_simulate(model, data, training, **options):
    """A run whose result carries an accuracy warning (status 1) at one width."""
    result = finite_size.simulate(model, data, training, **options)
    if model.width_ratio > 1:
        return replace(result, status=1, message="test diagnostic = 2 exceeds 1; do something")
    return result


def test_accuracy_status_of_each_result_is_kept_and_warned_about_also_from_the_cache(tmp_path):
    over = {"model.width_ratio": [0.5, 2.0]}
    for _ in range(2):  # computed, then read from the cache: the warning is not lost either way
        with pytest.warns(dmft.AccuracyWarning, match="1 of 2 sweep points have accuracy warnings"):
            ds = sweep(MODEL, DATA, TRAINING, over=over, run=warned_simulate, run_options=SIMULATE,
                       cache=tmp_path, progress=False)
        np.testing.assert_array_equal(ds["accuracy_status"], [0, 1])
        assert str(ds["accuracy_message"].sel(width_ratio=2.0).values).startswith("test diagnostic")
        assert str(ds["status"].sel(width_ratio=2.0).values) == "ok"
    assert ds.attrs["points_cached"] == 2


def test_the_shipped_example_runs_as_the_readme_says(tmp_path, capsys):
    """``dmft sweep examples/sweep.toml --out ...`` (README, Command line and Sweeps): 9 DMFT points,
    each equal to the direct solve of its configuration, and its two figures."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "sweep.toml"
    out = tmp_path / "results" / "widths.nc"
    assert sweep_main([str(example), "--out", str(out), "--no-cache", "--quiet"]) == 0
    assert "9 points (9 computed, 0 from the cache), 0 diverged" in capsys.readouterr().out
    parsed = load_sweep_config(example)
    with xr.open_dataset(out) as written:
        expected = dmft.solve(parsed.model.replace(width_ratio=2.0), parsed.data,
                              parsed.training.replace(learning_rate=0.1))
        np.testing.assert_array_equal(written["test_loss"].sel(width_ratio=2.0, learning_rate=0.1), expected.test_loss)
    assert (out.parent / "widths-curves.png").exists() and (out.parent / "widths-final.png").exists()
