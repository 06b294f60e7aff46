"""Per-episode domain randomisation of the batched env (TaskConfig.randomisation, issue 14): off by
default and then bit-identical to the env before it existed; on, it draws every drone's mass,
thrust, motor time constants, inertia, control delay and observation noise within the configured
ranges, reproducibly from the env's seed."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from snn_drone.core.env import randomisation, task
from snn_drone.core.common.layout import ANGVEL, POS, QUAT, ROTOR, VEL
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.sim.params import load_preset

REFERENCE = Path(__file__).parent / "data" / "env_reference_c487ea5.npz"


def _reference_run(task_cfg=None):
    """8 drones from seed 1234 for 100 steps of hover + 0.3 N(0, 1) commands (some crash and
    autoreset), then a deployment evaluation of the geometric controller (it flies, the env's
    privileged observation feeds it) on 16 episodes of 150 steps of the symmetric-rotor task."""
    from snn_drone.core.learning.rollout import evaluate
    from snn_drone.core.learning.train_config import load_guide
    env = BatchedHoverEnv(8, task_cfg, "cf21_paper", seed=1234)
    rng = np.random.default_rng(5)
    actions = env.params.hover_action + 0.3 * rng.standard_normal((100, 8, 4))
    states, obs, rewards, term, trunc = [env.state.clone()], [env.obs()], [], [], []
    for a in actions:
        o, r, te, tr, info = env.step(torch.as_tensor(a, dtype=torch.float32))
        states.append(info["next_state"]), obs.append(o), rewards.append(r), term.append(te), trunc.append(tr)
    sym = dataclasses.replace(task.load_task_config(task.config.config_dir() / "task_symmetric_rotors.yaml"),
                              episode_steps=150)
    if task_cfg is not None:
        sym = dataclasses.replace(sym, randomisation=task_cfg.randomisation)
    ctrl = load_guide("controller", "cf21_paper")
    ev = evaluate(ctrl, None, BatchedHoverEnv(16, sym, "cf21_paper", autoreset=False), 0, seed=77)
    return {"states": torch.stack(states).numpy(), "obs": torch.stack(obs).numpy(),
            "rewards": torch.stack(rewards).numpy(), "terminated": torch.stack(term).numpy(),
            "truncated": torch.stack(trunc).numpy(), "eval_returns": ev.returns, "eval_lengths": ev.lengths}


def _dr(**kw):
    return dataclasses.replace(task.load_task_config(), randomisation=randomisation.DomainRandomisation(**kw))


SIM2REAL = dict(mass_rel=0.1, thrust_rel=0.1, motor_time_constant_rel=0.2, inertia_rel=0.2,
                control_delay_steps_min=0, control_delay_steps_max=2)


def test_randomised_parameters_lie_in_their_ranges_per_drone_and_repeat_with_the_seed():
    cfg = _dr(**SIM2REAL)
    env = BatchedHoverEnv(400, cfg, "cf21_paper", seed=11)
    p, d = env.params, env.drone_params

    def within(x, nominal, rel):
        r = x / nominal
        assert bool(((r >= 1 - rel) & (r <= 1 + rel)).all())
        assert r.min() < 1 - 0.9 * rel and r.max() > 1 + 0.9 * rel   # the range is covered
    within(d["mass_kg"], p.mass_kg, 0.1)
    within(d["thrust_scale"], 1.0, 0.1)
    within(d["motor_time_constant_rising_s"], p.motor_time_constant_rising_s, 0.2)
    within(d["motor_time_constant_falling_s"], p.motor_time_constant_falling_s, 0.2)
    for axis in range(3):
        within(d["inertia_kgm2"][:, axis], p.inertia_kgm2[axis], 0.2)
    assert set(d["control_delay_steps"].tolist()) == {0, 1, 2}
    # reproducible with the seed, different with another; the initial states are those without randomisation
    again = BatchedHoverEnv(400, cfg, "cf21_paper", seed=11)
    assert all(torch.equal(d[k], again.drone_params[k]) for k in d)
    other = BatchedHoverEnv(400, cfg, "cf21_paper", seed=12)
    assert not torch.equal(d["mass_kg"], other.drone_params["mass_kg"])
    plain = BatchedHoverEnv(400, None, "cf21_paper", seed=11)
    assert torch.equal(env.state, plain.state) and plain.drone_params is None
    env.reset(seed=12)
    assert torch.equal(env.drone_params["mass_kg"], other.drone_params["mass_kg"])


def test_autoreset_redraws_the_finished_drones_parameters_only():
    env = BatchedHoverEnv(6, _dr(**SIM2REAL), "cf21_paper", seed=2)
    before = {k: v.clone() for k, v in env.drone_params.items()}
    env.state[:2, 2] += 5.0                       # drones 0 and 1 leave the box: crash, autoreset
    _, _, term, _, _ = env.step(torch.zeros(6, 4))
    assert term.tolist() == [True, True, False, False, False, False]
    assert not torch.equal(env.drone_params["mass_kg"][:2], before["mass_kg"][:2])
    assert all(torch.equal(env.drone_params[k][2:], before[k][2:]) for k in before)


def test_per_drone_constants_fly_each_drone_as_a_preset_with_those_constants():
    """The batched step with per-drone constants equals, drone by drone, the model of a preset
    holding that drone's mass, inertia, scaled thrust curve and time constants (float64)."""
    from snn_drone.core.sim.dynamics import QuadrotorDynamics
    from snn_drone.core.sim.params import load_preset
    base = load_preset("cf21_l2f2")
    gen = torch.Generator().manual_seed(4)
    d = randomisation.sample_drone_parameters(3, gen, base, randomisation.DomainRandomisation(**SIM2REAL))
    dyn = QuadrotorDynamics(base, dtype=torch.float64)
    dyn.set_drone_parameters(d["mass_kg"], d["inertia_kgm2"], d["thrust_scale"],
                             d["motor_time_constant_rising_s"], d["motor_time_constant_falling_s"])
    s0 = dyn.hover_state(3, [0, 0, 1.0])
    s0[:, 10:13] = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0], [-1.5, 1.0, 2.0]], dtype=torch.float64)
    actions = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (40, 3, 4)))
    s = s0.clone()
    for a in actions:
        s = dyn.step(s, a)
    for i in range(3):
        p_i = dataclasses.replace(
            base, mass_kg=float(d["mass_kg"][i]), inertia_kgm2=tuple(d["inertia_kgm2"][i].tolist()),
            thrust_coefficients=tuple(c * float(d["thrust_scale"][i]) for c in base.thrust_coefficients),
            motor_time_constant_rising_s=float(d["motor_time_constant_rising_s"][i]),
            motor_time_constant_falling_s=float(d["motor_time_constant_falling_s"][i]))
        one, si = QuadrotorDynamics(p_i, dtype=torch.float64), s0[i:i + 1].clone()
        for a in actions:
            si = one.step(si, a[i:i + 1])
        assert torch.allclose(s[i], si[0], rtol=0, atol=1e-9), i
    assert (s[0] - s[1]).abs().max() > 1e-3            # the drones really differ
    dyn.clear_drone_parameters()
    nominal = QuadrotorDynamics(base, dtype=torch.float64)
    assert torch.equal(dyn.step(s0, actions[0]), nominal.step(s0, actions[0]))
    with pytest.raises(ValueError, match="drones"):
        dyn.set_drone_parameters(d["mass_kg"], d["inertia_kgm2"], d["thrust_scale"],
                                 d["motor_time_constant_rising_s"], d["motor_time_constant_falling_s"])
        dyn.step(s0[:2], actions[0][:2])


@pytest.mark.parametrize("k", [1, 2])
def test_control_delay_applies_each_command_exactly_k_steps_later(k):
    """A delay of k steps flies exactly the undelayed env fed the commands shifted by k, the first
    k steps holding the actions that command the initial rotor speeds; history and reward keep the
    commanded actions."""
    delayed = BatchedHoverEnv(4, _dr(control_delay_steps_min=k, control_delay_steps_max=k), "cf21_paper",
                              seed=9, autoreset=False)
    plain = BatchedHoverEnv(4, None, "cf21_paper", seed=9, autoreset=False)
    assert torch.equal(delayed.state, plain.state)
    fill = plain.action_history[:, -1].clone()
    cmds = torch.as_tensor(plain.params.hover_action + 0.2 * np.random.default_rng(3).standard_normal((30, 4, 4)),
                           dtype=torch.float32)
    shifted = [fill] * k + list(cmds[:-k])
    for t in range(30):
        _, r, _, _, info = delayed.step(cmds[t])
        _, _, _, _, ref = plain.step(shifted[t])
        assert torch.equal(info["applied_action"], shifted[t].clamp(-1, 1))
        assert torch.equal(info["next_state"], ref["next_state"]), t
        assert torch.equal(delayed.action_history[:, -1], cmds[t].clamp(-1, 1))
        assert torch.equal(r, task.reward(info["next_state"], cmds[t].clamp(-1, 1), delayed.target,
                                          delayed.coeffs, delayed.cfg.orientation_cost))
    undelayed = BatchedHoverEnv(4, None, "cf21_paper", seed=9, autoreset=False)
    for c in cmds:
        undelayed.step(c)
    assert (delayed.state - undelayed.state).abs().max() > 1e-3   # the delay changes the flight


def test_observation_noise_reaches_the_actor_only():
    std = dict(obs_noise_position_m=0.01, obs_noise_rotation=0.02, obs_noise_velocity_mps=0.03,
               obs_noise_angular_velocity_radps=0.05)
    noisy = BatchedHoverEnv(2000, _dr(**std), "cf21_paper", seed=5)
    plain = BatchedHoverEnv(2000, None, "cf21_paper", seed=5)
    a = torch.full((2000, 4), plain.params.hover_action)
    for _ in range(3):
        o, r, te, _, info = noisy.step(a)
        o_ref, r_ref, te_ref, _, ref = plain.step(a)
        assert torch.equal(r, r_ref) and torch.equal(te, te_ref)
        assert torch.equal(info["next_state"], ref["next_state"])
        assert torch.equal(info["next_privileged_obs"], ref["next_privileged_obs"])
        assert torch.equal(noisy.privileged_obs(), plain.privileged_obs())
        assert torch.equal(o, noisy.obs())
        alive = ~info["done"]
        got = (o - o_ref)[alive].std(0)
        want = torch.tensor(noisy.dr.obs_noise_std())
        assert torch.allclose(got, want, rtol=0.1), (got, want)


def test_learner_batch_gives_the_actor_noisy_observations_and_the_critic_true_ones():
    from snn_drone.core.learning.learner import derive_batch
    from snn_drone.core.learning.sequence_replay import EpisodeSlicer, SequenceConfig
    cfg = _dr(obs_noise_velocity_mps=0.1)
    env = BatchedHoverEnv(2, None, "cf21_paper", seed=1, autoreset=False)
    slicer = EpisodeSlicer(2, 500, SequenceConfig(length=10, stride=10, warmup=2))
    seqs = None
    while seqs is None:
        s, h = env.state.clone(), env.action_history
        a = torch.full((2, 4), env.params.hover_action)
        _, _, te, tr, info = env.step(a)
        seqs = slicer.record(s, a, a, info["next_state"], te, tr, h, env.target.expand(2, 3))
    coeffs = task.eval_coefficients(cfg)
    clean = derive_batch(seqs, task.load_task_config(), coeffs, "observation", 2)
    b = derive_batch(seqs, cfg, coeffs, "observation", 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(b.priv_obs, clean.priv_obs) and torch.equal(b.reward, clean.reward)
    diff = b.actor_obs - clean.actor_obs
    assert torch.equal(diff[..., :12], torch.zeros_like(diff[..., :12])) and diff[..., 12:15].abs().max() > 0
    with pytest.raises(ValueError, match="generator"):
        derive_batch(seqs, cfg, coeffs, "observation", 2)


def test_bad_randomisation_values_name_the_key_and_pybullet_refuses_randomised_physics():
    with pytest.raises(ValueError, match="randomisation.mass_rel"):
        randomisation.DomainRandomisation(mass_rel=1.5)
    with pytest.raises(ValueError, match="control_delay_steps_min/max"):
        randomisation.DomainRandomisation(control_delay_steps_min=2, control_delay_steps_max=1)
    with pytest.raises(KeyError, match="randomisation.mass"):
        task.load_task_config(overrides={"randomisation": {"mass": 0.1}})
    with pytest.raises(ValueError, match="backend 'batched'"):
        BatchedHoverEnv(1, _dr(mass_rel=0.1), backend="pybullet")
    assert randomisation.load_randomisation().enabled     # the shipped sim-to-real ranges


def test_eval_randomise_scores_under_the_shipped_ranges(capsys, tmp_path):
    import yaml
    from snn_drone.cli import main
    from snn_drone.core.common.config import to_dict
    short = tmp_path / "task.yaml"   # 100-step episodes keep the test cheap
    short.write_text(yaml.safe_dump(to_dict(dataclasses.replace(task.load_task_config(), episode_steps=100))))
    args = ["eval", "controller", "--episodes", "8", "--seed", "31337", "--task", str(short),
            "--plot", str(tmp_path / "eval.png")]
    assert main(args + ["--randomise"]) == 0
    out = capsys.readouterr().out
    assert "randomisation:     config/randomisation.yaml: mass_rel 0.1" in out and "crash rate:" in out
    assert main(args) == 0
    assert "randomisation:     off" in capsys.readouterr().out


def test_hover_starts_are_level_at_rest_near_the_target_and_repeat_with_the_seed():
    params = load_preset("cf21_paper")
    cfg = task.load_task_config()
    a = task.hover_initial_state(64, torch.Generator().manual_seed(5), params, cfg)
    b = task.hover_initial_state(64, torch.Generator().manual_seed(5), params, cfg)
    assert torch.equal(a, b)
    target = torch.tensor(cfg.target_position_m)
    spread = (a[:, POS] - target).std(0)
    assert bool(((spread > 0.03) & (spread < 0.07)).all()), spread
    assert torch.equal(a[:, QUAT], torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(64, 4))
    assert not a[:, VEL].any() and not a[:, ANGVEL].any()
    assert torch.allclose(a[:, ROTOR], torch.full((64, 4), params.hover_rotor_speed))


def test_eval_delay_from_hover_the_paper_snn_holds_without_delay_and_crashes_with_two_steps(capsys, tmp_path):
    """The measured finding of docs/RESULTS.md "Control delay", on 8 episodes: from hover starts the
    shipped BC-only SNN holds every episode at delay 0 and loses every one at 2 steps (20 ms)."""
    from snn_drone.cli import main
    args = ["eval", "checkpoints/snn_actor_bc_only.pt", "--episodes", "8", "--seed", "31337", "--start", "hover",
            "--guide", "controller", "--plot", str(tmp_path / "eval.png")]
    assert main(args + ["--delay", "0"]) == 0
    out = capsys.readouterr().out
    assert "starts:            hover starts" in out and "control_delay_steps" not in out and "crash rate:        0.000" in out, out
    assert main(args + ["--delay", "2"]) == 0
    out = capsys.readouterr().out
    assert "randomisation:     --delay: control_delay_steps_min 2, control_delay_steps_max 2" in out, out
    assert "crash rate:        1.000" in out, out


if __name__ == "__main__":  # writes the reference (it was written once, with the code of commit c487ea5)
    np.savez_compressed(REFERENCE, **_reference_run())


def test_randomisation_is_off_by_default_and_the_env_is_bit_identical_to_before_it_existed():
    """The reference was written by this file's _reference_run with the code of commit c487ea5
    (before randomisation): raw env steps with autoresets, and an evaluation through rollout.py."""
    assert not task.TaskConfig().randomisation.enabled and not task.load_task_config().randomisation.enabled
    ref = np.load(REFERENCE)
    out = _reference_run()
    assert ref["terminated"].any() and ref["truncated"].sum() == 0   # crashes and autoresets happened
    for k in ref.files:
        assert np.array_equal(out[k], ref[k]), k
