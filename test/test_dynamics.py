"""The batched l2f Crazyflie model: hover, free fall, sign conventions, motor lag, RK4, bad input,
NaN isolation. Real torch, both presets."""
import math

import numpy as np
import pytest
import torch

from snn_drone.core.sim.dynamics import QuadrotorDynamics
from snn_drone.core.common.layout import ANGVEL, POS, QUAT, ROTOR, VEL
from snn_drone.core.sim.params import load_preset

PRESETS = ["cf21_paper", "cf21_l2f2"]


def _model(preset, dtype=torch.float64):
    return QuadrotorDynamics(load_preset(preset), dtype=dtype)


def _run(dyn, state, action, steps):
    states = [state]
    for _ in range(steps):
        state = dyn.step(state, action)
        states.append(state)
    return torch.stack(states)


@pytest.mark.parametrize("preset", PRESETS)
def test_hover_throttle_holds_altitude_within_1mm_over_1s_float32(preset):
    dyn = _model(preset, torch.float32)
    p = dyn.params
    s0 = dyn.hover_state(2, position=[[0.0, 0.0, 1.0], [1.0, -2.0, 0.5]])
    traj = _run(dyn, s0, torch.full((2, 4), p.hover_action), 100)
    drift_m = (traj[:, :, POS] - s0[:, POS]).abs().max().item()
    assert drift_m < 1e-3
    assert traj[-1, :, ANGVEL].abs().max().item() < 1e-6
    # the derived hover speed: four rotors carry the weight
    assert 4 * p.thrust_n(p.hover_rotor_speed) == pytest.approx(p.mass_kg * p.gravity_mps2, rel=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
def test_free_fall_with_rotors_off_matches_g_and_the_thrust_floor(preset):
    dyn = _model(preset)
    p = dyn.params
    s0 = dyn.hover_state(1, position=[0.0, 0.0, 10.0])
    s0[:, ROTOR] = p.rotor_speed_min
    traj = _run(dyn, s0, -torch.ones(1, 4), 100)
    # rotors at their minimum give 4 * T(min) of thrust (0 for cf21_paper, 4 c0 for cf21_l2f2)
    accel = -p.gravity_mps2 + 4 * p.thrust_n(p.rotor_speed_min) / p.mass_kg
    t = torch.arange(101, dtype=torch.float64) * p.dt_s
    z_expected = 10.0 + 0.5 * accel * t ** 2
    assert (traj[:, 0, 2] - z_expected).abs().max().item() < 1e-9
    assert traj[-1, 0, VEL][2].item() == pytest.approx(accel * 1.0, abs=1e-9)
    if preset == "cf21_paper":
        assert traj[-1, 0, 2].item() == pytest.approx(10.0 - 0.5 * 9.81, abs=1e-9)


def _differential(dyn, weights, delta=0.05):
    return (dyn.params.hover_action + delta * torch.as_tensor(weights, dtype=dyn.dtype)).reshape(1, 4)


@pytest.mark.parametrize("preset", PRESETS)
def test_positive_yaw_torque_command_yaws_counter_clockwise(preset):
    dyn = _model(preset)
    dirs = dyn.params.rotor_torque_directions  # -1, +1, -1, +1: raise rotors 1, 3
    traj = _run(dyn, dyn.hover_state(1, [0, 0, 1.0]), _differential(dyn, dirs), 20)
    omega = traj[-1, 0, ANGVEL]
    assert omega[2].item() > 0.1
    assert omega[:2].abs().max().item() < 1e-9
    q = traj[-1, 0, QUAT]
    yaw = math.atan2(2 * (q[0] * q[3] + q[1] * q[2]).item(), 1 - 2 * (q[2] ** 2 + q[3] ** 2).item())
    assert yaw > 0.0


@pytest.mark.parametrize("preset", PRESETS)
def test_roll_command_raising_left_rotors_rolls_positive_and_accelerates_towards_minus_y(preset):
    dyn = _model(preset)
    left = [1.0 if r[1] > 0 else -1.0 for r in dyn.params.rotor_positions_m]  # rotors 2, 3 up
    traj = _run(dyn, dyn.hover_state(1, [0, 0, 1.0]), _differential(dyn, left, 0.02), 20)
    last = traj[-1, 0]
    assert last[ANGVEL][0].item() > 0.1
    assert last[VEL][1].item() < -1e-3          # world y acceleration from rest is negative
    assert abs(last[VEL][0].item()) < 1e-9


@pytest.mark.parametrize("preset", PRESETS)
def test_pitch_command_raising_rear_rotors_pitches_nose_down_and_accelerates_towards_plus_x(preset):
    dyn = _model(preset)
    rear = [1.0 if r[0] < 0 else -1.0 for r in dyn.params.rotor_positions_m]  # rotors 1, 2 up
    traj = _run(dyn, dyn.hover_state(1, [0, 0, 1.0]), _differential(dyn, rear, 0.02), 20)
    last = traj[-1, 0]
    assert last[ANGVEL][1].item() > 0.1
    assert last[VEL][0].item() > 1e-3
    assert abs(last[VEL][1].item()) < 1e-9


def _time_to_63_percent(fraction, dt):
    """Time where -ln(1 - fraction) reaches 1, interpolated linearly between steps (exact for a
    true exponential)."""
    g = -np.log(1.0 - np.asarray(fraction))
    k = int(np.argmax(g >= 1.0))
    return dt * (k - 1 + (1.0 - g[k - 1]) / (g[k] - g[k - 1]))


@pytest.mark.parametrize("preset,direction", [("cf21_paper", "rising"), ("cf21_paper", "falling"),
                                              ("cf21_l2f2", "rising"), ("cf21_l2f2", "falling")])
def test_motor_lag_reaches_63_percent_of_a_step_in_one_time_constant(preset, direction):
    dyn = _model(preset)
    p = dyn.params
    s0 = dyn.hover_state(1, [0, 0, 100.0])
    start, target, action = ((p.rotor_speed_min, p.rotor_speed_max, 1.0) if direction == "rising"
                             else (p.rotor_speed_max, p.rotor_speed_min, -1.0))
    s0[:, ROTOR] = start
    traj = _run(dyn, s0, torch.full((1, 4), action), 60)
    frac = ((traj[:, 0, ROTOR] - start) / (target - start)).numpy()
    assert np.ptp(frac, axis=1).max() < 1e-12            # four rotors alike
    tau = p.motor_time_constant_rising_s if direction == "rising" else p.motor_time_constant_falling_s
    assert _time_to_63_percent(frac[:, 0], p.dt_s) == pytest.approx(tau, abs=1e-5)
    steps = np.arange(61)
    # the whole curve is the exponential, up to RK4 error (~x^5/120 per step, x = dt / tau)
    assert np.abs(frac[:, 0] - (1 - np.exp(-steps * p.dt_s / tau))).max() < 1e-5


def test_motor_lag_step_is_rk4_not_euler():
    dyn = _model("cf21_l2f2")
    p = dyn.params
    s0 = dyn.hover_state(1, [0, 0, 100.0])
    s0[:, ROTOR] = 0.0
    s1 = dyn.step(s0, torch.ones(1, 4))
    x = p.dt_s / p.motor_time_constant_rising_s
    rk4_fraction = 1 - (1 - x + x ** 2 / 2 - x ** 3 / 6 + x ** 4 / 24)
    assert s1[0, ROTOR][0].item() == pytest.approx(rk4_fraction, abs=1e-14)
    assert abs(s1[0, ROTOR][0].item() - x) > 1e-2  # Euler would give x


@pytest.mark.parametrize("preset", PRESETS)
def test_torque_free_tumbling_conserves_world_angular_momentum_and_energy(preset):
    dyn = _model(preset)
    p = dyn.params
    s = dyn.hover_state(1, [0, 0, 1.0])
    s[:, ROTOR] = 0.0 if p.thrust_coefficients[0] == 0 else s[:, ROTOR]
    s[0, ANGVEL] = torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64)
    act = torch.full((1, 4), -1.0 if p.thrust_coefficients[0] == 0 else p.hover_action)
    J = torch.tensor(p.inertia_kgm2, dtype=torch.float64)

    def momentum(state):
        w, x, y, z = state[0, QUAT].tolist()
        R = torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                          [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                          [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]],
                         dtype=torch.float64)
        omega = state[0, ANGVEL]
        return R @ (J * omega), 0.5 * (J * omega * omega).sum()

    L0, E0 = momentum(s)
    traj = _run(dyn, s, act, 100)
    L1, E1 = momentum(traj[-1])
    assert (L1 - L0).abs().max().item() < 1e-6 * L0.norm().item()
    assert E1.item() == pytest.approx(E0.item(), rel=1e-6)
    assert (traj[-1, 0, ANGVEL] - s[0, ANGVEL]).abs().max().item() > 0.1  # it really tumbles


def test_action_maps_to_rotor_speed_setpoint_and_is_clipped():
    dyn = _model("cf21_paper")
    sp = dyn.action_to_rotor_speed(torch.tensor([[-1.0, 0.0, 1.0, 3.0]], dtype=torch.float64))
    assert sp.tolist() == [[0.0, 10851.0, 21702.0, 21702.0]]
    p = dyn.params
    hover = dyn.action_to_rotor_speed(torch.full((1, 4), p.hover_action, dtype=torch.float64))
    assert hover[0, 0].item() == pytest.approx(p.hover_rotor_speed, rel=1e-12)
    assert p.hover_throttle == pytest.approx(0.6670265, abs=1e-6)


def test_bad_state_shape_or_nan_raises_naming_state_and_field():
    dyn = _model("cf21_paper")
    good = dyn.hover_state(3)
    act = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"state has shape \[3, 16\], expected \[any, 17\].*position3"):
        dyn.step(good[:, :16], act)
    bad = good.clone()
    bad[1, 5] = float("nan")
    with pytest.raises(ValueError, match=r"state holds a non-finite value nan at index \(1, 5\) "
                                         r"\(field quaternion\[2\]\)"):
        dyn.step(bad, act)
    bad = good.clone()
    bad[2, 11] = float("inf")
    with pytest.raises(ValueError, match=r"state .*\(field angular_velocity\[1\]\)"):
        dyn.step(bad, act)


def test_bad_action_shape_or_nan_raises_naming_action_and_field():
    dyn = _model("cf21_paper")
    s = dyn.hover_state(3)
    with pytest.raises(ValueError, match=r"action has shape \[3, 3\], expected \[3, 4\]"):
        dyn.step(s, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"action has shape \[2, 4\], expected \[3, 4\]"):
        dyn.step(s, torch.zeros(2, 4))
    act = torch.zeros(3, 4)
    act[0, 2] = float("nan")
    with pytest.raises(ValueError, match=r"action holds a non-finite value nan at index \(0, 2\) "
                                         r"\(field motor_command\[2\]\)"):
        dyn.step(s, act)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_in_one_drone_leaves_other_drones_bit_identical(dtype):
    dyn = _model("cf21_l2f2", dtype)
    gen = torch.Generator().manual_seed(1)
    s = dyn.hover_state(64, [0, 0, 1.0])
    s[:, ANGVEL] = torch.randn(64, 3, generator=gen, dtype=dtype)
    s[:, ROTOR] = torch.rand(64, 4, generator=gen, dtype=dtype)
    acts = (torch.rand(10, 64, 4, generator=gen, dtype=dtype) * 2 - 1)
    poisoned, poisoned_act = s.clone(), acts.clone()
    poisoned[17, 11] = float("nan")     # NaN body rate in drone 17
    poisoned_act[:, 40, 1] = float("inf")  # inf command for drone 40
    a, b = s, poisoned
    for t in range(10):
        a = dyn.step(a, acts[t], validate=False)
        b = dyn.step(b, poisoned_act[t], validate=False)
    others = [i for i in range(64) if i not in (17, 40)]
    assert torch.equal(a[others], b[others])
    assert torch.isnan(b[17]).any()
    assert torch.isfinite(a).all()


def test_step_accepts_any_batch_size_and_keeps_quaternions_unit():
    dyn = _model("cf21_paper", torch.float32)
    for batch in (1, 7, 300):
        s = dyn.hover_state(batch)
        s[:, ANGVEL] = 5.0
        for _ in range(10):
            s = dyn.step(s, torch.zeros(batch, 4))
        assert s.shape == (batch, 17) and s.dtype == torch.float32
        assert (s[:, QUAT].norm(dim=1) - 1).abs().max().item() < 1e-6


@pytest.mark.parametrize("preset", PRESETS)
def test_hover_state_is_an_equilibrium_of_the_state_derivative(preset):
    dyn = _model(preset)
    s = dyn.hover_state(2, [[0.0, 0.0, 1.0], [3.0, 2.0, 1.0]])
    d = dyn.state_derivative(s, dyn.action_to_rotor_speed(torch.full((2, 4), dyn.params.hover_action,
                                                                      dtype=torch.float64)))
    assert d.shape == (2, 17)
    assert d.abs().max().item() < 1e-12
    s[:, VEL] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    d = dyn.state_derivative(s, s[:, ROTOR])
    assert torch.equal(d[:, POS], s[:, VEL])  # d(position)/dt is the world velocity
