"""`snn-drone summarize RUN_DIR...`: one table row per training run, from its metrics.jsonl."""
from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("summarize", help="table of training runs: final and best return, steps to a return, time",
                       description="Read runs/<name>/metrics.jsonl of each run folder and print one markdown row "
                                   "per run: final and best evaluation return (end-of-curriculum reward), the "
                                   "epoch, gradient updates and wall time at which evaluation first reached each "
                                   "--threshold, and the run's total time.")
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl)")
    p.add_argument("--threshold", type=float, action="append", default=None,
                   help="evaluation return to time (repeatable; default 100 and 400)")
    p.set_defaults(func=run)


def summarize_run(path: Path, thresholds: list[float]) -> dict:
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval_return" in r]
    if not evals:
        raise ValueError(f"{path}: no evaluation in metrics.jsonl yet")
    best = max(evals, key=lambda r: r["eval_return"])
    out = {"run": path.name, "final": evals[-1]["eval_return"], "final_std": evals[-1]["eval_return_std"],
           "best": best["eval_return"], "best_epoch": best["epoch"], "epochs": rows[-1]["epoch"],
           "updates": rows[-1]["updates"], "wall_s": rows[-1]["wall_s"],
           "crash": evals[-1].get("eval_crash_rate", float("nan"))}
    for th in thresholds:
        hit = next((r for r in evals if r["eval_return"] >= th), None)
        out[f"to_{th:g}"] = (hit["epoch"], hit["updates"], hit["wall_s"]) if hit else None
    return out


def run(args) -> int:
    thresholds = args.threshold or [100.0, 400.0]
    head = ["run", "final return", "best (epoch)", "final crash rate"] + [f"first >= {t:g}: epoch / updates / min" for t in thresholds] + ["epochs", "updates", "min"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in args.runs:
        s = summarize_run(Path(r), thresholds)
        cells = [s["run"], f"{s['final']:.0f} +- {s['final_std']:.0f}", f"{s['best']:.0f} ({s['best_epoch']})",
                 f"{s['crash']:.2f}"]
        for t in thresholds:
            hit = s[f"to_{t:g}"]
            cells.append(f"{hit[0]} / {hit[1]} / {hit[2] / 60:.1f}" if hit else "not reached")
        cells += [str(s["epochs"]), str(s["updates"]), f"{s['wall_s'] / 60:.1f}"]
        print("| " + " | ".join(cells) + " |")
    return 0
