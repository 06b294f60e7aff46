"""The hover task: reward, termination, curriculum, observations and initial states, in numbers."""
import math

import pytest
import torch

from snn_drone.core.common import config
from snn_drone.core.env import task
from snn_drone.core.common.layout import ANGVEL, POS, QUAT, ROTOR, VEL
from snn_drone.core.sim.params import load_preset

S2 = math.sqrt(0.5)  # cos(45 deg) = sin(45 deg)
TARGET = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def _state(pos_err=(0, 0, 0), quat=(1, 0, 0, 0), vel=(0, 0, 0), rates=(0, 0, 0), rotors=(0, 0, 0, 0)):
    s = torch.zeros(1, 17, dtype=torch.float64)
    s[0, POS] = TARGET + torch.tensor(pos_err, dtype=torch.float64)
    s[0, QUAT] = torch.tensor(quat, dtype=torch.float64)
    s[0, VEL] = torch.tensor(vel, dtype=torch.float64)
    s[0, ANGVEL] = torch.tensor(rates, dtype=torch.float64)
    s[0, ROTOR] = torch.tensor(rotors, dtype=torch.float64)
    return s


def test_task_yaml_holds_exactly_the_dataclass_defaults():
    raw = config.load_yaml(task.task_config_path())
    assert set(raw) == {f for f in task.TaskConfig.__dataclass_fields__}
    assert task.load_task_config() == task.TaskConfig()
    assert task.TaskConfig().privileged_obs_dim == 146


def test_reward_of_a_fixed_state_equals_the_hand_computed_eq8_value():
    # error (0.1, -0.2, 0.3): |e|^2 = 0.14; v = (1, 0, -2): |v|^2 = 5; rolled 90 deg about x:
    # theta^2 = (pi/2)^2 = 2.4674011; a = (1, -1, 0.334, 0.334) against b = 2*0.667-1 = 0.334:
    # |a - b|^2 = 0.666^2 + 1.334^2 = 2.223112.
    s = _state(pos_err=(0.1, -0.2, 0.3), quat=(S2, S2, 0, 0), vel=(1, 0, -2), rates=(3, 3, 3))
    a = torch.tensor([[1.0, -1.0, 0.334, 0.334]], dtype=torch.float64)
    end = task.eval_coefficients()
    # 1 - 3.5*0.14 - 0.1*5 - 0.25*2.4674011 - 0.5*2.223112
    assert task.reward(s, a, TARGET, end).item() == pytest.approx(-1.7184062750680849, abs=1e-12)
    start = task.curriculum(0.0)
    # 1 - 1.0*0.14 - 0.01*5 - 0.25*2.4674011 - 0.14*2.223112
    assert task.reward(s, a, TARGET, start).item() == pytest.approx(-0.1180859550680849, abs=1e-12)


def test_reward_is_exactly_the_survival_bonus_when_hovering_at_the_target():
    s = _state(rotors=(14000, 14000, 14000, 14000))
    a = torch.full((1, 4), 2 * 0.667 - 1, dtype=torch.float64)
    assert task.reward(s, a, TARGET, task.eval_coefficients()).item() == 1.0
    assert task.eval_coefficients().action_baseline == pytest.approx(0.334, abs=1e-15)
    # and the preset's own hover action is within 1e-3 of the paper's C_rab
    assert load_preset("cf21_paper").hover_action == pytest.approx(0.334, abs=1e-3)


def test_orientation_cost_variants_give_their_documented_values():
    roll90 = torch.tensor([S2, S2, 0.0, 0.0], dtype=torch.float64)
    yaw90 = torch.tensor([S2, 0.0, 0.0, S2], dtype=torch.float64)
    upside_down = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert task.orientation_cost(roll90).item() == pytest.approx((math.pi / 2) ** 2, abs=1e-12)
    assert task.orientation_cost(upside_down).item() == pytest.approx(math.pi ** 2, abs=1e-12)
    assert task.orientation_cost(-roll90).item() == pytest.approx((math.pi / 2) ** 2, abs=1e-12)
    assert task.orientation_cost(roll90, "one_minus_w_squared").item() == pytest.approx(0.5, abs=1e-12)
    assert task.orientation_cost(roll90, "public_code").item() == pytest.approx(0.0, abs=1e-6)
    assert task.orientation_cost(yaw90, "public_code").item() == pytest.approx(2 * math.pi / 3, abs=1e-12)
    with pytest.raises(ValueError, match="'euler'.*rotation_angle_squared"):
        task.orientation_cost(roll90, "euler")


def test_termination_flags_match_the_thresholds_axis_by_axis():
    rows = [
        _state(),                              # at the target: fine
        _state(pos_err=(0.59, -0.59, 0.59)),   # just inside 0.6 m on every axis: fine
        _state(pos_err=(0, -0.61, 0)),         # y beyond 0.6 m
        _state(pos_err=(0, 0, 0.61)),          # z beyond 0.6 m
        _state(vel=(999, -999, 999), rates=(999, 999, -999)),  # fast but under 1000: fine
        _state(vel=(0, -1001, 0)),             # linear velocity beyond 1000 m/s
        _state(rates=(0, 0, 1001)),            # body rate beyond 1000 rad/s
        _state(rotors=(0, float("nan"), 0, 0)),  # NaN anywhere
        _state(quat=(float("inf"), 0, 0, 0)),  # inf anywhere
    ]
    got = task.terminated(torch.cat(rows), TARGET).tolist()
    assert got == [False, False, True, True, False, True, True, True, True]
    tight = task.TaskConfig(termination_linear_velocity_mps=10.0)
    assert task.terminated(rows[4], TARGET, tight).tolist() == [True]


def test_curriculum_start_and_end_equal_table5_and_levels_step_linearly_in_six():
    c0 = task.curriculum(0.0)
    assert (c0.position, c0.velocity, c0.action, c0.orientation, c0.survival, c0.action_baseline_throttle) \
        == (1.0, 0.01, 0.14, 0.25, 1.0, 0.667)
    c1 = task.curriculum(1.0)
    assert (c1.position, c1.velocity, c1.action, c1.orientation, c1.survival, c1.action_baseline_throttle) \
        == (3.5, 0.10, 0.50, 0.25, 1.0, 0.667)
    assert task.eval_coefficients() == c1
    # level = min(floor(6 p), 5); coefficient = start + (end - start) * level / 5
    assert [task.curriculum_level(p) for p in (0.0, 0.16, 1 / 6, 0.34, 0.5, 0.83, 5 / 6, 1.0)] \
        == [0, 0, 1, 2, 3, 4, 5, 5]
    expected_position = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    for level, pos in enumerate(expected_position):
        c = task.curriculum((level + 0.5) / 6)
        assert c.position == pytest.approx(pos, abs=1e-12)
        assert c.velocity == pytest.approx(0.01 + 0.018 * level, abs=1e-12)
        assert c.action == pytest.approx(0.14 + 0.072 * level, abs=1e-12)
        assert c.orientation == pytest.approx(0.25, abs=1e-15)
    assert task.curriculum(0.9) == c1
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="progress"):
            task.curriculum(bad)


def test_observation_of_known_quaternions_gives_known_rotation_matrices():
    yaw90 = _state(pos_err=(0.1, 0.2, -0.3), quat=(S2, 0, 0, S2), vel=(1, 2, 3), rates=(4, 5, 6))
    roll90 = _state(quat=(S2, S2, 0, 0))
    obs = task.observation(torch.cat([yaw90, roll90]), TARGET)
    assert obs.shape == (2, 18)
    expected_yaw = [0.1, 0.2, -0.3, 0, -1, 0, 1, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6]
    assert torch.allclose(obs[0], torch.tensor(expected_yaw, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(obs[1, 3:12], torch.tensor([1, 0, 0, 0, 0, -1, 0, 1, 0], dtype=torch.float64),
                          atol=1e-12)


def test_privileged_observation_appends_the_history_oldest_first():
    obs = torch.arange(36, dtype=torch.float32).reshape(2, 18)
    hist = torch.arange(32, dtype=torch.float32).reshape(1, 32, 1).expand(2, 32, 4) * torch.tensor([1., 1., 1., -1.])
    priv = task.privileged_observation(obs, hist)
    assert priv.shape == (2, 146)
    assert torch.equal(priv[:, :18], obs)
    assert priv[1, 18:22].tolist() == [0.0, 0.0, 0.0, 0.0]          # oldest action first
    assert priv[1, 22:26].tolist() == [1.0, 1.0, 1.0, -1.0]
    assert priv[1, 142:146].tolist() == [31.0, 31.0, 31.0, -31.0]    # most recent last


def test_initial_states_lie_within_and_cover_the_init_90_deg_bounds():
    params = load_preset("cf21_paper")
    n = 20000
    s = task.sample_initial_state(n, torch.Generator().manual_seed(3), params).double()
    err = s[:, POS] - TARGET
    guided = (err == 0).all(1) & (s[:, QUAT] == torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)).all(1)
    assert 0.09 < guided.double().mean().item() < 0.11                 # l2f guidance 0.1
    assert err.abs().max().item() <= 0.2
    assert err.min().item() < -0.199 and err.max().item() > 0.199
    # uniform per axis, not a ball: corners |e_i| > 0.15 on all axes (radius 0.26 > 0.2) occur
    # with probability 0.25^3 = 1.6% of unguided starts
    corners = (err[~guided].abs() > 0.15).all(1).double().mean().item()
    assert 0.011 < corners < 0.021
    assert torch.allclose(s[:, QUAT].norm(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-6)
    angle = torch.rad2deg(task.rotation_angle(s[:, QUAT]))
    assert angle.max().item() <= 90.0 + 1e-3 and angle.max().item() > 88.0
    # uniform over rotations (not over angles): P(angle <= 45 | angle <= 90)
    #   = (pi/4 - sin(pi/4)) / (pi/2 - 1) = 0.1371
    frac45 = (angle[~guided] <= 45.0).double().mean().item()
    assert abs(frac45 - 0.1371) < 0.012
    for sl, lim in ((VEL, 1.0), (ANGVEL, 1.0)):
        assert s[:, sl].abs().max().item() <= lim and s[:, sl].abs().max().item() > 0.999
    assert s[:, ROTOR].min().item() >= 0.0 and s[:, ROTOR].max().item() <= 21702.0
    assert s[:, ROTOR].min().item() < 50.0 and s[:, ROTOR].max().item() > 21650.0
    assert s[:, ROTOR].mean().item() == pytest.approx(21702.0 / 2, rel=0.01)
    again = task.sample_initial_state(n, torch.Generator().manual_seed(3), params)
    assert torch.equal(again.double(), s)


def test_initial_action_history_holds_the_actions_commanding_the_rotor_speeds():
    params = load_preset("cf21_paper")
    s = _state(rotors=(0.0, 21702.0, params.hover_rotor_speed, 21702.0 / 4))
    hist = task.initial_action_history(s, params)
    assert hist.shape == (1, 32, 4)
    assert hist[0, 0].tolist() == pytest.approx([-1.0, 1.0, params.hover_action, -0.5], abs=1e-12)
    assert torch.equal(hist[0, 31], hist[0, 0])
    hover = task.initial_action_history(s, params, task.TaskConfig(action_history_fill="hover"))
    assert hover[0, 5].tolist() == pytest.approx([0.33405] * 4, abs=1e-4)


def test_bad_task_config_values_name_the_key():
    with pytest.raises(ValueError, match="orientation_cost"):
        config.from_dict(task.TaskConfig, {"orientation_cost": "euler"})
    with pytest.raises(ValueError, match="'episode_steps' = 0"):
        task.TaskConfig(episode_steps=0)
    with pytest.raises(KeyError, match="reward_end.C_rp"):
        task.load_task_config(overrides={"reward_end": {"C_rp": 3.5}})
