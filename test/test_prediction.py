"""Delay compensation (core/sim/prediction.py): the state a command will meet, predicted through the
commands already sent. Against the env's own control delay the prediction is the state the delayed
physics reaches; in deployment it keeps the paper's SNN flying at a delay it falls at otherwise."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snn_drone.core.common.layout import ROTOR
from snn_drone.core.deploy.crazyflie_state import RotorSpeedEstimate
from snn_drone.core.env import task
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.env.randomisation import DomainRandomisation
from snn_drone.core.sim.prediction import PendingCommands


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_pending_commands_predict_the_state_the_delayed_env_reaches_when_the_next_command_lands(delay):
    """The bridge's bookkeeping on the env's delay: each command is recorded with the rotor speeds of
    the bridge's own motor model (RotorSpeedEstimate, updated per command as the bridge does); the
    prediction from the state at step t is the state at step t + delay, where the command of step t
    takes effect, to float64 rounding, over a flight that starts from the paper's wild states."""
    cfg = dataclasses.replace(task.TaskConfig(), randomisation=DomainRandomisation(
        control_delay_steps_min=delay, control_delay_steps_max=delay))
    env = BatchedHoverEnv(1, cfg, "cf21_paper", seed=3, dtype=torch.float64, autoreset=False)
    env.reset(seed=3)
    params = env.params
    pending, model = PendingCommands(params, delay), RotorSpeedEstimate(params)
    model.speed = env.state[0, ROTOR].numpy().copy()
    for fill in env.action_history[0, -delay:].numpy():  # the env's delay line starts full of the fill
        pending.sent(fill, model.speed)
        model.update(fill)
    rng = np.random.default_rng(11)
    states, predicted = [], []
    for t in range(60):
        states.append(env.state[0].numpy().copy())
        predicted.append(pending.predict(env.state[0].numpy()))
        a = np.clip(params.hover_action + 0.2 * rng.standard_normal(4), -1, 1)
        pending.sent(a, model.speed)
        model.update(a)
        env.step(torch.as_tensor(a[None]))
    states, predicted = np.array(states), np.array(predicted)
    moved = np.abs(states[delay:] - states[:-delay]).max()
    err = np.abs(predicted[:-delay] - states[delay:]).max()
    assert moved > 1e-2 and err < 1e-9 * max(1.0, float(np.abs(states).max())), (moved, err)
    assert pending.pending == delay


def test_pending_commands_without_a_horizon_or_before_the_first_command_pass_the_state_through():
    from snn_drone.core.sim.params import load_preset
    params = load_preset("cf21_paper")
    s = np.zeros(17)
    s[3], s[2], s[ROTOR] = 1.0, 1.0, params.hover_rotor_speed
    for steps in (0, 2):
        p = PendingCommands(params, steps)
        assert p.pending == 0 and np.array_equal(p.predict(s), s)
    p = PendingCommands(params, 2)
    p.sent(np.full(4, 1.0), np.full(4, params.hover_rotor_speed))
    up = p.predict(s)
    assert p.pending == 1 and up[9] > 0 and up[ROTOR].min() > params.hover_rotor_speed  # full throttle: climbing
    p.reset()
    assert p.pending == 0
    with pytest.raises(ValueError, match="predict_steps"):
        PendingCommands(params, -1)
    with pytest.raises(ValueError, match="action"):
        PendingCommands(params, 1).sent(np.zeros(3), np.zeros(4))


def test_eval_predict_keeps_the_paper_snn_up_at_the_two_step_delay_it_falls_at_from_hover(capsys, tmp_path):
    """test_randomisation pins that the BC-only SNN loses every hover episode at a 2-step delay; acting
    on the state predicted 2 steps ahead it loses none of the same 8."""
    from snn_drone.cli import main
    args = ["eval", "checkpoints/snn_actor_bc_only.pt", "--episodes", "8", "--seed", "31337", "--start", "hover",
            "--guide", "controller", "--plot", str(tmp_path / "eval.png"), "--delay", "2"]
    assert main(args + ["--predict", "2"]) == 0
    out = capsys.readouterr().out
    assert "prediction:        guide and actor act on the state 2 steps ahead" in out, out
    assert "crash rate:        0.000" in out, out
    assert main(args + ["--predict", "-1"]) != 0
    assert "--predict -1: expected K >= 0 control steps" in capsys.readouterr().err
