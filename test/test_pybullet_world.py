"""The pybullet world against the batched model: hover, agreement over 1 s of random commands,
frames on reset, ground, independent drones, bad input. Real pybullet, real torch."""
import numpy as np
import pybullet as p
import pytest
import torch

from snn_drone.core.sim.dynamics import QuadrotorDynamics
from snn_drone.core.common.layout import ANGVEL, POS, QUAT, ROTOR, VEL
from snn_drone.core.sim.params import load_preset
from snn_drone.core.sim.pybullet_world import PybulletWorld

PRESETS = ["cf21_paper", "cf21_l2f2"]


def _hover_states(params, n, z=1.0):
    s = QuadrotorDynamics(params, dtype=torch.float64).hover_state(n, [0.0, 0.0, z]).numpy()
    s[:, 0] = np.arange(n)  # one metre apart
    return s


def _batched_trajectory(params, s0, actions):
    dyn = QuadrotorDynamics(params, dtype=torch.float64)
    s, out = torch.as_tensor(s0), [s0]
    for a in actions:
        s = dyn.step(s, torch.as_tensor(a))
        out.append(s.numpy())
    return np.stack(out)


def _pybullet_trajectory(params, s0, actions, substeps=1, ground=False):
    with PybulletWorld(params, s0.shape[0], ground=ground, substeps=substeps) as world:
        world.reset(s0)
        return np.stack([world.get_state()] + [world.step(a) for a in actions])


def _errors(a, b):
    qa, qb = a[..., QUAT], b[..., QUAT]
    sign = np.sign((qa * qb).sum(-1, keepdims=True))  # q and -q are the same rotation
    return {"position_m": np.abs(a[..., POS] - b[..., POS]).max(),
            "quaternion": np.abs(qa - sign * qb).max(),
            "velocity_mps": np.abs(a[..., VEL] - b[..., VEL]).max(),
            "angular_velocity_radps": np.abs(a[..., ANGVEL] - b[..., ANGVEL]).max(),
            "rotor_speed_rel": np.abs(a[..., ROTOR] - b[..., ROTOR]).max()}


@pytest.mark.parametrize("preset", PRESETS)
def test_hover_throttle_holds_altitude_within_1mm_over_1s_in_pybullet(preset):
    params = load_preset(preset)
    s0 = _hover_states(params, 2)
    traj = _pybullet_trajectory(params, s0, np.full((100, 2, 4), params.hover_action), ground=True)
    assert np.abs(traj[..., POS] - s0[:, POS]).max() < 1e-3
    assert np.abs(traj[..., ANGVEL]).max() < 1e-6


@pytest.mark.parametrize("preset", PRESETS)
def test_pybullet_agrees_with_batched_model_over_1s_of_random_commands(preset):
    """1 s of commands hover_action + 0.01 N(0, 1) (independent per motor and step) from hover at
    1 m, 4 drones, no ground: the drones drift and tilt (tens of degrees) but do not tumble.
    Reached (substeps=1): position 0.15 mm (cf21_paper) / 0.03 mm (cf21_l2f2), velocity 0.9e-3 /
    0.2e-3 m/s, body rates 1.3e-3 / 0.2e-3 rad/s; asserted: position 0.5 mm."""
    params = load_preset(preset)
    rng = np.random.default_rng(7)
    actions = params.hover_action + 0.01 * rng.standard_normal((100, 4, 4))
    s0 = _hover_states(params, 4)
    ref = _batched_trajectory(params, s0, actions)
    tilt_deg = np.degrees(np.arccos(1 - 2 * (ref[..., 4] ** 2 + ref[..., 5] ** 2)))
    assert 5.0 < tilt_deg.max() < 90.0  # the commands really move the drones, without flips
    err = _errors(_pybullet_trajectory(params, s0, actions), ref)
    assert err["position_m"] < 0.5e-3
    assert err["velocity_mps"] < 2e-3
    assert err["angular_velocity_radps"] < 2e-3
    assert err["quaternion"] < 1e-2
    assert err["rotor_speed_rel"] < 1e-9 * params.rotor_speed_max
    # pybullet's first-order integrator: ten substeps shrink the error about tenfold
    fine = _errors(_pybullet_trajectory(params, s0, actions, substeps=10), ref)
    assert fine["position_m"] < 0.2 * err["position_m"]
    assert fine["angular_velocity_radps"] < 0.2 * err["angular_velocity_radps"]


def test_reset_then_get_state_returns_the_state_with_body_rates_in_body_frame():
    params = load_preset("cf21_paper")
    rng = np.random.default_rng(0)
    s = _hover_states(params, 3)
    q = rng.standard_normal((3, 4))
    s[:, QUAT] = q / np.linalg.norm(q, axis=1, keepdims=True)
    s[:, VEL] = rng.standard_normal((3, 3))
    s[:, ANGVEL] = rng.standard_normal((3, 3))
    s[:, ROTOR] = rng.uniform(0, params.rotor_speed_max, (3, 4))
    with PybulletWorld(params, 3, ground=False) as world:
        world.reset(s)
        got = world.get_state()
    err = _errors(got, s)
    assert max(err.values()) < 1e-12


def test_ground_plane_stops_a_falling_drone_and_can_be_left_out():
    params = load_preset("cf21_paper")
    s0 = _hover_states(params, 1, z=0.3)
    s0[:, ROTOR] = 0.0
    off = np.full((100, 1, 4), -1.0)
    landed = _pybullet_trajectory(params, s0, off, ground=True)
    fell = _pybullet_trajectory(params, s0, off, ground=False)
    assert 0.0 < landed[-1, 0, 2] < 0.05 and abs(landed[-1, 0, VEL][2]) < 0.05
    assert fell[-1, 0, 2] == pytest.approx(0.3 - 0.5 * 9.81, abs=0.06)


def test_drones_do_not_collide_with_each_other():
    params = load_preset("cf21_l2f2")
    s0 = _hover_states(params, 1)
    rng = np.random.default_rng(3)
    actions = params.hover_action + 0.05 * rng.standard_normal((50, 1, 4))
    alone = _pybullet_trajectory(params, s0, actions)
    # three drones in the same place with the same commands: each flies as if alone
    stacked = _pybullet_trajectory(params, np.repeat(s0, 3, 0), np.repeat(actions, 3, 1))
    assert np.abs(stacked - alone).max() < 1e-12


def test_bad_state_or_action_raises_naming_array_and_field():
    params = load_preset("cf21_paper")
    with PybulletWorld(params, 2) as world:
        s = _hover_states(params, 2)
        with pytest.raises(ValueError, match=r"state has shape \[3, 17\], expected \[2, 17\]"):
            world.reset(np.repeat(s, 2, 0)[:3])
        bad = s.copy()
        bad[1, 8] = np.nan
        with pytest.raises(ValueError, match=r"state .*nan.*\(field velocity\[1\]\)"):
            world.reset(bad)
        world.reset(s)
        with pytest.raises(ValueError, match=r"action has shape \[2, 5\], expected \[2, 4\]"):
            world.step(np.zeros((2, 5)))
        act = np.zeros((2, 4))
        act[0, 3] = np.inf
        with pytest.raises(ValueError, match=r"action .*inf.*\(field motor_command\[3\]\)"):
            world.step(act)


def test_context_manager_disconnects_the_physics_client():
    with PybulletWorld(load_preset("cf21_paper"), 1) as world:
        cid = world._cid
        assert p.isConnected(physicsClientId=cid)
    assert not p.isConnected(physicsClientId=cid)
