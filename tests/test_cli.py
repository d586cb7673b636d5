"""The command line: every command runs, writes JSON and PNG, and reports bad input clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dmft
from dmft.cli import main


def test_demo_quick_writes_figure_and_agrees(tmp_path, capsys):
    """``dmft demo --quick``: simulations at D = 200-1000 against exact / DMFT curves. Every
    statistical gap is within 5 combined standard errors (about 90 rows: a 5-sigma excursion has
    probability ~5e-5 in all); the deterministic Saxe rows are within the O(eta) Euler error,
    2 % of s at eta = 0.01 (measured 1.6 %)."""
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    table = json.loads((tmp_path / "demo.json").read_text())
    columns = table["columns"]
    for row in table["rows"]:
        entry = dict(zip(columns, row))
        if entry["panel"] == "a":
            assert abs(entry["gap"]) <= 0.02 * 3.0
        else:
            assert abs(entry["gap_over_sem"]) <= 5.0, entry
    assert "gap/sem" in capsys.readouterr().out


def test_solve_and_simulate_write_json_and_png(tmp_path):
    solved, simulated = tmp_path / "solve.json", tmp_path / "simulate.json"
    assert main(["solve", "--depth", "2", "--steps", "10", "--json", str(solved), "--png", str(tmp_path / "s.png")]) == 0
    assert main(["simulate", "--depth", "2", "--steps", "10", "--dim", "40", "--seeds", "2",
                 "--json", str(simulated), "--png", str(tmp_path / "m.png")]) == 0
    result = json.loads(solved.read_text())
    expected = dmft.solve(dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(0.05, 10))
    np.testing.assert_array_equal(result["test_loss"], expected.test_loss)
    assert json.loads(simulated.read_text())["info"]["dim"] == 40
    assert (tmp_path / "s.png").exists() and (tmp_path / "m.png").exists()


def test_saxe_command(tmp_path):
    out = tmp_path / "saxe.json"
    assert main(["saxe", "--s", "2", "--u0", "0.01", "--depth", "3", "--json", str(out), "--png", str(tmp_path / "x.png")]) == 0
    payload = json.loads(out.read_text())
    expected = dmft.saxe.mode_strength(2.0, 0.01, np.asarray(payload["time"]), depth=3)
    np.testing.assert_allclose(payload["mode_strength"][0], expected, rtol=1e-12)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["solve", "--depth", "2", "--learning-rate", "5", "--steps", "50"], "at step 2; lower `learning_rate` (got 5)"),
        (["solve", "--width-ratio", "-1"], "`width_ratio` must be positive"),
        (["simulate", "--dim", "0"], "`dim` must be >= 1"),
        (["solve", "--model", "diagonal", "--depth", "0", "--alpha", "0.5"], "`depth` must be >= 1"),
        (["solve", "--model", "diagonal", "--depth", "inf", "--alpha", "0.5"], "`depth` must be an integer"),
        (["solve", "--depth", "2.7"], "argument --depth: must be an integer or 'inf'"),
        (["solve", "--model", "linear", "--depth", "3"], "--depth does not apply to --model linear"),
        (["solve", "--model", "diagonal", "--width-ratio", "3"], "--width-ratio does not apply"),
        (["solve", "--modes", "10"], "--modes needs --power-law"),
        (["solve", "--online", "--alpha", "2"], "--online draws fresh batches"),
        (["solve", "--batch-ratio", "2"], "--batch-ratio needs --online"),
        (["solve", "--branch-scale", "2"], "--branch-scale needs --residual"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys):
    """Bad values and flags that do not apply to the chosen model are errors, never ignored."""
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse rejects malformed values itself
        code = exit_info.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "solve", "simulate", "saxe", "sweep"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: dmft" in capsys.readouterr().out
