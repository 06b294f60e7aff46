"""The training loop with real envs, real networks and real files: artefacts, resume, kill -9, bad configs."""
import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from snn_drone.core.learning.checkpoint import load_policy
from snn_drone.core.snn.spiking_actor import SpikingActor
from snn_drone.core.learning.trainer import Trainer
from snn_drone.core.learning.train_config import load_train_config

# A tiny online TD3 run of the spiking actor (no guide needed): seconds on 2 cores.
TINY = {
    "algo": "td3", "num_drones": 8, "epochs": 4, "steps_per_epoch": 30, "updates_per_epoch": 2,
    "batch_sequences": 4, "min_replay_sequences": 2, "eval_every": 2, "eval_episodes": 4,
    "threads": 1,
    "snn.hidden": [16, 8], "sequences.length": 20, "sequences.stride": 10, "sequences.warmup": 5,
    "sequences.capacity_transitions": 10000, "learner.warmup": 5, "horizon.warmup": 5,
    "validation_episodes": 8,
}


def _cfg(**over):
    return load_train_config(None, {**TINY, **over})


def test_short_run_writes_metrics_checkpoints_plots_and_loadable_actors(tmp_path):
    tr = Trainer(_cfg(), tmp_path, progress=False, log=lambda *_: None)
    history = tr.run()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert tr.learner.updates > 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("eval_return" in r for r in rows if r["epoch"] in (2, 4))
    assert {"critic_loss", "slope", "lambda_bc", "env_steps"} <= set(rows[-1])
    for f in ("checkpoint.pt", "actor_last.pt", "actor_best.pt", "training.png", "config.yaml"):
        assert (tmp_path / f).stat().st_size > 0, f
    actor = load_policy(tmp_path / "actor_last.pt")
    assert isinstance(actor, SpikingActor) and actor.cfg.hidden == (16, 8)
    assert list((tmp_path / "tb").iterdir())  # TensorBoard event file


def test_resume_continues_from_the_checkpoint_and_rejects_a_different_config(tmp_path):
    Trainer(_cfg(epochs=2), tmp_path, progress=False, log=lambda *_: None).run()
    tr = Trainer(_cfg(epochs=4), tmp_path, resume=True, progress=False, log=lambda *_: None)
    assert tr.epoch == 2 and len(tr.replay) > 0 and tr.learner.updates > 0
    updates_before = tr.learner.updates
    tr.run()
    assert tr.epoch == 4 and tr.learner.updates > updates_before
    assert [r["epoch"] for r in tr.history] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"learner\.alpha: 2\.0 != 3\.0"):
        Trainer(_cfg(epochs=4, **{"learner.alpha": 3.0}), tmp_path, resume=True, progress=False)


def test_a_checkpoint_from_before_a_config_key_existed_resumes_with_that_keys_default(tmp_path):
    Trainer(_cfg(epochs=2), tmp_path, progress=False, log=lambda *_: None).run()
    sd = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del sd["config"]["learner"]["lambda_bc_min"], sd["config"]["horizon"]["advance"]  # an older run
    torch.save(sd, tmp_path / "checkpoint.pt")
    assert Trainer(_cfg(epochs=3), tmp_path, resume=True, progress=False, log=lambda *_: None).epoch == 2
    with pytest.raises(ValueError, match=r"learner\.lambda_bc_min: 0\.0 != 0\.1"):
        Trainer(_cfg(epochs=3, **{"learner.lambda_bc_min": 0.1}), tmp_path, resume=True, progress=False)


def test_config_errors_name_the_key_and_expected_type():
    with pytest.raises(KeyError, match="learner.alpa"):
        load_train_config(None, {"learner.alpa": 1.0})
    with pytest.raises(TypeError, match="'num_drones': expected int"):
        load_train_config(None, {"num_drones": "many"})
    with pytest.raises(ValueError, match="not one of"):
        load_train_config(None, {"algo": "ppo"})


def test_kill_9_at_any_moment_leaves_a_resumable_run(tmp_path):
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**TINY, "epochs": 400, "checkpoint_every_s": 0.0}.items()]
    cmd = [sys.executable, "-m", "snn_drone.cli", "train", "--out", str(tmp_path), "--no-progress", *sets]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not ckpt.exists() or ckpt.stat().st_mtime == 0):
        time.sleep(0.2)
    assert ckpt.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in 120 s"
    time.sleep(1.5)  # let it write a few more checkpoints, then kill it mid-flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sd = torch.load(ckpt, weights_only=False)  # never torn
    done = sd["epoch"]
    assert done >= 1
    tr = Trainer(_cfg(epochs=done + 1), tmp_path, resume=True, progress=False, log=lambda *_: None)
    assert tr.epoch == done
    tr.run()
    assert torch.load(ckpt, weights_only=False)["epoch"] == done + 1


def test_a_short_td3bc_jsrl_run_with_the_shipped_guide_improves_the_spiking_actor(tmp_path):
    # The paper's method end to end at a small scale: the shipped guide flies most of each episode,
    # the SNN learns from BC + Q on replayed 100-step sequences and is scored as deployed
    # (guide for the 50-step warm-up, then the SNN alone) on 16 fixed initial states.
    over = {"num_drones": 32, "epochs": 16, "steps_per_epoch": 50, "updates_per_epoch": 25,
            "batch_sequences": 16, "min_replay_sequences": 16, "eval_every": 16, "eval_episodes": 16,
            "snn.hidden": [128, 64], "horizon.epochs_per_stage": 100, "checkpoint_every_s": 1e9,
            "learner.lambda_bc": 1.0}
    tr = Trainer(load_train_config(None, over), tmp_path, progress=False, log=lambda *_: None)
    before = tr.evaluate().summary()
    tr.run()
    after = tr.evaluate().summary()
    assert after["return_mean"] > before["return_mean"] + 20, (before, after)
    assert after["length_mean"] > before["length_mean"] + 20, (before, after)


@pytest.mark.parametrize("name, bar", [("snn_actor.pt", 400.0), ("snn_actor_bc_only.pt", 395.0)])
def test_eval_scores_each_shipped_actor_on_its_training_task(tmp_path, capsys, name, bar):
    """`snn-drone eval checkpoints/<actor>` (no run folder beside it) flies 500 fresh test episodes of
    config/train.yaml's task with its guide for the warm-up, and each shipped actor scores what
    checkpoints/README.md says: the TD3BC + JSRL actor 405.2 +- 9.7, the BC-only one 400.0 +- 9.4 (the
    bars leave room for another CPU's rounding to change a crash or two)."""
    import re
    import shutil

    from snn_drone.cli import main
    from snn_drone.core.common.config import package_root
    ckpt = tmp_path / name
    shutil.copy(package_root() / "checkpoints" / name, ckpt)
    assert main(["eval", str(ckpt), "--plot", str(tmp_path / "eval.png")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^task: .*task_symmetric_rotors\.yaml$", out, re.M), out
    assert re.search(r"^episodes:\s+500, seed 900000000 \(the guide controller flies the first 50 steps\)", out, re.M), out
    ret = float(re.search(r"^return:\s+(-?[\d.]+) \+- ([\d.]+) \(95% CI", out, re.M).group(1))
    assert ret >= bar, out
    actor = float(re.search(r"^actor's steps:\s+return (-?[\d.]+)", out, re.M).group(1))
    assert actor >= 395.0, out  # the 450 steps after the hand-over (at most 450)
    assert (tmp_path / "eval.png").stat().st_size > 10_000


def test_hand_over_stages_follow_the_schedule_or_hold_on_a_weak_evaluation(tmp_path):
    over = {"algo": "td3bc_jsrl", "guide": "controller", "horizon.epochs_per_stage": 2}
    fixed = Trainer(_cfg(**over), tmp_path / "fixed", progress=False, log=lambda *_: None)
    held = Trainer(_cfg(**over, **{"horizon.advance": "on_eval"}), tmp_path / "held", progress=False,
                   log=lambda *_: None)
    for tr in (fixed, held):
        tr.best_return = 100.0
        assert tr.guide_steps() == 450
    for ret in (80.0, 80.0, 80.0, 80.0, 95.0, 95.0):  # evaluations at every epoch, below 90% of the best, then above
        for tr in (fixed, held):
            tr._advance_stage({tr._selection_key: ret})  # the validation return gates the hand-over
    assert (fixed.stage, fixed.guide_steps()) == (3, 375)
    assert (held.stage, held.guide_steps()) == (1, 425)
    held.save()
    again = Trainer(_cfg(**over, **{"horizon.advance": "on_eval"}), tmp_path / "held", resume=True, progress=False,
                    log=lambda *_: None)
    assert (again.stage, again.stage_epochs) == (1, 0)


def test_summarize_by_variant_groups_seeds_with_exact_numbers(tmp_path, capsys):
    from snn_drone.cli import main

    def run(name, evals):
        d = tmp_path / name
        d.mkdir()
        rows = [{"epoch": e, "updates": 50 * e, "wall_s": 6.0 * e, "eval_return": r, "eval_return_std": 1.0,
                 "eval_crash_rate": 0.0} for e, r in evals]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(d)

    dirs = [run("adaptive-s0", [(5, 50.0), (10, 150.0), (15, 120.0)]),
            run("adaptive-s1", [(5, 110.0), (10, 90.0), (15, 130.0)]),
            run("td3-s0", [(5, -20.0), (10, -10.0), (15, -30.0)])]
    png = tmp_path / "curves.png"
    assert main(["summarize", "--by-variant", "--plot", str(png), *dirs]) == 0
    assert png.stat().st_size > 10_000
    lines = capsys.readouterr().out.strip().splitlines()[1:]  # after the "plot: ..." line
    assert lines[2] == ("| adaptive | 0, 1 | 120 / 130 (125 +- 7) | 150 / 130 (140 +- 14) | 10 / 5 | not reached "
                        "| 15 / 15 | 2 / 2 |")
    assert lines[3] == "| td3 | 0 | -30 | -10 | not reached | not reached | 15 | 2 |"


def test_training_evaluations_fly_fresh_starts_and_the_validation_set_picks_actor_best(tmp_path):
    from snn_drone.core.learning import seeds
    tr = Trainer(_cfg(epochs=6, eval_every=1, validation_episodes=6), tmp_path, progress=False, log=lambda *_: None)
    starts = []
    for i in range(2):
        tr.eval_env.reset(seed=seeds.training_eval_seed(0, i))
        starts.append(tr.eval_env.state.clone())
    assert not torch.equal(starts[0], starts[1])  # every training evaluation draws new initial states
    tr.run()
    assert tr.evaluations == 6
    evals = [r for r in tr.history if "eval_return" in r]
    assert all("validation_return" in r for r in evals)
    best_so_far, flagged = -float("inf"), []
    for r in evals:
        if r["validation_return"] > best_so_far:
            best_so_far = r["validation_return"]
            flagged.append(r["epoch"])
    assert [r["epoch"] for r in evals if r.get("best")] == flagged
    assert tr.best_return == max(r["validation_return"] for r in evals)
    # the validation set is the same every time: the saved best actor scores its recorded return again
    best = load_policy(tmp_path / "actor_best.pt")
    tr.actor.load_state_dict(best.state_dict())
    assert tr.validate().summary()["return_mean"] == pytest.approx(tr.best_return, abs=1e-3)


def test_resume_restores_every_generator(tmp_path):
    import random

    import numpy as np
    tr = Trainer(_cfg(epochs=2), tmp_path, progress=False, log=lambda *_: None)
    tr.run()
    expected = (np.random.rand(3).tolist(), random.random(), torch.rand(2).tolist())
    again = Trainer(_cfg(epochs=3), tmp_path, resume=True, progress=False, log=lambda *_: None)
    assert (np.random.rand(3).tolist(), random.random(), torch.rand(2).tolist()) == expected
    assert again.evaluations == tr.evaluations == 1


def test_the_three_warmup_keys_must_agree():
    with pytest.raises(ValueError, match=r"learner\.warmup = 5, sequences\.warmup = 5, horizon\.warmup = 50"):
        load_train_config(None, {**TINY, "horizon.warmup": 50})
    assert load_train_config(None, TINY).horizon.warmup == 5


def test_the_actor_loss_covers_what_each_actor_flies_at_deployment(tmp_path):
    # the paper's SNN: the guide flies the deployed warm-up; TD3 has no guide, the SNN flies from
    # step 0; an ANN has no hidden state to warm up
    cases = {("td3bc_jsrl", "snn"): ("all", 5), ("td3", "snn"): ("mid_episode", 0),
             ("td3bc_jsrl", "ann"): ("none", 0), ("td3", "ann_history"): ("none", 0)}
    for (algo, actor), (mask, guide_steps) in cases.items():
        tr = Trainer(_cfg(algo=algo, actor=actor, guide="controller", epochs=1), tmp_path / f"{algo}-{actor}",
                     progress=False, log=lambda *_: None)
        assert (tr.actor_warmup, tr.eval_guide_steps()) == (mask, guide_steps), (algo, actor)


def test_lambda_bc_decays_once_per_hand_over_stage_in_training(tmp_path):
    tr = Trainer(_cfg(algo="td3bc_jsrl", guide="controller", epochs=6, **{
        "horizon.epochs_per_stage": 2, "learner.lambda_bc_decay_per": "stage", "learner.lambda_bc_decay": 0.5,
        "learner.lambda_bc": 0.2}),
        tmp_path, progress=False, log=lambda *_: None)
    tr.run()
    assert [r["lambda_bc"] for r in tr.history] == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]
    assert tr.learner.lambda_bc == 0.025  # the third stage ended with epoch 6


def test_evaluation_splits_the_guides_warmup_from_the_actors_steps():
    from snn_drone.core.env import task
    from snn_drone.core.env.batched_env import BatchedHoverEnv
    from snn_drone.core.learning.rollout import evaluate
    from snn_drone.core.learning.train_config import load_guide
    ctrl = load_guide("controller", "cf21_paper")
    cfg = task.load_task_config(None, {"init_rotor_action_min": 0.0, "init_rotor_action_max": 0.0})
    env = BatchedHoverEnv(64, cfg, "cf21_paper", autoreset=False)
    res = evaluate(ctrl, ctrl, env, 50, seed=7)
    # the same flight step by step: rewards before and after the hand-over
    env2 = BatchedHoverEnv(64, cfg, "cf21_paper", autoreset=False)
    obs = env2.reset(seed=7)
    alive = torch.ones(64, dtype=torch.bool)
    before, after = torch.zeros(64), torch.zeros(64)
    env2.set_progress(1.0)
    for t in range(cfg.episode_steps):
        a = ctrl(task.privileged_observation(obs, env2.action_history))
        obs, r, term, trunc, _ = env2.step(a)
        (before if t < 50 else after).add_(torch.where(alive, r, 0.0))
        alive &= ~(term | trunc)
    assert np.allclose(res.returns, (before + after).numpy(), atol=1e-3)
    assert np.allclose(res.actor_returns, after.numpy(), atol=1e-3)
    s = res.summary()
    reached = res.lengths > 50
    assert s["actor_crash_rate"] == pytest.approx(res.crashed[reached].mean())
    assert s["warmup_crash_rate"] + s["actor_crash_rate"] * reached.mean() == pytest.approx(s["crash_rate"])
    assert s["return_ci95"] == pytest.approx(1.96 * res.returns.std(ddof=1) / 8.0)


def test_summarize_scores_each_runs_chosen_actors_on_fresh_test_episodes(tmp_path, capsys):
    from snn_drone.cli import main
    from snn_drone.commands.eval import score_checkpoint
    run = tmp_path / "td3-s0"
    Trainer(_cfg(epochs=2), run, progress=False, log=lambda *_: None).run()
    assert main(["summarize", "--test", "16", "--test-seed", "900000123", str(run)]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    want = {}
    for which in ("best", "last"):
        res, _, used = score_checkpoint(str(run / f"actor_{which}.pt"), 16, 900000123)
        assert used["warmup"] == 0 and used["seed"] == 900000123  # TD3: no guide, the SNN flies from step 0
        want[which] = res.summary()
    assert row[-3] == f"{want['best']['return_mean']:.1f} +- {want['best']['return_ci95']:.1f}"
    assert row[-1].rstrip(" |") == f"{want['last']['return_mean']:.1f} +- {want['last']['return_ci95']:.1f}"
    # the scores are kept: a second summary reads them, and a changed actor is scored again
    cache = json.loads((run / "test_scores.json").read_text())
    assert len(cache) == 2 and all(v["seed"] == 900000123 for v in cache.values())
    for v in cache.values():
        v["return"] = 12345.0
    (run / "test_scores.json").write_text(json.dumps(cache))
    assert main(["summarize", "--test", "16", "--test-seed", "900000123", str(run)]) == 0
    assert "12345.0" in capsys.readouterr().out
    Trainer(_cfg(epochs=2), tmp_path / "other", progress=False, log=lambda *_: None).save()
    shutil.copy(tmp_path / "other" / "actor_last.pt", run / "actor_last.pt")
    assert main(["summarize", "--test", "16", "--test-seed", "900000123", str(run)]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    assert row[-3].startswith("12345.0") and not row[-1].startswith("12345.0")
