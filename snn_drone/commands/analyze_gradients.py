"""`snn-drone analyze-gradients`: paper Fig. 1, gradient magnitude and direction against the slope k."""
from __future__ import annotations

import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze-gradients",
        help="surrogate-slope analysis of paper Fig. 1: per-layer gradient magnitude and cosine similarity",
        description="Build a spiking network of four LIF layers of 64 neurons, feed it many random "
                    "inputs (x ~ N(0, I), held for --steps time steps) with random targets (U(-1, 1), "
                    "MSE loss), and for each surrogate slope k in {1, 2, 5, 10, 25, 50, 100} compute "
                    "every sample's weight gradient. Per layer it reports the mean |dL/dW| and the "
                    "cosine similarity to the k = 100 gradient (averaged over samples), prints a table "
                    "and writes gradient_analysis.csv and gradient_analysis.png to --out.")
    p.add_argument("--out", default="runs/gradient_analysis", help="output folder (default: %(default)s)")
    p.add_argument("--samples", type=int, default=1024, help="random input/target pairs (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2,
                   help="time steps per input, as in the paper's script (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the network and the data (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from snn_drone.core.snn.gradient_analysis import (GradientAnalysisConfig, analyze, format_table, plot,
                                                  write_csv)

    cfg = GradientAnalysisConfig(samples=args.samples, steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    rows = analyze(cfg)
    out = Path(args.out)
    csv_path = write_csv(rows, out / "gradient_analysis.csv")
    png = plot(rows, out / "gradient_analysis.png",
               title=f"4 x 64 LIF, {cfg.samples} random inputs held {cfg.steps} steps, seed {cfg.seed}")
    print(format_table(rows))
    print(f"\nlayers: fc0 (input) ... fc{len(cfg.hidden) - 1}, readout; cos = cosine similarity to the "
          f"k = {cfg.reference_slope:g} gradient ({time.perf_counter() - t0:.1f} s)")
    print(f"csv: {csv_path}\npng: {png}")
    return 0
