"""`snn-drone summarize RUN_DIR...`: one table row per training run, from its metrics.jsonl."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("summarize", help="table of training runs: final and best return, steps to a return, time",
                       description="Read runs/<name>/metrics.jsonl of each run folder and print one markdown row "
                                   "per run: final and best evaluation return (end-of-curriculum reward), the "
                                   "epoch, gradient updates and wall time at which evaluation first reached each "
                                   "--threshold, and the run's total time.")
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl)")
    p.add_argument("--threshold", type=float, action="append", default=None,
                   help="evaluation return to time (repeatable; default 100 and 400)")
    p.add_argument("--by-variant", action="store_true",
                   help="one row per variant instead: runs named <variant>-s<seed> are grouped, with the mean "
                        "+- std over seeds of the final and best returns and the epoch of each threshold per seed")
    p.add_argument("--plot", metavar="PNG", help="also draw the evaluation return of every run against epoch, "
                                                 "one panel per variant (runs grouped as for --by-variant)")
    p.add_argument("--test", type=int, default=0, metavar="EPISODES",
                   help="also fly each run's actor_best.pt (chosen on its validation set) and actor_last.pt on this "
                        "many fresh test episodes (snn-drone eval's protocol) and add their returns (mean +- 95%% CI) "
                        "and crash rates; with --by-variant, the mean +- std over seeds")
    p.add_argument("--test-seed", type=int, default=None,
                   help="seed of the test episodes (default: the first test seed, as snn-drone eval)")
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
    chosen = [r for r in evals if r.get("best")]
    out["best_epoch_validation"] = chosen[-1]["epoch"] if chosen else None
    return out


def test_run(path: Path, episodes: int, seed: int | None) -> dict:
    """Fresh-episode scores of a run's actor_best.pt and actor_last.pt (keys best_*, last_*).

    Each score is kept in ``<run>/test_scores.json`` under the episodes, the seed and the checkpoint's
    size and modification time, so summarizing again costs nothing until an actor changes."""
    from .eval import score_checkpoint
    cache_path = path / "test_scores.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    out = {}
    for which in ("best", "last"):
        ckpt = path / f"actor_{which}.pt"
        st = ckpt.stat()
        key = f"{ckpt.name}|{episodes}|{seed}|{st.st_size}|{st.st_mtime_ns}"
        if key not in cache:
            res, _, used = score_checkpoint(str(ckpt), episodes, seed, warn=lambda *_: None)
            s = res.summary()
            cache[key] = {"return": s["return_mean"], "ci95": s["return_ci95"], "crash": s["crash_rate"],
                          "actor_crash": s["actor_crash_rate"], "actor": s["actor_return_mean"], "seed": used["seed"]}
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_path)
        c = cache[key]
        out.update({f"{which}_test": c["return"], f"{which}_test_ci95": c["ci95"], f"{which}_test_crash": c["crash"],
                    f"{which}_test_actor_crash": c["actor_crash"], f"{which}_test_actor": c["actor"]})
        out["test_seed"] = c["seed"]
    return out


def variant_of(path: Path) -> tuple[str, str]:
    """(variant, seed) of a run folder named <variant>-s<seed>; (name, '?') otherwise."""
    m = re.fullmatch(r"(.+)-s(\d+)", path.name)
    return (m.group(1), m.group(2)) if m else (path.name, "?")


def eval_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval_return" in r]
    return np.array([r["epoch"] for r in evals]), np.array([r["eval_return"] for r in evals])


def _mean_std(xs) -> str:
    return f"{np.mean(xs):.0f} +- {np.std(xs, ddof=1):.0f}" if len(xs) > 1 else f"{xs[0]:.0f}"


def by_variant(runs: list[Path], thresholds: list[float], test: int = 0, test_seed: int | None = None) -> list[str]:
    """Markdown rows, one per variant (run folder name without its -s<seed> suffix), in first-seen order."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for r in runs:
        name, seed = variant_of(r)
        row = summarize_run(r, thresholds)
        if test:
            row.update(test_run(r, test, test_seed))
        groups.setdefault(name, []).append((seed, row))
    head = ["variant", "seeds", "final return per seed (mean +- std)", "best return per seed (mean +- std)"] + \
        [f"first >= {t:g} (epoch per seed)" for t in thresholds] + ["epochs", "min per run"]
    if test:
        head += [f"actor_best: test return, {test} fresh episodes (95% CI) per seed (mean +- std over seeds)",
                 "its crash rate per seed (after the hand-over)", "its return over the actor's steps per seed",
                 "actor_last: test return per seed (mean +- std)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, items in groups.items():
        seeds = [sd for sd, _ in items]
        fin = [s["final"] for _, s in items]
        best = [s["best"] for _, s in items]
        cells = [name, ", ".join(seeds), " / ".join(f"{x:.0f}" for x in fin) + (f" ({_mean_std(fin)})" if len(fin) > 1 else ""),
                 " / ".join(f"{x:.0f}" for x in best) + (f" ({_mean_std(best)})" if len(best) > 1 else "")]
        for t in thresholds:
            hits = [s[f"to_{t:g}"] for _, s in items]
            cells.append(" / ".join(str(h[0]) if h else "-" for h in hits) if any(hits) else "not reached")
        cells += [" / ".join(str(s["epochs"]) for _, s in items),
                  " / ".join(f"{s['wall_s'] / 60:.0f}" for _, s in items)]
        if test:
            xs = [s["best_test"] for _, s in items]
            cells.append(" / ".join(f"{s['best_test']:.1f} +- {s['best_test_ci95']:.1f}" for _, s in items)
                         + (f" ({_mean_std1(xs)})" if len(xs) > 1 else ""))
            cells.append(" / ".join(f"{s['best_test_crash']:.3f} ({s['best_test_actor_crash']:.3f})" for _, s in items))
            cells.append(" / ".join(f"{s['best_test_actor']:.1f}" for _, s in items))
            xs = [s["last_test"] for _, s in items]
            cells.append(" / ".join(f"{x:.1f}" for x in xs) + (f" ({_mean_std1(xs)})" if len(xs) > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mean_std1(xs) -> str:
    return f"{np.mean(xs):.1f} +- {np.std(xs, ddof=1):.1f}"


def run(args) -> int:
    thresholds = args.threshold or [100.0, 400.0]
    if args.plot:
        from snn_drone.core.learning.plots import plot_variant_curves
        groups: dict[str, list] = {}
        for r in args.runs:
            groups.setdefault(variant_of(Path(r))[0], []).append(eval_curve(Path(r)))
        print(f"plot: {plot_variant_curves(groups, args.plot)}")
    if args.by_variant:
        print("\n".join(by_variant([Path(r) for r in args.runs], thresholds, args.test, args.test_seed)))
        return 0
    head = ["run", "final return", "best (epoch)", "final crash rate"] + [f"first >= {t:g}: epoch / updates / min" for t in thresholds] + ["epochs", "updates", "min"]
    if args.test:
        head += ["actor_best (validation epoch)", f"its test return ({args.test} episodes, 95% CI)",
                 "crash rate (actor's steps)", "actor_last test return"]
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
        if args.test:
            t = test_run(Path(r), args.test, args.test_seed)
            cells += [str(s["best_epoch_validation"] or "-"), f"{t['best_test']:.1f} +- {t['best_test_ci95']:.1f}",
                      f"{t['best_test_crash']:.3f} ({t['best_test_actor_crash']:.3f})",
                      f"{t['last_test']:.1f} +- {t['last_test_ci95']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    return 0
