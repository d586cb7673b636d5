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

    def reject(constant):  # strict JSON: no bare NaN / Infinity
        raise AssertionError(f"bare {constant} in demo.json")

    table = json.loads((tmp_path / "demo.json").read_text(), parse_constant=reject)
    columns = table["columns"]
    for row in table["rows"]:
        entry = dict(zip(columns, row))
        if entry["panel"] == "a":
            assert abs(entry["gap"]) <= 0.02 * 3.0
            assert entry["sem"] is None and entry["gap_over_sem"] is None  # deterministic: no error bar
        else:
            assert abs(entry["gap_over_sem"]) <= 5.0, entry
    captured = capsys.readouterr()
    assert "gap/sem" in captured.out and "nan" not in captured.out
    # progress: every stage is announced and timed on stderr
    assert captured.err.count(" done in ") == 10 and "[10/10]" in captured.err


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


# --------------------------------------------------------------------------- outputs, titles, tables


def test_output_folders_are_checked_before_anything_runs(tmp_path, monkeypatch, capsys):
    """A missing output folder is an error naming the flag, and the solve never starts."""
    def never(*args, **kwargs):  # pragma: no cover - must not run
        raise AssertionError("solved before checking the output paths")

    monkeypatch.setattr(dmft, "solve", never)
    missing = tmp_path / "no-such-folder"
    for argv, flag in ((["solve", "--json", str(missing / "r.json")], "--json"),
                       (["solve", "--png", str(missing / "r.png")], "--png"),
                       (["simulate", "--png", str(missing / "m.png"), "--dim", "10"], "--png"),
                       (["saxe", "--json", str(missing / "s.json")], "--json"),
                       (["solve", "--json", str(tmp_path)], "--json")):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"dmft {argv[0]}: error: {flag}"), error
    assert not missing.exists()


def capture_figures(monkeypatch):
    """Record every figure the command line saves (its axes' titles, lines and labels)."""
    import matplotlib.figure

    saved = []
    original = matplotlib.figure.Figure.savefig

    def savefig(figure, *args, **kwargs):
        saved.append([(ax.get_title(), [line.get_label() for line in ax.get_lines()], ax.get_xlim(),
                       ax.get_xscale()) for ax in figure.axes])
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return saved


def test_png_title_is_the_readable_configuration(tmp_path, monkeypatch):
    saved = capture_figures(monkeypatch)
    argv = ["solve", "--depth", "3", "--alpha", "1.5", "--noise", "0.1", "--power-law", "1.5", "0.5", "--modes", "20",
            "--steps", "5", "--png", str(tmp_path / "t.png")]
    assert main(argv) == 0
    (title, _, _, _), = saved[0]
    lines = title.splitlines()
    assert 2 <= len(lines) <= 4 and max(len(line) for line in lines) <= 80, title
    text = " ".join(lines)
    for part in ("DeepLinear(depth=3,", "alpha=1.5", "noise=0.1", "PowerLaw(a=1.5, b=0.5, modes=20)",
                 "GradientDescent(learning_rate=0.05, steps=5)"):
        assert part in text, (part, title)
    assert "..." not in text and "<" not in text


def test_simulate_overlays_the_dmft_and_prints_error_bars(tmp_path, monkeypatch, capsys):
    saved = capture_figures(monkeypatch)
    out = tmp_path / "sim.json"
    assert main(["simulate", "--depth", "2", "--steps", "8", "--dim", "30", "--seeds", "3",
                 "--json", str(out), "--png", str(tmp_path / "sim.png")]) == 0
    table = capsys.readouterr().out
    assert "simulation D=30 test" in table and "dmft test" in table
    assert table.count("+-") == 8  # test and train of the simulation at 4 rows; the DMFT has none
    payload = json.loads(out.read_text())
    expected = dmft.solve(dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(0.05, 8))
    np.testing.assert_array_equal(payload["dmft"]["test_loss"], expected.test_loss)
    assert payload["method"] == "simulation" and payload["info"]["dim"] == 30
    (_, labels, _, _), = saved[0]
    assert "DMFT, test" in labels and "DMFT, train" in labels
    assert main(["simulate", "--depth", "2", "--steps", "8", "--dim", "30", "--seeds", "3", "--no-dmft"]) == 0
    assert "dmft test" not in capsys.readouterr().out


def test_the_diagonal_solver_table_has_error_bars(capsys):
    assert main(["solve", "--model", "diagonal", "--alpha", "0.5", "--sparse", "0.2", "--steps", "8"]) == 0
    table = capsys.readouterr().out
    assert table.count("+-") == 8, table  # Monte Carlo error of test and train at 4 rows


def test_saxe_window_follows_the_learning_times(tmp_path, monkeypatch, capsys):
    """The default window is 1.5 x the slowest printed learning time (not a fixed t = 10)."""
    saved = capture_figures(monkeypatch)
    out = tmp_path / "saxe.json"
    assert main(["saxe", "--s", "1", "2", "4", "--u0", "0.001", "--depth", "3", "--json", str(out),
                 "--png", str(tmp_path / "saxe.png")]) == 0
    payload = json.loads(out.read_text())
    slowest = max(payload["learning_time"])
    expected = dmft.saxe.learning_time(1.0, 1e-3, 0.9, depth=3)
    assert slowest == pytest.approx(expected, rel=1e-12) and slowest > 10
    assert payload["time"][-1] == pytest.approx(1.5 * slowest, rel=1e-12)
    assert f"{slowest:.6g}" in capsys.readouterr().out
    (_, _, xlim, _), = saved[0]
    assert xlim[1] >= 1.5 * slowest
    # the curves reach 0.9 s inside the window
    assert np.all(np.asarray(payload["mode_strength"])[:, -1] > 0.9 * np.array([1, 2, 4]))
    assert main(["saxe", "--s", "2", "--time", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["time"][-1] == 3.0


def test_every_json_output_is_strict_json(tmp_path):
    """JSON has no NaN: parse_constant rejects NaN / Infinity (the deterministic Saxe rows of the
    demo write null; see test_demo_quick_writes_figure_and_agrees)."""
    def reject(constant):
        raise AssertionError(f"bare {constant} in JSON")

    for argv in (["solve", "--depth", "inf", "--residual", "--steps", "4"],
                 ["saxe", "--s", "2"],
                 ["simulate", "--model", "linear", "--dim", "20", "--seeds", "2", "--steps", "3"]):
        out = tmp_path / f"{argv[0]}.json"
        assert main([*argv, "--json", str(out)]) == 0
        payload = json.loads(out.read_text(), parse_constant=reject)
    assert payload["model"] == {"type": "Linear"}


# --------------------------------------------------------------------------- time: flows and schedules


def parse(argv):
    from dmft.cli import build_configuration, make_parser

    return build_configuration(make_parser().parse_args(["solve", *argv]))


def test_gradient_flow_and_schedule_flags_build_the_configuration():
    _, data, training = parse(["--time", "1e4", "--save-at", "geom:1:1e4:5", "--rtol", "1e-6"])
    assert training == dmft.GradientFlow(1e4, save_at=tuple(np.geomspace(1, 1e4, 5)), rtol=1e-6)
    assert data.alpha == 2.0
    _, data, training = parse(["--time", "10", "--save-at", "0", "2.5", "10", "--online"])
    assert training == dmft.GradientFlow(10.0, save_at=(0.0, 2.5, 10.0)) and data.alpha is None
    assert parse(["--time", "8", "--save-at", "lin:0:8:5"])[2].save_at == (0.0, 2.0, 4.0, 6.0, 8.0)
    _, _, training = parse(["--schedule", "warmup_cosine:0.1:10", "--steps", "50"])
    np.testing.assert_array_equal(training.rates, dmft.schedules.warmup_cosine(0.1, 50, warmup=10))
    _, _, training = parse(["--schedule", "step_decay:0.2:10:0.5", "--steps", "30", "--online"])
    assert isinstance(training, dmft.OnlineSGD)
    np.testing.assert_array_equal(training.rates, dmft.schedules.step_decay(0.2, 30, every=10, factor=0.5))
    assert parse(["--schedule", "constant:0.05", "--steps", "4"])[2] == dmft.GradientDescent((0.05,) * 4, 4)
    assert parse([])[2] == dmft.GradientDescent(0.05, 100)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["solve", "--time", "10", "--steps", "5"], "--steps does not apply to gradient flow (--time)"),
        (["solve", "--time", "10", "--learning-rate", "0.1"], "--learning-rate does not apply to gradient flow"),
        (["solve", "--time", "10", "--online", "--batch-ratio", "2"], "--batch-ratio does not apply to gradient flow"),
        (["solve", "--save-at", "1", "2"], "--save-at needs --time"),
        (["solve", "--rtol", "1e-3"], "--rtol needs --time"),
        (["solve", "--time", "-1"], "`time` must be positive"),
        (["solve", "--time", "10", "--save-at", "5", "1"], "`save_at` must be strictly increasing"),
        (["solve", "--time", "10", "--save-at", "1", "20"], "`save_at` must lie within [0, time]"),
        (["solve", "--time", "10", "--save-at", "geom:0:10:5"], "a geometric grid needs START, STOP > 0"),
        (["solve", "--time", "10", "--save-at", "geom:1:10"], "expected geom:START:STOP:COUNT"),
        (["solve", "--time", "10", "--save-at", "one", "two"], "--save-at: expected numbers"),
        (["solve", "--schedule", "cosine:0.1"], "unknown schedule 'cosine'"),
        (["solve", "--schedule", "warmup_cosine:0.1:2.5"], "warmup must be a whole number of steps"),
        (["solve", "--schedule", "step_decay:0.1"], "expected step_decay:RATE:EVERY:[FACTOR]"),
        (["solve", "--schedule", "constant:0.1", "--learning-rate", "0.1"], "either --learning-rate or --schedule"),
        (["solve", "--schedule", "warmup_cosine:0.1:100", "--steps", "50"], "`warmup` must be smaller than `steps`"),
    ],
)
def test_bad_time_flags_are_clear_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_solve_with_time_is_a_flow_or_a_clean_unsupported_error(tmp_path, capsys):
    """The command line passes the GradientFlow to dmft.solve unchanged: where a solver for the flow
    exists the JSON carries its times and curves; where none does (yet), the error is the solver
    registry's UnsupportedError, printed on one line with exit status 2."""
    out = tmp_path / "flow.json"
    argv = ["solve", "--model", "linear", "--online", "--time", "4", "--save-at", "0", "1", "4", "--json", str(out)]
    training = dmft.GradientFlow(4.0, save_at=(0.0, 1.0, 4.0))
    try:
        expected = dmft.solve(dmft.Linear(), dmft.GaussianData(alpha=None), training)
    except dmft.UnsupportedError as error:
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"dmft solve: error: {error}"
        assert not out.exists()
        return
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["time"] == [0.0, 1.0, 4.0] and payload["training"]["type"] == "GradientFlow"
    np.testing.assert_array_equal(payload["test_loss"], expected.test_loss)
    assert "time" in capsys.readouterr().out.splitlines()[0]


def test_branch_scale_without_residual_is_an_error_in_the_api_too():
    with pytest.raises(ValueError, match="`branch_scale` scales the residual branches: it needs residual=True"):
        dmft.DeepLinear(depth=2, branch_scale=2.0)
    assert dmft.DeepLinear(depth=2, residual=True, branch_scale=2.0).branch_multiplier == 2.0 / 2**0.5
    dmft.DeepLinear(depth=2, branch_scale=1.0)  # the default is no statement: accepted
