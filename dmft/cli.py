"""The ``dmft`` command line: ``dmft demo``, ``dmft solve``, ``dmft simulate``, ``dmft saxe``, ``dmft sweep``,
``dmft equilibrium``.

Every command can write its result as JSON (``--json FILE``) and a PNG figure (``--png FILE``).
Discrete training by default (``--learning-rate``, ``--steps``, ``--schedule``); gradient flow with
``--time`` (``--save-at``, ``--rtol``). ``--model boltzmann``: the spherical Boltzmann machine
trained by Langevin dynamics (:mod:`dmft.cli_boltzmann`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from ._cli_common import check_output_paths, run_command, write_json
from .result import time_dimension

__all__ = ["main", "build_configuration", "make_parser", "parse_schedule", "parse_times"]

DEFAULT_LEARNING_RATE = 0.05
DEFAULT_STEPS = 100


def _add_configuration_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=("linear", "deep", "diagonal", "boltzmann"), default="deep",
                       help="linear (depth 0), deep (deep linear network), diagonal, or boltzmann (spherical "
                            "Boltzmann machine, Langevin training: its own flags below)")
    model.add_argument("--depth", type=_depth, default=None,
                       help="hidden layers (deep, default 1; 'inf' for the residual infinite-depth limit) "
                            "or factors (diagonal, default 2)")
    model.add_argument("--width-ratio", type=float, default=None, help="deep: nu = N / D (default 1)")
    model.add_argument("--gamma0", type=float, default=None, help="deep: richness (default 1)")
    model.add_argument("--parameterization", choices=("mup", "ntk"), default=None, help="deep (default mup)")
    model.add_argument("--residual", action="store_true", help="deep: residual branches branch_scale/sqrt(depth)")
    model.add_argument("--branch-scale", type=float, default=None, help="deep, residual: beta0 (default 1)")
    model.add_argument("--init-scale", type=float, default=None, help="diagonal: a = b = init_scale (default 0.1)")
    data = parser.add_argument_group("data")
    data.add_argument("--alpha", type=float, default=None, help="P / D for full-batch GD (default 2)")
    data.add_argument("--noise", type=float, default=None, help="label-noise standard deviation (default 0)")
    data.add_argument("--power-law", type=float, nargs=2, metavar=("A", "B"), default=None,
                      help="power-law spectrum with capacity A and source B")
    data.add_argument("--modes", type=int, default=None, help="modes of the power-law spectrum (default 100)")
    data.add_argument("--sparse", type=float, default=None, metavar="DENSITY",
                      help="sparse teacher of this density (scale 1)")
    training = parser.add_argument_group(
        "training", "discrete steps (--learning-rate or --schedule, --steps) or gradient flow (--time)")
    training.add_argument("--learning-rate", type=float, default=None, help=f"default {DEFAULT_LEARNING_RATE}")
    training.add_argument("--steps", type=int, default=None, help=f"default {DEFAULT_STEPS}")
    training.add_argument("--schedule", type=str, default=None, metavar="SPEC",
                          help="a learning-rate schedule instead of --learning-rate (dmft.schedules): "
                               "warmup_cosine:PEAK[:WARMUP[:FINAL]], step_decay:RATE:EVERY[:FACTOR] "
                               "or constant:RATE")
    training.add_argument("--online", action="store_true",
                          help="online SGD (fresh batches) instead of full-batch GD; with --time the "
                               "population gradient flow")
    training.add_argument("--batch-ratio", type=float, default=None, help="online SGD batch size / D (default 1)")
    training.add_argument("--time", type=float, default=None,
                          help="gradient flow (dmft.GradientFlow) to this flow time = learning rate x steps")
    training.add_argument("--save-at", nargs="+", default=None, metavar="T",
                          help="gradient flow: report times, as numbers (0 1 10 100) or geom:START:STOP:COUNT "
                               "/ lin:START:STOP:COUNT (default: the solver's own grid)")
    training.add_argument("--rtol", type=float, default=None, help="gradient flow: relative accuracy (default 1e-4)")
    from .cli_boltzmann import add_boltzmann_arguments

    add_boltzmann_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--json", type=Path, default=None, help="write the result as JSON (NaN as null)")
    output.add_argument("--png", type=Path, default=None, help="write a figure of the curves")


def _depth(text: str) -> int | float:
    """``--depth``: an integer, or ``inf`` (the residual infinite-depth limit)."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'inf', got {text!r}") from None


# flags that only apply to some models / training rules: (flag, attribute, applies to)
_MODEL_FLAGS = {
    "--depth": ("depth", ("deep", "diagonal")),
    "--width-ratio": ("width_ratio", ("deep",)),
    "--gamma0": ("gamma0", ("deep",)),
    "--parameterization": ("parameterization", ("deep",)),
    "--branch-scale": ("branch_scale", ("deep",)),
    "--init-scale": ("init_scale", ("diagonal",)),
}
_DISCRETE_FLAGS = {"--learning-rate": "learning_rate", "--steps": "steps", "--schedule": "schedule",
                   "--batch-ratio": "batch_ratio"}
_FLOW_FLAGS = {"--save-at": "save_at", "--rtol": "rtol"}


def _given(args, attribute: str) -> bool:
    value = getattr(args, attribute)
    return value is not None and value is not False


def parse_schedule(spec: str, steps: int) -> np.ndarray:
    """``--schedule``: ``warmup_cosine:PEAK[:WARMUP[:FINAL]]``, ``step_decay:RATE:EVERY[:FACTOR]`` or
    ``constant:RATE`` -> the rates of :mod:`dmft.schedules` for ``steps`` steps."""
    from . import schedules

    name, _, rest = spec.partition(":")
    fields = [f for f in rest.split(":") if f] if rest else []
    forms = {
        "warmup_cosine": (schedules.warmup_cosine, ("peak", "warmup", "final"), 1, (float, int, float)),
        "step_decay": (schedules.step_decay, ("rate", "every", "factor"), 2, (float, int, float)),
        "constant": (schedules.constant, ("rate",), 1, (float,)),
    }
    if name not in forms:
        raise ValueError(f"--schedule {spec!r}: unknown schedule {name!r}; use one of {sorted(forms)}")
    function, names, required, types = forms[name]
    if not required <= len(fields) <= len(names):
        usage = ":".join(n.upper() if i < required else f"[{n.upper()}]" for i, n in enumerate(names))
        raise ValueError(f"--schedule {spec!r}: expected {name}:{usage}")
    try:
        numbers = [float(f) for f in fields]
    except ValueError:
        raise ValueError(f"--schedule {spec!r}: {', '.join(names)} must be numbers") from None
    values = {}
    for name_, number, kind in zip(names, numbers, types):
        if kind is int and number != int(number):
            raise ValueError(f"--schedule {spec!r}: {name_} must be a whole number of steps, got {number:g}")
        values[name_] = kind(number)
    return function(steps=steps, **values)


def parse_times(tokens: list[str]) -> tuple[float, ...]:
    """``--save-at``: numbers, or one ``geom:START:STOP:COUNT`` / ``lin:START:STOP:COUNT``."""
    if len(tokens) == 1 and tokens[0].split(":")[0] in ("geom", "lin"):
        kind, *fields = tokens[0].split(":")
        if len(fields) != 3:
            raise ValueError(f"--save-at {tokens[0]!r}: expected {kind}:START:STOP:COUNT")
        try:
            start, stop, count = float(fields[0]), float(fields[1]), int(fields[2])
        except ValueError:
            raise ValueError(f"--save-at {tokens[0]!r}: START and STOP must be numbers, COUNT an integer") from None
        if kind == "geom" and not (start > 0 and stop > 0):
            raise ValueError(f"--save-at {tokens[0]!r}: a geometric grid needs START, STOP > 0")
        if count < 2:
            raise ValueError(f"--save-at {tokens[0]!r}: COUNT must be at least 2")
        times = np.geomspace(start, stop, count) if kind == "geom" else np.linspace(start, stop, count)
        return tuple(float(t) for t in times)
    try:
        return tuple(float(t) for t in tokens)
    except ValueError:
        raise ValueError(f"--save-at: expected numbers or geom:/lin:START:STOP:COUNT, got {' '.join(tokens)!r}") from None


def build_configuration(args: argparse.Namespace):
    """``(model, data, training)`` from parsed command-line arguments.

    Raises ``ValueError`` for a flag that does not apply to the chosen model or training rule
    (rather than silently ignoring it).
    """
    import dmft

    from .cli_boltzmann import build_boltzmann, refuse_boltzmann_flags

    if args.model == "boltzmann":
        network = {flag: attribute for flag, (attribute, _) in _MODEL_FLAGS.items()}
        network.update({"--residual": "residual", "--alpha": "alpha", "--noise": "noise", "--power-law": "power_law",
                        "--modes": "modes", "--sparse": "sparse", "--online": "online", **_DISCRETE_FLAGS})
        return build_boltzmann(args, network)
    refuse_boltzmann_flags(args)
    for flag, (attribute, models) in {**_MODEL_FLAGS, "--residual": ("residual", ("deep",))}.items():
        if _given(args, attribute) and args.model not in models:
            raise ValueError(f"{flag} does not apply to --model {args.model}")
    if args.branch_scale is not None and not args.residual:
        raise ValueError("--branch-scale needs --residual (it scales the residual branches)")
    if args.modes is not None and args.power_law is None:
        raise ValueError("--modes needs --power-law")
    if args.online and args.alpha is not None:
        raise ValueError("--alpha is the size of a fixed data set; --online draws fresh batches (use --batch-ratio)")
    flow = args.time is not None
    if flow:
        for flag, attribute in _DISCRETE_FLAGS.items():
            if _given(args, attribute):
                raise ValueError(f"{flag} does not apply to gradient flow (--time)")
    else:
        for flag, attribute in _FLOW_FLAGS.items():
            if _given(args, attribute):
                raise ValueError(f"{flag} needs --time (gradient flow)")
        if not args.online and args.batch_ratio is not None:
            raise ValueError("--batch-ratio needs --online")
        if args.schedule is not None and args.learning_rate is not None:
            raise ValueError("give either --learning-rate or --schedule (which sets the rate of every step)")

    def value(attribute, default):
        given = getattr(args, attribute)
        return default if given is None else given

    if args.model == "linear":
        model = dmft.Linear()
    elif args.model == "diagonal":
        model = dmft.DiagonalLinear(depth=value("depth", 2), init_scale=value("init_scale", 0.1))
    else:
        model = dmft.DeepLinear(
            depth=value("depth", 1), width_ratio=value("width_ratio", 1.0), gamma0=value("gamma0", 1.0),
            parameterization=value("parameterization", "mup"), residual=args.residual,
            branch_scale=value("branch_scale", 1.0),
        )
    spectrum = None if args.power_law is None else dmft.PowerLaw(*args.power_law, modes=value("modes", 100))
    teacher = None if args.sparse is None else dmft.SparseTeacher(density=args.sparse)
    data = dmft.GaussianData(alpha=None if args.online else value("alpha", 2.0), noise=value("noise", 0.0),
                             spectrum=spectrum, teacher=teacher)
    if flow:
        options = {} if args.rtol is None else {"rtol": args.rtol}
        save_at = None if args.save_at is None else parse_times(args.save_at)
        training = dmft.GradientFlow(args.time, save_at=save_at, **options)
    else:
        steps = value("steps", DEFAULT_STEPS)
        rate = (value("learning_rate", DEFAULT_LEARNING_RATE) if args.schedule is None
                else parse_schedule(args.schedule, steps))
        if args.online:
            training = dmft.OnlineSGD(rate, steps, batch_ratio=value("batch_ratio", 1.0))
        else:
            training = dmft.GradientDescent(rate, steps)
    return model, data, training


def _write_outputs(args, results, title: str) -> None:
    """JSON of the first result (a comparison curve, if any, under the key ``"dmft"``) and a figure
    of all of them."""
    if args.json is not None:
        payload = results[0].to_json()
        if len(results) > 1:
            payload["dmft"] = results[1].to_json()
        write_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plotting import plot_losses

        ax = plot_losses(results)
        ax.set_title(title, fontsize=7)
        ax.figure.set_size_inches(5.5, 4.2)
        ax.figure.tight_layout()
        ax.figure.savefig(args.png, dpi=130)
        plt.close("all")
        print(f"wrote {args.png}")


def _cell(value: float, sem) -> str:
    if sem is None:
        return f"{value:.6g}"
    return f"{value:.6g} +- {sem:.2g}"


def _print_table(results) -> None:
    """The curves at four times; ``+- sem`` where a result has standard errors (simulations, Monte
    Carlo solvers). The first column is the step (discrete) or the flow time."""
    reference = results[0]
    last = len(reference.time) - 1
    rows = sorted({0, last // 4, last // 2, last})
    discrete = time_dimension(reference.training) == "step"
    label = "step" if discrete else "time"
    columns = []
    for r in results:
        name = r.method if r.method != "simulation" else f"simulation D={r.info.get('dim')}"
        columns += [f"{name} test", f"{name} train"]
    width = max(26, *(len(c) + 2 for c in columns))
    print(f"{label:>10} " + "".join(f"{c:>{width}}" for c in columns))
    for row in rows:
        line = f"{int(reference.time[row]) if discrete else reference.time[row]:>10.6g} "
        for r in results:
            for kind in ("test", "train"):
                sem = getattr(r, f"{kind}_loss_sem")
                line += f"{_cell(getattr(r, f'{kind}_loss')[row], None if sem is None else sem[row]):>{width}}"
        print(line)
    for r in results:
        if not r.success:
            print(f"warning ({r.method}): {r.message}")


def _title(model, data, training, extra: str = "") -> str:
    from .plotting import describe

    return describe(model, data, training, extra=extra, width=80)


def _command_solve(args) -> int:
    import dmft

    model, data, training = build_configuration(args)
    check_output_paths(json=args.json, png=args.png)
    result = dmft.solve(model, data, training)
    _report(args, [result], _title(model, data, training))
    return 0


def _report(args, results, title: str) -> None:
    """The table on stdout, then the JSON and PNG files (the Boltzmann machine's own table and figure)."""
    from .boltzmann import SphericalBoltzmann

    if isinstance(results[0].model, SphericalBoltzmann):
        from .cli_boltzmann import boltzmann_json, print_boltzmann_table, write_boltzmann_figure

        print_boltzmann_table(results)
        if args.json is not None:
            payload = boltzmann_json(results[0])
            if len(results) > 1:
                payload["dmft"] = boltzmann_json(results[1])
            write_json(args.json, payload)
            print(f"wrote {args.json}")
        if args.png is not None:
            write_boltzmann_figure(args.png, results, title)
        return
    _print_table(results)
    _write_outputs(args, results, title)


def _command_simulate(args) -> int:
    import finite_size

    import dmft

    model, data, training = build_configuration(args)
    check_output_paths(json=args.json, png=args.png)
    results = []
    if not args.no_dmft:
        try:
            results.append(dmft.solve(model, data, training))
        except dmft.UnsupportedError as error:
            print(f"(no D -> infinity curve to compare with: {error})")
    options = {name: getattr(args, name) for name in ("step", "spectrum") if getattr(args, name) is not None}
    simulation = finite_size.simulate(model, data, training, dim=args.dim, seeds=args.seeds,
                                      backend=args.backend, seed=args.seed, progress=args.progress, **options)
    results.insert(0, simulation)
    size = "N" if args.model == "boltzmann" else "D"
    _report(args, results, _title(model, data, training, extra=f"{size}={args.dim}, {args.seeds} seeds"))
    return 0


def _command_saxe(args) -> int:
    from . import saxe

    check_output_paths(json=args.json, png=args.png)
    learning_times = [float(saxe.learning_time(s, args.u0, args.fraction * s, depth=args.depth, tau=args.tau))
                      for s in args.s]
    end = args.time
    if end is None:  # the window shows every mode being learned: 1.5 x the slowest learning time
        end = 1.5 * max(learning_times)
    times = np.linspace(0.0, end, args.points)
    strengths = np.stack([saxe.mode_strength(s, args.u0, times, depth=args.depth, tau=args.tau)
                          for s in args.s])
    print(f"depth {args.depth}, tau {args.tau}, u0 {args.u0}; times 0 .. {end:.6g}")
    for s, t_learn in zip(args.s, learning_times):
        note = "" if t_learn <= end else "  (after the end of the window)"
        print(f"  s = {s:<8g} time to reach {args.fraction:g} s: {t_learn:.6g}{note}")
    if args.json is not None:
        write_json(args.json, {
            "s": list(args.s), "u0": args.u0, "depth": args.depth, "tau": args.tau,
            "time": times, "mode_strength": strengths,
            "learning_time": learning_times, "fraction": args.fraction,
        })
        print(f"wrote {args.json}")
    if args.png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.6))
        for s, curve, t_learn in zip(args.s, strengths, learning_times):
            line, = ax.plot(times, curve, label=f"s = {s:g}")
            if t_learn <= end:
                ax.axvline(t_learn, color=line.get_color(), lw=0.8, ls=":")
        ax.set_xlabel("time t"); ax.set_ylabel("mode strength u(t)")
        ax.set_title(f"Saxe et al. 2014, depth {args.depth}, u0 = {args.u0:g}\n"
                     f"(dotted: time to reach {args.fraction:g} s)", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout(); fig.savefig(args.png, dpi=130); plt.close(fig)
        print(f"wrote {args.png}")
    return 0


def _command_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out, quick=args.quick, progress=not args.quiet)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmft", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="solve, simulate and compare; writes a figure and a table")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for demo.png and demo.json")
    demo.add_argument("--quick", action="store_true", help="smaller simulations (for tests)")
    demo.add_argument("--quiet", action="store_true", help="no progress messages")
    demo.set_defaults(run=_command_demo)

    solve = commands.add_parser("solve", help="the D -> infinity curves (DMFT or exact)")
    _add_configuration_arguments(solve)
    solve.set_defaults(run=_command_solve)

    simulate = commands.add_parser("simulate", help="train finite networks, many seeds at once; compare with the DMFT")
    _add_configuration_arguments(simulate)
    simulate.add_argument("--dim", type=int, default=400, help="input dimension D (--model boltzmann: N)")
    simulate.add_argument("--seeds", type=int, default=8)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    simulate.add_argument("--progress", action="store_true")
    from .cli_boltzmann import positive_float

    simulate.add_argument("--step", type=positive_float, default=None,
                          help="--model boltzmann: Langevin time step (default 0.05 / max(nu, 1))")
    simulate.add_argument("--spectrum", choices=("all", "final", "none"), default=None,
                          help="--model boltzmann: diagonalise the couplings at all report times (default), "
                               "the final one, or never")
    simulate.add_argument("--no-dmft", action="store_true",
                          help="do not solve the D -> infinity curves (by default they are printed and drawn too)")
    simulate.set_defaults(run=_command_simulate)

    saxe = commands.add_parser("saxe", help="Saxe et al. (2014) exact mode dynamics")
    saxe.add_argument("--s", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="singular values")
    saxe.add_argument("--u0", type=float, default=1e-3, help="initial mode strength")
    saxe.add_argument("--depth", type=int, default=1, help="hidden layers (depth + 1 weight matrices)")
    saxe.add_argument("--tau", type=float, default=1.0, help="time constant (1 / learning rate)")
    saxe.add_argument("--time", type=float, default=None,
                      help="final time (default: 1.5 x the slowest mode's learning time)")
    saxe.add_argument("--points", type=int, default=200)
    saxe.add_argument("--fraction", type=float, default=0.9, help="learning time = reaching this fraction of s")
    saxe.add_argument("--json", type=Path, default=None)
    saxe.add_argument("--png", type=Path, default=None)
    saxe.set_defaults(run=_command_saxe)

    from .cli_boltzmann import add_equilibrium_command
    from .cli_sweep import add_sweep_command

    add_sweep_command(commands)
    add_equilibrium_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
