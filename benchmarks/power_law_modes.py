"""Evidence for the normalisation of dmft.PowerLaw (docs/power_law.md, "Normalisation"). Prints, measured
in this run, for power laws a = 3, b = 0.5 with M modes:

1. depth 0, the population flow (dmft.Linear, GradientFlow, alpha=None): the loss at t = 1, 10, 100, 1000
   and the stability bound of online SGD (infinite batch, 2 / lambda_1), with the top eigenvalue
   normalised to 1 (this package) and with the mean eigenvalue normalised to 1 (earlier versions,
   lambda_1 = M / H_M(a));
2. depth 1, muP, infinite width, online SGD (batch 100 D, an eighth of the lazy edge of stability
   2 / ((L + 1) lambda_1) as the rate, T steps): the loss at step T, lazy (gamma0 = 0.01) and rich
   (gamma0 = 5), under both normalisations (DMFT; equal shares, so M stays small).

Top normalisation: curves, learning rates and richness have a limit as M grows. Mean normalisation:
lambda_1 grows like M / zeta(a), so at fixed times the curves move with M (every time scale shrinks
like 1 / lambda_1), and at the same fraction of the stability bound the lazy curves agree with the top
normalisation's but the rich ones do not (the same gamma0 means less feature learning as M grows).

Run: python benchmarks/power_law_modes.py [--steps 60] [--modes 20 40 80 160]
"""

from __future__ import annotations

import argparse

import numpy as np

import dmft


def mean_normalised(power_law: dmft.PowerLaw) -> dmft.Spectrum:
    """The spectrum of earlier versions: ``mean(lambda) = 1`` and ``mean(lambda b) = 1``."""
    top = power_law.resolve(exact=True)
    eigenvalues = np.asarray(top.eigenvalues)
    scale = 1.0 / eigenvalues.mean()
    signal = eigenvalues * np.asarray(top.teacher_variances)  # mean 1 already
    return dmft.Spectrum(eigenvalues=scale * eigenvalues, teacher_variances=signal / (scale * eigenvalues))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=float, default=3.0)
    parser.add_argument("--b", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--modes", type=int, nargs="+", default=[20, 40, 80, 160])
    args = parser.parse_args()
    linear = dmft.Linear()
    times = (1.0, 10.0, 100.0, 1000.0)
    print(f"1. depth 0, population flow, a = {args.a}, b = {args.b}: L(t)")
    print(f"{'M':>10} {'normalised':>10} {'lambda_1':>10} " + " ".join(f"{'t = ' + format(t, 'g'):>11}" for t in times))
    for modes in [*args.modes, 10**5, 10**9]:
        power_law = dmft.PowerLaw(a=args.a, b=args.b, modes=modes)
        spectra = {"top": power_law}
        if modes <= 10**5:
            spectra["mean"] = mean_normalised(power_law)
        for name, spectrum in spectra.items():
            top = float(np.max(spectrum.resolve().eigenvalues))
            result = dmft.solve(linear, dmft.GaussianData(alpha=None, spectrum=spectrum),
                                dmft.GradientFlow(time=times[-1], save_at=times))
            print(f"{modes:>10} {name:>10} {top:>10.4g} " + " ".join(f"{v:>11.5g}" for v in result.test_loss))

    depth = 1
    print(f"\n2. depth {depth}, muP, width ratio 1e10, online SGD batch 100 D, rate 0.25 / ((L + 1) lambda_1), "
          f"loss at step {args.steps}")
    print(f"{'M':>6} {'normalised':>10} {'rate':>10} {'lazy':>11} {'rich':>11} {'lazy / rich':>11}")
    for modes in args.modes:
        power_law = dmft.PowerLaw(a=args.a, b=args.b, modes=modes)
        for name, spectrum in (("top", power_law), ("mean", mean_normalised(power_law))):
            top = float(np.max(spectrum.resolve().eigenvalues))
            rate = 0.25 / ((depth + 1) * top)
            training = dmft.OnlineSGD(learning_rate=rate, steps=args.steps, batch_ratio=100.0)
            data = dmft.GaussianData(alpha=None, spectrum=spectrum)
            losses = [
                dmft.solve(dmft.DeepLinear(depth=depth, width_ratio=1e10, gamma0=g), data, training,
                           self_consistency=False).test_loss[-1]
                for g in (0.01, 5.0)
            ]
            print(f"{modes:>6} {name:>10} {rate:>10.4g} {losses[0]:>11.5g} {losses[1]:>11.5g} "
                  f"{losses[0] / losses[1]:>11.4g}")
    zeta = sum(k ** -args.a for k in range(1, 100_000))
    print(f"\n(mean normalisation: lambda_1 = M / H_M(a) -> M / zeta(a), zeta({args.a:g}) = {zeta:.4f}; "
          "top: lambda_1 = 1 at every M)")


if __name__ == "__main__":
    main()
