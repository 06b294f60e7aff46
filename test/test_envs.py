"""The hover environments: autoreset per drone, NaN isolation, bad actions, gymnasium checks."""
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from snn_drone.core.env import gym_envs as envs, task
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.sim.dynamics import QuadrotorDynamics
from snn_drone.core.common.layout import POS, ROTOR, VEL
from snn_drone.core.sim.params import load_preset

PARAMS = load_preset("cf21_paper")
TARGET = (0.0, 0.0, 1.0)


def _hover_states(n: int) -> torch.Tensor:
    return QuadrotorDynamics(PARAMS).hover_state(n, position=TARGET)


@pytest.mark.parametrize("backend", ["batched", "pybullet"])
def test_single_drone_env_passes_gymnasium_check_env(backend):
    env = gym.make(envs.ENV_ID, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    # the only remarks: the observation box is unbounded (true: velocities are not bounded)
    assert all("infinity" in str(w.message) for w in caught), [str(w.message) for w in caught]
    obs, _ = env.reset(seed=5)
    assert obs.shape == (18,) and obs.dtype == np.float32
    env.close()


def test_privileged_single_env_observes_146_values_ending_with_the_last_action():
    env = gym.make(envs.ENV_ID, privileged=True)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (146,)
    a = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    obs, *_ = env.step(a)
    assert obs[-4:] == pytest.approx(a)
    env.close()


def test_autoreset_resets_only_the_finished_drone_and_reports_its_episode():
    env = BatchedHoverEnv(4, seed=0)
    s0 = _hover_states(4)
    s0[3, POS.start] = 0.595   # drone 3: 0.595 m off in x, flying +x at 1 m/s: crosses 0.6 m now
    s0[3, VEL.start] = 1.0
    env.reset(state=s0)
    a = torch.full((4, 4), PARAMS.hover_action)
    expected_next = QuadrotorDynamics(PARAMS).step(s0, a)
    obs, rew, term, trunc, info = env.step(a)
    assert term.tolist() == [False, False, False, True] and not trunc.any()
    assert info["done"].tolist() == [False, False, False, True]
    # the others fly on: state, step count, history untouched by the reset
    assert torch.equal(env.state[:3], expected_next[:3])
    assert torch.equal(info["next_state"], expected_next)
    assert env.steps.tolist() == [1, 1, 1, 0]
    hist = env.action_history
    assert torch.allclose(hist[:3, -1], a[:3]) and torch.allclose(hist[:3, -2], hist[:3, 0])
    # the finished drone: its final observation and episode in info, a fresh start in obs
    assert info["next_obs"][3, 0].item() == pytest.approx(0.605, abs=1e-4)
    assert info["episode_length"][3].item() == 1
    assert info["episode_return"][3].item() == pytest.approx(rew[3].item(), abs=1e-6)
    assert not torch.equal(env.state[3], expected_next[3])
    assert (obs[3, POS] .abs() <= 0.2 + 1e-6).all()
    assert torch.equal(obs[:3], info["next_obs"][:3])
    assert torch.equal(hist[3], task.initial_action_history(env.state[3:4], PARAMS)[0])
    # privileged views: the final one still holds the action just taken, the new one the fill
    assert torch.allclose(info["next_privileged_obs"][3, -4:], a[3])
    assert torch.equal(env.privileged_obs()[3, 18:], hist[3].reshape(-1))


def test_vector_env_reports_final_observations_only_for_finished_drones():
    vec = gym.make_vec(envs.ENV_ID, num_envs=3)
    assert isinstance(vec, envs.HoverVectorEnv)
    vec.reset(seed=2)
    s0 = _hover_states(3)
    s0[1, POS.start + 2] += -0.5999   # drone 1 sinking through -0.6 m in z
    s0[1, VEL.start + 2] = -1.0
    vec.env.reset(state=s0)
    obs, rew, term, trunc, info = vec.step(np.full((3, 4), PARAMS.hover_action, dtype=np.float32))
    assert term.tolist() == [False, True, False]
    assert info["_final_obs"].tolist() == [False, True, False]
    assert info["final_obs"][1, 2] == pytest.approx(-0.6099, abs=1e-3)
    assert info["episode_length"][1] == 1 and info["_episode_length"].tolist() == [False, True, False]
    assert obs.shape == (3, 18) and obs.dtype == np.float32
    vec.close()


def test_nan_inside_the_physics_ends_only_that_drones_episode():
    env = BatchedHoverEnv(5, seed=1)
    s0 = _hover_states(5)
    env.reset(state=s0)
    env.state[2, VEL.start] = float("nan")      # injected into one drone's state
    a = torch.full((5, 4), PARAMS.hover_action)
    expected_next = QuadrotorDynamics(PARAMS).step(s0, a)
    obs, rew, term, trunc, info = env.step(a)
    assert term.tolist() == [False, False, True, False, False]
    assert info["nonfinite"].tolist() == [False, False, True, False, False]
    keep = [0, 1, 3, 4]
    assert torch.equal(info["next_state"][keep], expected_next[keep])
    for name, x in (("obs", obs), ("reward", rew), ("next_obs", info["next_obs"]),
                    ("next_privileged_obs", info["next_privileged_obs"]), ("state", env.state)):
        assert torch.isfinite(x).all(), name
    # the crashed drone's final state is its last finite one (NaN zeroed): at the target, level
    assert info["next_state"][2, VEL].tolist() == [0.0, 0.0, 0.0]
    assert rew[2].item() == pytest.approx(1.0, abs=1e-3)
    assert env.steps.tolist() == [1, 1, 0, 1, 1]
    # and the batch flies on: 20 more steps, all finite, nobody else crashes
    for _ in range(20):
        obs, rew, term, trunc, info = env.step(a)
        assert torch.isfinite(obs).all() and not term[keep].any()


def test_bad_actions_raise_value_errors_naming_the_action():
    env = BatchedHoverEnv(3, seed=0)
    with pytest.raises(ValueError, match=r"action has shape \[3, 3\], expected \[3, 4\]"):
        env.step(torch.zeros(3, 3))
    bad = torch.zeros(3, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"action holds a non-finite value nan at index \(1, 2\)"):
        env.step(bad)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="action holds a non-finite value inf"):
        env.step(bad.numpy())
    single = envs.HoverEnv()
    single.reset(seed=0)
    with pytest.raises(ValueError, match=r"action has shape \[3\], expected \[4\]"):
        single.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="action holds a non-finite value nan"):
        single.step(np.array([0, 0, math.nan, 0], dtype=np.float32))


def test_reward_is_eq8_of_the_reached_state_and_the_clipped_action_with_the_set_progress():
    env = BatchedHoverEnv(3, seed=4)
    env.set_progress(0.0)
    a = torch.tensor([[2.0, -3.0, 0.3, 0.5]]).repeat(3, 1)   # outside [-1, 1]: clipped
    _, rew, _, _, info = env.step(a)
    clipped = a.clamp(-1, 1)
    expected = task.reward(info["next_state"], clipped, env.target, task.curriculum(0.0))
    assert torch.allclose(rew, expected, atol=1e-6)
    assert torch.allclose(env.action_history[:, -1], clipped)
    env.set_progress(1.0)
    _, rew_end, _, _, info = env.step(clipped)
    assert torch.allclose(rew_end, task.reward(info["next_state"], clipped, env.target,
                                               task.eval_coefficients()), atol=1e-6)


def test_action_history_keeps_the_last_32_actions_oldest_first():
    env = BatchedHoverEnv(2, seed=0)
    env.reset(state=_hover_states(2))
    fill = task.initial_action_history(env.state, PARAMS)[0, 0]
    for k in range(40):
        env.step(torch.full((2, 4), PARAMS.hover_action + 0.001 * (k - 20)))
        if k == 9:  # 10 actions taken: 22 fill entries, then actions 0..9
            priv = env.privileged_obs()
            assert torch.allclose(priv[0, 18:22], fill)
            assert priv[0, 18 + 4 * 22].item() == pytest.approx(PARAMS.hover_action - 0.020, abs=1e-6)
    hist = env.action_history[0, :, 0]  # after 40 actions: actions 8..39
    expected = torch.tensor([PARAMS.hover_action + 0.001 * (k - 20) for k in range(8, 40)])
    assert torch.allclose(hist, expected, atol=1e-6)


def test_a_perfect_hover_lasts_500_steps_scores_about_500_and_is_truncated():
    env = BatchedHoverEnv(2, seed=0, dtype=torch.float64)
    env.reset(state=_hover_states(2).double())
    a = torch.full((2, 4), PARAMS.hover_action, dtype=torch.float64)
    for k in range(500):
        _, rew, term, trunc, info = env.step(a)
        assert not term.any()
        assert trunc.all() == (k == 499)
    assert info["episode_length"].tolist() == [500, 500]
    # per step: 1 - 0.5 * 4 * (hover_action - 0.334)^2 = 1 - 1.6e-9 (end-of-curriculum coefficients)
    assert info["episode_return"].tolist() == pytest.approx([500.0, 500.0], abs=1e-5)
    assert env.steps.tolist() == [0, 0]


def test_pybullet_backend_vector_env_autoresets_like_the_batched_one():
    vec = envs.HoverVectorEnv(num_envs=2, backend="pybullet", seed=0)
    s0 = _hover_states(2)
    s0[0, POS.start] = 0.595
    s0[0, VEL.start] = 1.0
    vec.env.reset(state=s0)
    obs, rew, term, trunc, info = vec.step(np.full((2, 4), PARAMS.hover_action, dtype=np.float32))
    assert term.tolist() == [True, False]
    assert info["final_obs"][0, 0] == pytest.approx(0.605, abs=1e-3)
    assert abs(obs[1, 2]) < 1e-3 and (np.abs(obs[0, :3]) <= 0.2 + 1e-6).all()
    assert vec.env.state[1, ROTOR].tolist() == pytest.approx([PARAMS.hover_rotor_speed] * 4, rel=1e-5)
    vec.close()
