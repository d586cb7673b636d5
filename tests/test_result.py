"""dmft.Result: save/load is bit-exact (curves, time, status, message, configurations with schedules
and gradient flows, packed order parameters), bad files are named with the reason, JSON is valid
(null for NaN), and to_xarray lays a result out like a sweep.

Every comparison of stored numbers is on their bits (``view(uint)``): a lossless format must give
back -0.0, NaN payloads and the last ulp exactly, which ``assert_array_equal`` would not check.
"""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

import dmft
from dmft.result import Result, _pack, _unpack, json_safe, time_dimension


def assert_same_bits(a, b, label=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (label, a.dtype, b.dtype, a.shape, b.shape)
    if a.dtype.kind in "fiu":
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"), err_msg=label)
    else:
        np.testing.assert_array_equal(a, b, err_msg=label)


def assert_same_result(a: Result, b: Result):
    for name in ("time", "test_loss", "train_loss", "test_loss_sem", "train_loss_sem"):
        if getattr(a, name) is None:
            assert getattr(b, name) is None, name
        else:
            assert_same_bits(getattr(a, name), getattr(b, name), name)
    assert (a.model, a.data, a.training) == (b.model, b.data, b.training)
    assert (a.method, a.status, a.message, dict(a.info)) == (b.method, b.status, b.message, dict(b.info))
    assert sorted(a.arrays) == sorted(b.arrays)
    for name in a.arrays:
        assert_same_bits(a.arrays[name], b.arrays[name], name)


def awkward_arrays(rng, n):
    """Arrays that test every packing: exactly symmetric (with -0.0 and NaN entries), lower
    triangular (causal), lower but with one -0.0 above the diagonal (must NOT be packed as lower:
    -0.0 is not +0.0), stacked per layer, integers, booleans, 1-D, and a plain full matrix."""
    symmetric = rng.standard_normal((n, n))
    symmetric = symmetric + symmetric.T
    symmetric[1, 2] = symmetric[2, 1] = -0.0
    symmetric[0, 3] = symmetric[3, 0] = np.nan
    lower = np.tril(rng.standard_normal((n, n)))
    almost_lower = lower.copy()
    almost_lower[0, n - 1] = -0.0
    return {
        "symmetric": symmetric,
        "lower": lower,
        "almost_lower": almost_lower,
        "layers": np.stack([np.tril(rng.standard_normal((n, n))) for _ in range(3)]),
        "cross": np.stack([np.eye(4) * k for k in range(n - 1)]),  # (steps, L, L), symmetric
        "full": rng.standard_normal((n, n)),
        "float32": rng.standard_normal((n, n)).astype(np.float32),
        "counts": rng.integers(-5, 5, size=(n, n)),
        "flags": rng.random(n) > 0.5,
        "names": np.array(["a", "bc"]),
        "curve": rng.standard_normal(n),
        "empty": np.zeros((0, 3)),
    }


@pytest.mark.parametrize(
    "training,time",
    [
        (dmft.GradientDescent(learning_rate=0.05, steps=6), None),
        # a schedule: the tuple of rates must come back exactly (JSON floats round-trip in Python)
        (dmft.GradientDescent(learning_rate=dmft.schedules.warmup_cosine(0.1, 6, warmup=2), steps=6), None),
        (dmft.OnlineSGD(learning_rate=(0.1, 0.05, 0.025, 1 / 3, 0.2, 0.1), steps=6, batch_ratio=0.5), None),
        # a flow reports at its save_at times (flow time, not steps)
        (dmft.GradientFlow(time=1e4, save_at=tuple(np.geomspace(1e-3, 1e4, 7)), rtol=1e-6), np.geomspace(1e-3, 1e4, 7)),
    ],
)
def test_save_load_round_trip_is_bit_exact(tmp_path, training, time):
    rng = np.random.default_rng(3)
    n = 7
    curve = rng.random(n)
    curve[3] = np.nan  # NaN survives the file (the JSON export writes it as null)
    result = Result(
        dmft.DeepLinear(depth=math.inf, residual=True, branch_scale=0.7),
        dmft.GaussianData(alpha=None if isinstance(training, dmft.OnlineSGD) else 1.5, noise=0.1,
                          spectrum=dmft.PowerLaw(a=1.5, b=0.5, modes=8)),
        training,
        test_loss=curve, train_loss=rng.random(n), test_loss_sem=rng.random(n) * 1e-3,
        arrays=awkward_arrays(rng, n), info={"seeds": 3, "wall_time_s": 0.125, "backend": "numba"},
        time=time, status=1, message="self-consistency residual = 2e-3 exceeds 1e-6; lower rtol",
        method="simulation",
    )
    loaded = Result.load(result.save(tmp_path / "r.npz"))
    assert_same_result(result, loaded)
    assert loaded.training == training and loaded.success is False
    # curves only: the same configuration and curves, no arrays
    light = Result.load(result.save(tmp_path / "light.npz", arrays=False))
    assert light.arrays == {}
    assert_same_result(result, Result.load(tmp_path / "r.npz"))
    assert_same_bits(light.test_loss, result.test_loss)
    assert (tmp_path / "light.npz").stat().st_size < 3000


def test_packing_is_chosen_from_the_bits_and_undone_exactly():
    rng = np.random.default_rng(0)
    arrays = awkward_arrays(rng, 9)
    expected = {"symmetric": "symmetric", "lower": "lower", "almost_lower": "full", "layers": "lower",
                "cross": "symmetric", "full": "full", "float32": "full", "counts": "full", "flags": "none",
                "names": "none", "curve": "full", "empty": "none"}
    for name, value in arrays.items():
        stored, layout = _pack(value)
        assert layout["packing"] == expected[name], name
        assert_same_bits(_unpack(stored, layout), value, name)


def test_a_deep_result_saves_in_less_than_half_its_size_and_loads_bit_exactly(tmp_path):
    """The order parameters of a deep solve (symmetric correlations, causal responses) are stored
    as triangles, which alone is (n + 1) / 2n = 0.506 of their bytes at n = 81 times; deflate of the
    byte-shuffled numbers takes off another 20-25 % (measured: 0.40 of the raw bytes here; a plain
    np.savez_compressed of the same arrays is 0.57). The bound 0.45 leaves room for the curves and
    the zip headers; the file loads bit-exactly."""
    result = dmft.solve(dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=2.0, noise=0.1),
                        dmft.GradientDescent(0.05, 80))
    path = result.save(tmp_path / "deep.npz")
    raw = sum(np.asarray(v).nbytes for v in result.arrays.values())
    assert path.stat().st_size < 0.45 * raw
    assert_same_result(result, Result.load(path))


def write_text(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda d: write_text(d / "notes.npz", "not an archive"), "not an .npz archive"),
        (lambda d: np.save(d / "array.npy", np.arange(3)) or d / "array.npy", "not an .npz archive"),
        (lambda d: np.savez(d / "foreign.npz", x=np.arange(3)) or d / "foreign.npz", "no 'config' entry"),
        (lambda d: np.savez(d / "garbage.npz", config=np.array("{not json")) or d / "garbage.npz", "JSONDecodeError"),
        (lambda d: np.savez(d / "other.npz", config=np.array('{"a": 1}')) or d / "other.npz",
         "not a dmft configuration"),
    ],
)
def test_loading_a_foreign_or_damaged_file_names_the_file_and_the_reason(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ValueError, match="is not a readable dmft result") as info:
        Result.load(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_loading_a_truncated_or_missing_file(tmp_path):
    result = Result(dmft.Linear(), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(0.1, 3),
                    test_loss=np.ones(4), train_loss=np.ones(4), arrays={"C": np.eye(4)})
    path = result.save(tmp_path / "whole.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        Result.load(truncated)
    # one member damaged inside an intact archive: the CRC check catches it
    damaged = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.npy":
                data = data[:-10] + b"0123456789"
            target.writestr(item, data)
    with pytest.raises(ValueError, match="damaged.npz"):
        Result.load(damaged)
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        Result.load(tmp_path / "nothere.npz")


def test_json_export_is_valid_json_with_null_for_nan():
    curve = np.array([1.0, np.nan, np.inf, 0.5])
    result = Result(dmft.DeepLinear(depth=math.inf, residual=True), dmft.GaussianData(alpha=2.0),
                    dmft.GradientDescent(0.1, 3), test_loss=curve, train_loss=np.ones(4),
                    info={"residual": np.float64(np.nan)})
    text = json.dumps(result.to_json(), allow_nan=False)  # raises on a bare NaN / Infinity
    payload = json.loads(text)
    assert payload["test_loss"] == [1.0, None, "inf", 0.5]
    assert payload["time"] == [0.0, 1.0, 2.0, 3.0] and payload["status"] == 0 and payload["message"] == "ok"
    assert payload["model"]["depth"] == "inf" and payload["info"]["residual"] is None
    assert json_safe({"a": (np.float32(2.5), -math.inf)}) == {"a": [2.5, "-inf"]}


def test_to_xarray_discrete_is_laid_out_like_a_sweep():
    result = dmft.solve(dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=2.0, noise=0.1),
                        dmft.GradientDescent(0.05, 12))
    ds = result.to_xarray()
    assert time_dimension(result.training) == "step"
    np.testing.assert_array_equal(ds["step"], np.arange(13))
    np.testing.assert_array_equal(ds["time"], result.time)
    np.testing.assert_array_equal(ds["test_loss"], result.test_loss)
    assert ds["C_v"].dims == ("step", "step_earlier")
    np.testing.assert_array_equal(ds["C_v"], result.arrays["C_v"])
    assert ds["C_h"].dims == ("C_h_dim0", "step", "step_earlier")  # (layer, later, earlier)
    assert ds["test_loss_bias"].dims == ("step",)
    assert json.loads(ds.attrs["config"])["training"]["steps"] == 12 and ds.attrs["status"] == 0
    # the same layout as a one-point sweep of the same configuration
    swept = dmft.sweep(result.model, result.data, result.training, use_cache=False, progress=False)
    np.testing.assert_array_equal(swept["test_loss"].values, ds["test_loss"].values)
    np.testing.assert_array_equal(swept["time"].values, ds["time"].values)
    assert swept["test_loss"].dims == ds["test_loss"].dims


def test_to_xarray_of_a_flow_has_time_as_its_axis():
    times = np.array([0.0, 0.5, 2.0, 10.0])
    per_seed = np.ones((3, 4))
    result = Result(dmft.Linear(), dmft.GaussianData(alpha=None), dmft.GradientFlow(10.0, save_at=tuple(times)),
                    test_loss=np.exp(-2 * times), train_loss=np.exp(-2 * times), time=times,
                    arrays={"C_v": np.exp(-np.add.outer(times, times)), "test_loss_per_seed": per_seed,
                            "spectrum": np.arange(5.0)})
    ds = result.to_xarray()
    assert time_dimension(result.training) == "time"
    np.testing.assert_array_equal(ds["time"], times)
    assert ds["test_loss"].dims == ("time",) and ds["C_v"].dims == ("time", "time_earlier")
    assert ds["test_loss_per_seed"].dims == ("test_loss_per_seed_dim0", "time")
    assert ds["spectrum"].dims == ("spectrum_dim0",)
    assert float(ds["test_loss"].sel(time=2.0)) == math.exp(-4.0)


def test_files_of_the_previous_format_still_load(tmp_path):
    """Files written before the packed layout (format 1: arrays stored as they are, no 'layout'
    entry, no status/message in the configuration) load unchanged."""
    config = {"model": {"type": "Linear"}, "data": {"type": "GaussianData", "alpha": 2.0, "noise": 0.0,
                                                    "spectrum": None, "teacher": None},
              "training": {"type": "GradientDescent", "learning_rate": 0.1, "steps": 2}, "method": "exact",
              "info": {"seconds": 0.5}}
    old = tmp_path / "old.npz"
    np.savez_compressed(old, config=np.array(json.dumps(config)), test_loss=np.array([1.0, 0.5, 0.25]),
                        train_loss=np.array([1.0, 0.4, 0.2]), **{"arrays/C_v": np.eye(3)})
    loaded = Result.load(old)
    assert loaded.status == 0 and loaded.message == "ok" and loaded.info == {"seconds": 0.5}
    assert loaded.training == dmft.GradientDescent(0.1, 2)
    np.testing.assert_array_equal(loaded.time, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(loaded.arrays["C_v"], np.eye(3))
