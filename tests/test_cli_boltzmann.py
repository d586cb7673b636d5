"""The spherical Boltzmann machine through the command line, sweeps and finite_size.simulate (issue 12).

Every check compares with the library call the command stands for (same configuration, same seed:
equal to the last bit, as the same code runs), so no tolerance is needed; the sizes are tiny.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import dmft
import finite_size
from dmft.boltzmann_equilibrium import equilibrium, phase_diagram
from dmft.cli import main
from finite_size.boltzmann import simulate_boltzmann

ROOT = Path(__file__).resolve().parents[1]
MODEL = dmft.SphericalBoltzmann(inverse_temperature=1.0)
TEACHER = dmft.SpikedTeacher(strength=4.0, samples=2)
TRAINING = dmft.Langevin(time=4.0, prior_precision=0.5, save_at=(0.0, 1.0, 2.0, 4.0))
FLAGS = ["--model", "boltzmann", "--teacher-strength", "4", "--samples", "2", "--prior-precision", "0.5",
         "--time", "4", "--save-at", "0", "1", "2", "4"]


def _strict(path: Path) -> dict:
    def reject(constant):
        raise AssertionError(f"bare {constant} in {path.name}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_solve_boltzmann_writes_the_dmft_result(tmp_path, capsys):
    out = tmp_path / "solve.json"
    assert main(["solve", *FLAGS, "--json", str(out), "--png", str(tmp_path / "s.png")]) == 0
    payload = _strict(out)
    expected = dmft.solve(MODEL, TEACHER, TRAINING)
    np.testing.assert_array_equal(payload["time"], expected.time)
    np.testing.assert_array_equal(payload["test_loss"], expected.test_loss)
    np.testing.assert_array_equal(payload["arrays"]["top_overlap"], expected.arrays["top_overlap"])
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert "forward KL" in capsys.readouterr().out


def test_solve_boltzmann_chain_speed_inf_and_eigenvalues(tmp_path):
    """``inf`` is accepted (equilibrium negative phase, MAP), and --eigenvalues builds a DataCovariance."""
    out = tmp_path / "solve.json"
    assert main(["solve", "--model", "boltzmann", "--eigenvalues", "1.5", "0.5", "--chain-speed", "inf",
                 "--likelihood-weight", "inf", "--time", "2", "--save-at", "lin:0:2:3", "--json", str(out)]) == 0
    training = dmft.Langevin(time=2.0, chain_speed=math.inf, likelihood_weight=math.inf, save_at=(0.0, 1.0, 2.0))
    expected = dmft.solve(MODEL, dmft.DataCovariance(eigenvalues=(1.5, 0.5)), training)
    np.testing.assert_array_equal(_strict(out)["test_loss"], expected.test_loss)


def test_simulate_boltzmann_overlays_the_dmft(tmp_path):
    out = tmp_path / "simulate.json"
    assert main(["simulate", *FLAGS, "--dim", "40", "--seeds", "2", "--step", "0.1", "--spectrum", "final",
                 "--json", str(out), "--png", str(tmp_path / "m.png")]) == 0
    payload = _strict(out)
    expected = simulate_boltzmann(MODEL, TEACHER, TRAINING, dim=40, seeds=2, step=0.1, spectrum="final")
    np.testing.assert_array_equal(np.asarray(payload["train_loss"], dtype=float), expected.train_loss)
    assert payload["arrays"]["top_overlap"][:-1] == [None] * 3  # spectrum="final": NaN before the end
    np.testing.assert_array_equal(payload["dmft"]["test_loss"], dmft.solve(MODEL, TEACHER, TRAINING).test_loss)
    assert (tmp_path / "m.png").stat().st_size > 10_000


def test_equilibrium_command_state_and_phase_diagram(tmp_path, capsys):
    state, diagram = tmp_path / "eq.json", tmp_path / "pd.json"
    flags = ["--teacher-strength", "3", "--samples", "3"]
    assert main(["equilibrium", *flags, "--prior-precision", "0.5", "--json", str(state)]) == 0
    expected = equilibrium(MODEL, dmft.SpikedTeacher(3.0, 3), dmft.Langevin(prior_precision=0.5))
    payload = _strict(state)
    assert payload["phase"] == expected.phase and payload["condensed_modes"] == expected.condensed_modes
    assert payload["log_evidence"] == expected.log_evidence
    assert "condensed_modes" in capsys.readouterr().out
    assert main(["equilibrium", *flags, "--over", "training.prior_precision", "geom:0.05:5:5",
                 "--over", "model.inverse_temperature", "1", "2", "--json", str(diagram),
                 "--png", str(tmp_path / "pd.png")]) == 0
    ds = phase_diagram(MODEL, dmft.SpikedTeacher(3.0, 3), dmft.Langevin(),
                       over={"training.prior_precision": list(np.geomspace(0.05, 5, 5)),
                             "model.inverse_temperature": [1.0, 2.0]})
    np.testing.assert_array_equal(_strict(diagram)["data_vars"]["condensed_modes"]["data"], ds["condensed_modes"].values)
    assert (tmp_path / "pd.png").stat().st_size > 10_000
    # one parameter: curves against it
    assert main(["equilibrium", "--over", "data.strength", "1.5", "2", "4", "--png", str(tmp_path / "one.png")]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "--model", "boltzmann", "--alpha", "2"], "--alpha does not apply to --model boltzmann"),
        (["solve", "--model", "boltzmann", "--steps", "5"], "--steps does not apply to --model boltzmann"),
        (["solve", "--model", "boltzmann", "--depth", "2"], "--depth does not apply to --model boltzmann"),
        (["solve", "--model", "boltzmann", "--noise", "0.1"], "--noise does not apply"),
        (["solve", "--beta", "2"], "--beta applies to --model boltzmann only"),
        (["solve", "--model", "linear", "--chain-speed", "inf"], "--chain-speed applies to --model boltzmann only"),
        (["simulate", "--model", "linear", "--step", "0.1", "--dim", "8"], "--step applies to --model boltzmann only"),
        (["solve", "--model", "boltzmann", "--eigenvalues", "3", "1"], "`eigenvalues` must sum to K = 2"),
        (["solve", "--model", "boltzmann", "--eigenvalues", "1", "1", "--samples", "2"], "give either --eigenvalues"),
        (["solve", "--model", "boltzmann", "--teacher-strength", "0.5"], "strength"),
        (["solve", "--model", "boltzmann", "--initial-overlaps", "0.1"], "`initial_overlaps` needs one overlap per data direction"),
        (["solve", "--model", "boltzmann", "--save-at", "0", "200"], "save_at"),
        (["equilibrium", "--png", "x.png"], "--png draws a phase diagram"),
        (["equilibrium", "--over", "training.time", "1", "2"], "--over 'training.time'"),
        (["equilibrium", "--over", "data.samples", "1.5", "2"], "whole numbers"),
        (["equilibrium", "--over", "training.prior_precision", "geom:0:1:3"], "--over training.prior_precision"),
        (["equilibrium", "--over", "training.prior_precision", "1", "2", "--over", "training.prior_precision", "3"],
         "the same parameter twice"),
    ],
)
def test_bad_boltzmann_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "--model", "boltzmann", "--chain-speed", "0"], "argument --chain-speed: must be a number > 0 or 'inf'"),
        (["solve", "--model", "boltzmann", "--prior-precision", "-1"], "argument --prior-precision: must be a finite number > 0"),
        (["solve", "--model", "boltzmann", "--beta", "inf"], "argument --beta: must be a finite number > 0"),
        (["solve", "--model", "boltzmann", "--likelihood-weight", "nan"], "argument --likelihood-weight"),
        (["solve", "--model", "boltzmann", "--samples", "0"], "argument --samples: must be at least 1"),
        (["simulate", "--model", "boltzmann", "--spectrum", "some"], "argument --spectrum: invalid choice"),
        (["simulate", "--model", "boltzmann", "--step", "-0.1"], "argument --step"),
        (["equilibrium", "--beta", "0"], "argument --beta"),
    ],
)
def test_bad_boltzmann_numbers_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_simulate_dispatch_passes_boltzmann_options_and_refuses_network_ones():
    expected = simulate_boltzmann(MODEL, TEACHER, TRAINING, dim=30, seeds=2, seed=3, step=0.2, spectrum="none")
    result = finite_size.simulate(MODEL, TEACHER, TRAINING, dim=30, seeds=2, seed=3, step=0.2, spectrum="none")
    np.testing.assert_array_equal(result.train_loss, expected.train_loss)
    assert "eigenvalues" not in result.arrays  # spectrum="none" reached the simulator
    with pytest.raises(ValueError, match="`snapshot_every` is for networks"):
        finite_size.simulate(MODEL, TEACHER, TRAINING, dim=30, snapshot_every=1)
    with pytest.raises(ValueError, match="`record_hidden` is for deep networks"):
        finite_size.simulate(MODEL, TEACHER, TRAINING, dim=30, record_hidden=True)
    network = (dmft.Linear(), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(0.05, 2))
    with pytest.raises(ValueError, match="`step` .* applies to dmft.SphericalBoltzmann only"):
        finite_size.simulate(*network, dim=8, step=0.1)
    with pytest.raises(ValueError, match="`spectrum` .* applies to dmft.SphericalBoltzmann only"):
        finite_size.simulate(*network, dim=8, spectrum="all")


def test_sweep_over_boltzmann_configurations(tmp_path):
    """Time axis = save_at, status, the Boltzmann curves next to the losses, the cache on a second
    run, and the base configuration as JSON."""
    over = {"training.prior_precision": [0.5, 1.0], "model.inverse_temperature": [1.0, 2.0]}
    ds = dmft.sweep(MODEL, TEACHER, TRAINING, over=over, cache=tmp_path, progress=False)
    np.testing.assert_array_equal(ds["time"].values, TRAINING.save_at)
    assert (ds["status"].values == "ok").all() and ds.attrs["points_computed"] == 4
    point = dmft.solve(dmft.SphericalBoltzmann(inverse_temperature=2.0), TEACHER, TRAINING.replace(prior_precision=1.0))
    np.testing.assert_array_equal(ds["top_overlap"].sel(prior_precision=1.0, inverse_temperature=2.0).values,
                                  point.arrays["top_overlap"])
    np.testing.assert_array_equal(ds["test_loss"].sel(prior_precision=1.0, inverse_temperature=2.0).values, point.test_loss)
    again = dmft.sweep(MODEL, TEACHER, TRAINING, over=over, cache=tmp_path, progress=False)
    assert again.attrs["points_cached"] == 4 and again.attrs["points_computed"] == 0
    np.testing.assert_array_equal(again["top_overlap"].values, ds["top_overlap"].values)
    base = json.loads(ds.attrs["base_config"])
    assert base["model"]["type"] == "SphericalBoltzmann" and base["training"]["type"] == "Langevin"
    with pytest.raises(ValueError, match="a sweep over Langevin needs common report times"):
        dmft.sweep(MODEL, TEACHER, TRAINING.replace(save_at=None), over=over, use_cache=False, progress=False)
    with pytest.raises(TypeError, match="`training` must be dmft.Langevin"):
        dmft.sweep(MODEL, TEACHER, dmft.GradientFlow(1.0, save_at=(0.0, 1.0)), over={"model.inverse_temperature": [1.0]},
                   use_cache=False, progress=False)


def test_sweep_command_with_a_boltzmann_toml(tmp_path):
    from dmft.cli_sweep import load_sweep_config

    example = load_sweep_config(ROOT / "examples" / "boltzmann_sweep.toml")  # the shipped example parses
    assert isinstance(example.model, dmft.SphericalBoltzmann) and isinstance(example.training, dmft.Langevin)
    config = tmp_path / "b.toml"
    config.write_text(
        '[model]\ntype = "SphericalBoltzmann"\n[data]\nstrength = 4.0\nsamples = 2\n'
        '[training]\ntime = 2.0\nchain_speed = inf\nsave_at = [0.0, 1.0, 2.0]\n'
        '[over]\n"training.prior_precision" = [0.5, 1.0]\n'
        '[[figures]]\nkind = "curves"\nvariable = "top_overlap"\nlogy = false\nfile = "o.png"\n'
    )
    assert main(["sweep", str(config), "--out", str(tmp_path / "b.nc"), "--no-cache", "--quiet"]) == 0
    assert (tmp_path / "o.png").exists()
    import xarray as xr

    with xr.open_dataset(tmp_path / "b.nc") as ds:
        assert ds.sizes["prior_precision"] == 2 and "top_overlap" in ds
    config.write_text('[model]\ntype = "SphericalBoltzmann"\n[data]\nalpha = 2.0\ntype = "GaussianData"\n'
                      '[over]\n"training.prior_precision" = [0.5]\n')
    assert main(["sweep", str(config), "--no-cache", "--quiet"]) == 2


def test_top_outlier_search_landing_on_the_pole():
    """Regression: at gamma = 0.5 (omega* = 4, K = 2, beta = 1) the secant search of the top outlier
    landed exactly on the pole of the data resolvent (a singular system, formerly an uncaught
    LinAlgError). The top eigenvalue at t = 50 must lie between its values at gamma = 0.4 and 0.6
    (it decreases with the precision: the outliers sit at c_a / gamma + ...)."""
    times = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
    top = [dmft.solve(MODEL, TEACHER, dmft.Langevin(time=50.0, prior_precision=g, save_at=times)).arrays["top_eigenvalue"][-1]
           for g in (0.4, 0.5, 0.6)]
    assert top[0] > top[1] > top[2]
