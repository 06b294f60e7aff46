"""The geometric hover controller (the guide's teacher) stabilises the real dynamics."""
import math

import torch

from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.sim.controller import GeometricController
from snn_drone.core.sim.params import load_preset


def test_recovers_from_offset_velocity_and_tilt_back_to_the_target():
    params = load_preset("cf21_paper")
    env = BatchedHoverEnv(3, seed=0, autoreset=False)
    s = env._dynamics.hover_state(3, position=[0.0, 0.0, 1.0])
    s[0, 0] += 0.2                                          # 0.2 m off in x
    s[1, 7] += 1.0                                          # 1 m/s in x
    a = math.radians(30)
    s[2, 3:7] = torch.tensor([math.cos(a / 2), math.sin(a / 2), 0.0, 0.0])  # 30 deg roll
    env.reset(state=s)
    ctl = GeometricController(params)
    with torch.no_grad():
        for _ in range(300):
            _, _, term, _, _ = env.step(ctl(env.privileged_obs()))
            assert not term.any()
    err = (env.state[:, :3] - env.target).norm(dim=1)
    assert err.max() < 0.05, err
    assert env.state[:, 7:13].abs().max() < 0.2


def test_most_drones_with_rotors_at_hover_survive_the_paper_initial_states():
    params = load_preset("cf21_paper")
    env = BatchedHoverEnv(100, seed=0, autoreset=False)
    env.reset(seed=3)
    s = env.state.clone()
    s[:, 13:17] = params.hover_rotor_speed      # the random initial rotor speeds are the hard part
    env.reset(state=s)
    alive = torch.ones(100, dtype=torch.bool)
    ctl = GeometricController(params)
    with torch.no_grad():
        for _ in range(100):
            _, _, term, _, _ = env.step(ctl(env.privileged_obs()))
            alive &= ~term
    assert alive.float().mean() >= 0.75
