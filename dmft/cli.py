"""The ``dmft`` command line: ``dmft demo``, ``dmft solve``, ``dmft simulate``, ``dmft saxe``, ``dmft sweep``.

Every command can write its result as JSON (``--json FILE``) and a PNG figure (``--png FILE``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_configuration"]


def _add_configuration_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=("linear", "deep", "diagonal"), default="deep",
                       help="linear (depth 0), deep (deep linear network) or diagonal")
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
    data.add_argument("--noise", type=float, default=0.0, help="label-noise standard deviation")
    data.add_argument("--power-law", type=float, nargs=2, metavar=("A", "B"), default=None,
                      help="power-law spectrum with capacity A and source B")
    data.add_argument("--modes", type=int, default=None, help="modes of the power-law spectrum (default 100)")
    data.add_argument("--sparse", type=float, default=None, metavar="DENSITY",
                      help="sparse teacher of this density (scale 1)")
    training = parser.add_argument_group("training")
    training.add_argument("--learning-rate", type=float, default=0.05)
    training.add_argument("--steps", type=int, default=100)
    training.add_argument("--online", action="store_true", help="online SGD instead of full-batch GD")
    training.add_argument("--batch-ratio", type=float, default=None, help="online SGD batch size / D (default 1)")
    output = parser.add_argument_group("output")
    output.add_argument("--json", type=Path, default=None, help="write the result as JSON")
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


def _given(args, attribute: str) -> bool:
    value = getattr(args, attribute)
    return value is not None and value is not False


def build_configuration(args: argparse.Namespace):
    """``(model, data, training)`` from parsed command-line arguments.

    Raises ``ValueError`` for a flag that does not apply to the chosen model or training rule
    (rather than silently ignoring it).
    """
    import dmft

    for flag, (attribute, models) in {**_MODEL_FLAGS, "--residual": ("residual", ("deep",))}.items():
        if _given(args, attribute) and args.model not in models:
            raise ValueError(f"{flag} does not apply to --model {args.model}")
    if args.branch_scale is not None and not args.residual:
        raise ValueError("--branch-scale needs --residual")
    if args.modes is not None and args.power_law is None:
        raise ValueError("--modes needs --power-law")
    if args.online and args.alpha is not None:
        raise ValueError("--alpha is the size of a fixed data set; --online draws fresh batches (use --batch-ratio)")
    if not args.online and args.batch_ratio is not None:
        raise ValueError("--batch-ratio needs --online")

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
    data = dmft.GaussianData(alpha=None if args.online else value("alpha", 2.0), noise=args.noise,
                             spectrum=spectrum, teacher=teacher)
    if args.online:
        training = dmft.OnlineSGD(args.learning_rate, args.steps, batch_ratio=value("batch_ratio", 1.0))
    else:
        training = dmft.GradientDescent(args.learning_rate, args.steps)
    return model, data, training


def _write_outputs(args, results, title: str) -> None:
    if args.json is not None:
        payload = [r.to_json() for r in results]
        args.json.write_text(json.dumps(payload[0] if len(payload) == 1 else payload, indent=1))
        print(f"wrote {args.json}")
    if args.png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plotting import plot_losses

        ax = plot_losses(results)
        ax.set_title(title, fontsize=8)
        plt.tight_layout()
        plt.savefig(args.png, dpi=130)
        plt.close("all")
        print(f"wrote {args.png}")


def _print_table(results) -> None:
    steps = len(results[0].test_loss) - 1
    rows = sorted({0, steps // 4, steps // 2, steps})
    header = "step " + "".join(f"{r.method + ' test':>18}{r.method + ' train':>18}" for r in results)
    print(header)
    for step in rows:
        line = f"{step:>4} "
        for r in results:
            line += f"{r.test_loss[step]:>18.6g}{r.train_loss[step]:>18.6g}"
        print(line)


def _command_solve(args) -> int:
    import dmft

    model, data, training = build_configuration(args)
    result = dmft.solve(model, data, training)
    _print_table([result])
    _write_outputs(args, [result], f"{model}\n{data}\n{training}")
    return 0


def _command_simulate(args) -> int:
    import finite_size

    model, data, training = build_configuration(args)
    result = finite_size.simulate(model, data, training, dim=args.dim, seeds=args.seeds,
                                  backend=args.backend, seed=args.seed, progress=args.progress)
    _print_table([result])
    _write_outputs(args, [result], f"{model}\n{data}\n{training}\nD={args.dim}, {args.seeds} seeds")
    return 0


def _command_saxe(args) -> int:
    from . import saxe

    times = np.linspace(0.0, args.time, args.points)
    strengths = np.stack([saxe.mode_strength(s, args.u0, times, depth=args.depth, tau=args.tau)
                          for s in args.s])
    learning_times = [saxe.learning_time(s, args.u0, args.fraction * s, depth=args.depth, tau=args.tau)
                      for s in args.s]
    print(f"depth {args.depth}, tau {args.tau}, u0 {args.u0}")
    for s, t_learn in zip(args.s, learning_times):
        print(f"  s = {s:<8g} time to reach {args.fraction:g} s: {t_learn:.6g}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "s": list(args.s), "u0": args.u0, "depth": args.depth, "tau": args.tau,
            "time": times.tolist(), "mode_strength": strengths.tolist(),
            "learning_time": learning_times, "fraction": args.fraction,
        }, indent=1))
        print(f"wrote {args.json}")
    if args.png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.6))
        for s, curve in zip(args.s, strengths):
            ax.plot(times, curve, label=f"s = {s:g}")
        ax.set_xlabel("time t"); ax.set_ylabel("mode strength u(t)")
        ax.set_title(f"Saxe et al. 2014, depth {args.depth}", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout(); fig.savefig(args.png, dpi=130); plt.close(fig)
        print(f"wrote {args.png}")
    return 0


def _command_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out, quick=args.quick)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmft", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="solve, simulate and compare; writes a figure and a table")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for demo.png and demo.json")
    demo.add_argument("--quick", action="store_true", help="smaller simulations (for tests)")
    demo.set_defaults(run=_command_demo)

    solve = commands.add_parser("solve", help="the D -> infinity curves (DMFT or exact)")
    _add_configuration_arguments(solve)
    solve.set_defaults(run=_command_solve)

    simulate = commands.add_parser("simulate", help="train finite networks, many seeds at once")
    _add_configuration_arguments(simulate)
    simulate.add_argument("--dim", type=int, default=400, help="input dimension D")
    simulate.add_argument("--seeds", type=int, default=8)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    simulate.add_argument("--progress", action="store_true")
    simulate.set_defaults(run=_command_simulate)

    saxe = commands.add_parser("saxe", help="Saxe et al. (2014) exact mode dynamics")
    saxe.add_argument("--s", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="singular values")
    saxe.add_argument("--u0", type=float, default=1e-3, help="initial mode strength")
    saxe.add_argument("--depth", type=int, default=1, help="hidden layers (depth + 1 weight matrices)")
    saxe.add_argument("--tau", type=float, default=1.0, help="time constant (1 / learning rate)")
    saxe.add_argument("--time", type=float, default=10.0, help="final time")
    saxe.add_argument("--points", type=int, default=200)
    saxe.add_argument("--fraction", type=float, default=0.9, help="learning time = reaching this fraction of s")
    saxe.add_argument("--json", type=Path, default=None)
    saxe.add_argument("--png", type=Path, default=None)
    saxe.set_defaults(run=_command_saxe)

    from .cli_sweep import add_sweep_command

    add_sweep_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FloatingPointError) as error:
        print(f"dmft {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
