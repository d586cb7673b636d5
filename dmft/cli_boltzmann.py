"""The spherical Boltzmann machine on the command line (issue 12; docs/spherical.md).

``dmft solve --model boltzmann ...`` (the large-N DMFT of Langevin training), ``dmft simulate
--model boltzmann ...`` (finite-N Langevin training, the DMFT overlaid) and ``dmft equilibrium ...``
(the ``t -> infinity`` state by random-matrix theory; with ``--over`` a phase diagram over one or two
parameters). :mod:`dmft.cli` adds the flags and calls this module; nothing here imports it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ._cli_common import check_output_paths, write_json

__all__ = ["boltzmann_json", "add_boltzmann_arguments", "build_boltzmann", "BOLTZMANN_FLAGS", "add_equilibrium_command",
           "print_boltzmann_table", "write_boltzmann_figure", "positive_float", "positive_or_inf"]

# flag -> attribute of the flags that only a spherical Boltzmann machine takes
BOLTZMANN_FLAGS = {
    "--beta": "beta", "--eigenvalues": "eigenvalues", "--teacher-strength": "teacher_strength",
    "--samples": "samples", "--prior-precision": "prior_precision", "--likelihood-weight": "likelihood_weight",
    "--chain-speed": "chain_speed", "--initial-overlaps": "initial_overlaps",
}
SIMULATION_FLAGS = {"--step": "step", "--spectrum": "spectrum"}
DEFAULT_TIME = 100.0


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def positive_or_inf(text: str) -> float:
    """argparse type: a number > 0, or ``inf``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or 'inf', got {text!r}") from None
    if not value > 0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number > 0 or 'inf', got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _add_model_flags(group) -> None:
    group.add_argument("--beta", type=positive_float, default=None,
                       help="inverse temperature of the chain and of generation (default 1)")
    group.add_argument("--eigenvalues", type=float, nargs="+", default=None, metavar="C",
                       help="data covariance eigenvalues c_1 >= ... >= c_K (summing to K) instead of a teacher")
    group.add_argument("--teacher-strength", type=positive_float, default=None, metavar="OMEGA",
                       help="spiked teacher strength omega* > 1 (default 2; data drawn from it)")
    group.add_argument("--samples", type=_positive_int, default=None, metavar="K",
                       help="teacher samples K (default 2)")
    group.add_argument("--prior-precision", type=positive_float, default=None, metavar="GAMMA",
                       help="Gaussian prior precision gamma (L2; default 1)")
    group.add_argument("--likelihood-weight", type=positive_or_inf, default=None, metavar="ETA",
                       help="likelihood weight eta ('inf': MAP; default 10)")


def add_boltzmann_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--model boltzmann`` flags of ``dmft solve`` / ``dmft simulate`` (``--time``, ``--save-at``
    and ``--rtol`` are shared with gradient flow)."""
    group = parser.add_argument_group(
        "spherical Boltzmann machine (--model boltzmann; --time default 100, --save-at, --rtol as for flows)")
    _add_model_flags(group)
    group.add_argument("--chain-speed", type=positive_or_inf, default=None, metavar="NU",
                       help="speed of the persistent sampling chain ('inf': equilibrium negative phase; default 1)")
    group.add_argument("--initial-overlaps", type=float, nargs="+", default=None, metavar="S",
                       help="s_a(0), one per data direction (default sqrt(c_a / K))")


def _data(args):
    import dmft

    if args.eigenvalues is not None and (args.teacher_strength is not None or args.samples is not None):
        raise ValueError("give either --eigenvalues (a data covariance) or --teacher-strength / --samples (a spiked teacher)")
    if args.eigenvalues is not None:
        return dmft.DataCovariance(eigenvalues=tuple(args.eigenvalues))
    return dmft.SpikedTeacher(strength=2.0 if args.teacher_strength is None else args.teacher_strength,
                              samples=2 if args.samples is None else args.samples)


def build_boltzmann(args, network_flags: dict) -> tuple:
    """``(model, data, training)`` of ``--model boltzmann``. ``network_flags``: flag -> attribute of the
    flags that only networks take (refused here, naming the flag)."""
    import dmft

    for flag, attribute in network_flags.items():
        value = getattr(args, attribute, None)
        if value is not None and value is not False:
            raise ValueError(f"{flag} does not apply to --model boltzmann")
    model = dmft.SphericalBoltzmann(inverse_temperature=1.0 if args.beta is None else args.beta)
    data = _data(args)
    from .cli import parse_times

    options = {}
    for attribute in ("prior_precision", "likelihood_weight", "chain_speed", "rtol"):
        if getattr(args, attribute) is not None:
            options[attribute] = getattr(args, attribute)
    if args.initial_overlaps is not None:
        options["initial_overlaps"] = tuple(args.initial_overlaps)
    time = DEFAULT_TIME if args.time is None else args.time
    save_at = None if args.save_at is None else parse_times(args.save_at)
    training = dmft.Langevin(time=time, save_at=save_at, **options)
    training.start(data)  # one initial overlap per data direction: checked before anything runs
    return model, data, training


def refuse_boltzmann_flags(args) -> None:
    """Raise naming the first Boltzmann-only flag given to a network."""
    for flag, attribute in {**BOLTZMANN_FLAGS, **SIMULATION_FLAGS}.items():
        if getattr(args, attribute, None) is not None:
            raise ValueError(f"{flag} applies to --model boltzmann only (a spherical Boltzmann machine)")


# --------------------------------------------------------------------------- printing and figures


def _curve(result, name):
    """``(values, sem or None)`` of a learning curve: ``test_loss`` / ``train_loss`` or an array."""
    if name in ("test_loss", "train_loss"):
        return np.asarray(getattr(result, name)), getattr(result, f"{name}_sem")
    value = result.arrays.get(name)
    if value is None:
        return None, None
    return np.asarray(value, dtype=float), result.arrays.get(f"{name}_sem")


def _loss_name(data) -> str:
    from .boltzmann import SpikedTeacher

    return "forward KL" if isinstance(data, SpikedTeacher) else "training NLL"


JSON_ARRAY_LIMIT = 1_000_000
"""Arrays of a result larger than this many numbers stay out of the CLI's JSON (``Result.save`` keeps all)."""


def boltzmann_json(result) -> dict:
    """``result.to_json()`` plus ``arrays``: the learning curves users look at (``top_eigenvalue``,
    ``top_overlap``, ``reverse_kl``, ``forward_kl``, ``multiplier``, ``s``, ... and their ``*_sem``),
    the two-time ``Q``, ``R`` and the simulator's per-seed arrays, each up to
    :data:`JSON_ARRAY_LIMIT` numbers (JSON-safe: NaN as null)."""
    from .result import json_safe

    payload = result.to_json()
    payload["arrays"] = {name: json_safe(np.asarray(value)) for name, value in result.arrays.items()
                         if np.size(value) <= JSON_ARRAY_LIMIT}
    return payload


def print_boltzmann_table(results) -> None:
    """Top eigenvalue, its overlap with the top data direction and the loss (forward KL from the
    teacher, else the training NLL) at four report times, ``+- sem`` for simulations."""
    reference = results[0]
    last = len(reference.time) - 1
    rows = sorted({0, last // 4, last // 2, last})
    names = (("top_eigenvalue", "lambda_1"), ("top_overlap", "overlap"), ("test_loss", _loss_name(reference.data)))
    columns = []
    for r in results:
        label = r.method if r.method != "simulation" else f"N={r.info.get('dim', r.info.get('N'))}"
        columns += [f"{label} {short}" for _, short in names]
    width = max(22, *(len(c) + 2 for c in columns))
    print(f"{'time':>10} " + "".join(f"{c:>{width}}" for c in columns))
    for row in rows:
        line = f"{reference.time[row]:>10.6g} "
        for r in results:
            j = int(np.argmin(np.abs(np.asarray(r.time) - reference.time[row])))
            for name, _ in names:
                values, sem = _curve(r, name)
                if values is None:
                    line += f"{'-':>{width}}"
                    continue
                cell = f"{values[j]:.6g}" if sem is None else f"{values[j]:.6g} +- {np.asarray(sem)[j]:.2g}"
                line += f"{cell:>{width}}"
        print(line)
    for r in results:
        if not r.success:
            print(f"warning ({r.method}): {r.message}")


def write_boltzmann_figure(path: Path, results, title: str) -> None:
    """Two panels against time: the top eigenvalue of the couplings and its squared overlap with the
    top data direction; the loss (forward KL or training NLL). Simulations as points with error bars,
    the DMFT as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    twin = left.twinx()
    for r in results:
        simulated = r.method == "simulation"
        label = f"simulation N={r.info.get('dim', r.info.get('N'))}" if simulated else r.method
        for ax, name, color in ((left, "top_eigenvalue", "C0"), (twin, "top_overlap", "C1"), (right, "test_loss", "C2")):
            values, sem = _curve(r, name)
            if values is None:
                continue
            if simulated:
                ax.errorbar(r.time, values, yerr=None if sem is None else sem, fmt="o", ms=3, color=color,
                            alpha=0.7, label=f"{name} ({label})")
            else:
                ax.plot(r.time, values, "-", color=color, lw=1.5, label=f"{name} ({label})")
    left.set_xlabel("time t"); left.set_ylabel("top eigenvalue lambda_1", color="C0")
    twin.set_ylabel("overlap (v_1 . e_1)^2", color="C1")
    right.set_xlabel("time t"); right.set_ylabel(_loss_name(results[0].data))
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")


# --------------------------------------------------------------------------- dmft equilibrium


def _over_values(tokens: list[str]) -> tuple[str, list[float]]:
    """``--over NAME VALUES...``: values as numbers or one ``geom:`` / ``lin:START:STOP:COUNT``."""
    from .boltzmann_equilibrium import SWEEPABLE
    from .cli import parse_times

    if len(tokens) < 2:
        raise ValueError(f"--over {' '.join(tokens)!r}: expected NAME VALUES... (e.g. --over training.prior_precision geom:0.05:5:200)")
    name, values = tokens[0], tokens[1:]
    if name not in SWEEPABLE or name in ("data.eigenvalues",):
        allowed = [s for s in SWEEPABLE if s != "data.eigenvalues"]
        raise ValueError(f"--over {name!r}: the equilibrium can be swept over {allowed}")
    try:
        numbers = parse_times(values)
    except ValueError as error:
        raise ValueError(str(error).replace("--save-at", f"--over {name}")) from None
    if name == "data.samples":
        if any(v != int(v) for v in numbers):
            raise ValueError(f"--over data.samples: values must be whole numbers, got {values}")
        return name, [int(v) for v in numbers]
    return name, list(numbers)


def _command_equilibrium(args) -> int:
    import dmft

    from .boltzmann_equilibrium import PHASES, equilibrium, phase_diagram

    check_output_paths(json=args.json, png=args.png)
    model = dmft.SphericalBoltzmann(inverse_temperature=1.0 if args.beta is None else args.beta)
    data = _data(args)
    options = {a: getattr(args, a) for a in ("prior_precision", "likelihood_weight") if getattr(args, a) is not None}
    training = dmft.Langevin(**options)
    if not args.over:
        if args.png is not None:
            raise ValueError("--png draws a phase diagram: give --over NAME VALUES (one or two parameters)")
        state = equilibrium(model, data, training)
        print(repr(state))
        for name in ("phase", "condensed_modes", "bulk_edge", "top_eigenvalue", "top_overlap", "multiplier",
                     "condensed_fraction", "log_evidence", "train_loss", "reverse_kl", "forward_kl"):
            value = getattr(state, name)
            if value is not None:
                print(f"  {name:<20} {value:.6g}" if isinstance(value, float) else f"  {name:<20} {value}")
        print(f"  {'mode_eigenvalue':<20} {np.array2string(state.mode_eigenvalue, precision=5)}")
        print(f"  {'mode_overlap':<20} {np.array2string(state.mode_overlap, precision=5)}")
        if args.json is not None:
            write_json(args.json, state.to_dict())
            print(f"wrote {args.json}")
        return 0
    if len(args.over) > 2:
        raise ValueError(f"--over: at most two parameters (a phase diagram in a plane), got {len(args.over)}")
    over = dict(_over_values(tokens) for tokens in args.over)
    if len(over) != len(args.over):
        raise ValueError("--over: the same parameter twice")
    ds = phase_diagram(model, data, training, over)
    dims = [name.split(".")[1] for name in over]
    phases = ds["phase"].values
    counts = {p: int(np.sum(phases == i)) for i, p in enumerate(PHASES)}
    print(f"phase diagram over {' x '.join(f'{d} ({ds.sizes[d]})' for d in dims)}: "
          + ", ".join(f"{p} {n}" for p, n in counts.items())
          + f"; condensed modes {int(ds['condensed_modes'].min())} .. {int(ds['condensed_modes'].max())}")
    if args.json is not None:
        write_json(args.json, ds.to_dict(data="list"))
        print(f"wrote {args.json}")
    if args.png is not None:
        _phase_figure(ds, dims, args.png, data)
    return 0


def _phase_figure(ds, dims, path: Path, data) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .boltzmann_equilibrium import PHASES

    loss = "reverse_kl" if "reverse_kl" in ds else "train_loss"
    if len(dims) == 1:
        x = ds[dims[0]].values
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
        for ax, name in zip(axes, ("condensed_modes", "top_overlap", loss)):
            ax.plot(x, ds[name].values, "-")
            ax.set_xlabel(dims[0]); ax.set_ylabel(name)
            if np.all(x > 0) and x.max() / x.min() > 20:
                ax.set_xscale("log")
    else:
        x, y = ds[dims[1]].values, ds[dims[0]].values
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        for ax, name in zip(axes, ("condensed_modes", loss)):
            values = ds[name].transpose(dims[0], dims[1]).values
            mesh = ax.pcolormesh(x, y, values, shading="auto")
            fig.colorbar(mesh, ax=ax, label=name)
            ax.contour(x, y, ds["phase"].transpose(dims[0], dims[1]).values, levels=[0.5, 1.5], colors="w",
                       linewidths=0.8)
            ax.set_xlabel(dims[1]); ax.set_ylabel(dims[0])
            if np.all(x > 0) and x.max() / x.min() > 20:
                ax.set_xscale("log")
            if np.all(y > 0) and y.max() / y.min() > 20:
                ax.set_yscale("log")
        axes[0].set_title(f"white: phase boundaries ({' | '.join(PHASES)})", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    print(f"wrote {path}")


def add_equilibrium_command(commands) -> argparse.ArgumentParser:
    """``dmft equilibrium``: the RMT state, or with ``--over`` a phase diagram."""
    parser = commands.add_parser(
        "equilibrium",
        help="spherical Boltzmann machine: the t -> infinity state by random-matrix theory (--over: phase diagram)",
        description="The equilibrium of Langevin-trained spherical Boltzmann machines (dmft.boltzmann_equilibrium): "
                    "phase, condensed modes, outliers and overlaps, log-evidence, KL. With --over, a phase "
                    "diagram over one or two parameters (JSON of the Dataset; PNG of the condensed modes and the KL).")
    group = parser.add_argument_group("configuration")
    _add_model_flags(group)
    parser.add_argument("--over", nargs="+", action="append", default=None, metavar="ARG",
                        help="NAME VALUES...: sweep NAME (model.inverse_temperature, training.prior_precision, "
                             "training.likelihood_weight, data.strength, data.samples) over numbers or "
                             "geom:START:STOP:COUNT / lin:START:STOP:COUNT; at most twice")
    parser.add_argument("--json", type=Path, default=None, help="write the state (or the phase diagram) as JSON")
    parser.add_argument("--png", type=Path, default=None, help="write the phase diagram (needs --over)")
    parser.set_defaults(run=_command_equilibrium)
    return parser
