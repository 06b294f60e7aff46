"""Bridge conversions without a radio: cflib log values (named as the firmware's log variables)
-> the 17-value state, with units (mm, mrad/s, deg/s) and frames checked end to end through the
task's observation; the compressed quaternion; log blocks; rotor-speed estimate; crazyflies.yaml."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snn_drone.core.common import layout
from snn_drone.core.env import task
from snn_drone.core.common.config import config_dir
from snn_drone.core.deploy.crazyflie_state import (LOG_PAYLOAD_MAX_BYTES, LogAssembler, RotorSpeedEstimate,
                                            block_bytes, compress_quaternion, decompress_quaternion,
                                            log_blocks, state_from_log)
from snn_drone.core.sim.params import load_preset
from snn_drone.core.deploy.robot_config import load_crazyflies, parse_crazyflies

ROLL30 = (math.cos(math.radians(15)), math.sin(math.radians(15)), 0.0, 0.0)  # w, x, y, z: +30 deg about x


def float_values(pos=(0.1, -0.2, 1.0), vel=(0.5, 0.0, -0.25), quat=ROLL30, gyro_dps=(90.0, 10.0, -45.0), vbat=3.9):
    w, x, y, z = quat
    return {"stateEstimate.x": pos[0], "stateEstimate.y": pos[1], "stateEstimate.z": pos[2],
            "stateEstimate.vx": vel[0], "stateEstimate.vy": vel[1], "stateEstimate.vz": vel[2],
            "stateEstimate.qw": w, "stateEstimate.qx": x, "stateEstimate.qy": y, "stateEstimate.qz": z,
            "gyro.x": gyro_dps[0], "gyro.y": gyro_dps[1], "gyro.z": gyro_dps[2], "pm.vbat": vbat}


def compressed_values(pos=(0.1, -0.2, 1.0), vel=(0.5, 0.0, -0.25), quat=ROLL30, gyro_dps=(90.0, 10.0, -45.0), vbat=3.9):
    """What the firmware's stateEstimateZ block sends for the same physical state."""
    w, x, y, z = quat
    mrad = [round(math.radians(g) * 1000) for g in gyro_dps]
    return {**{f"stateEstimateZ.{a}": round(p * 1000) for a, p in zip("xyz", pos)},
            **{f"stateEstimateZ.v{a}": round(v * 1000) for a, v in zip("xyz", vel)},
            "stateEstimateZ.quat": compress_quaternion(x, y, z, w),
            "stateEstimateZ.rateRoll": mrad[0], "stateEstimateZ.ratePitch": -mrad[1],  # legacy pitch sign
            "stateEstimateZ.rateYaw": mrad[2], "pm.vbatMV": round(vbat * 1000)}


def test_float_log_values_fill_each_state_field_in_si_units():
    rotor = [100.0, 200.0, 300.0, 400.0]
    s, vbat = state_from_log(float_values(), rotor)
    assert s.shape == (layout.STATE_DIM,) == (17,)
    np.testing.assert_allclose(s[layout.POS], [0.1, -0.2, 1.0])
    np.testing.assert_allclose(s[layout.VEL], [0.5, 0.0, -0.25])
    np.testing.assert_allclose(s[layout.QUAT], ROLL30, atol=1e-15)
    np.testing.assert_allclose(s[layout.ANGVEL], [math.pi / 2, math.radians(10), -math.pi / 4], rtol=1e-12)
    np.testing.assert_array_equal(s[layout.ROTOR], rotor)
    assert vbat == 3.9


def test_compressed_block_gives_the_same_state_within_its_quantisation_and_pitch_sign():
    f, _ = state_from_log(float_values(), np.zeros(4))
    c, vbat = state_from_log(compressed_values(), np.zeros(4), variant="compressed")
    assert np.abs(c[layout.POS] - f[layout.POS]).max() <= 0.0005  # 1 mm steps
    assert np.abs(c[layout.VEL] - f[layout.VEL]).max() <= 0.0005
    assert np.abs(c[layout.ANGVEL] - f[layout.ANGVEL]).max() <= 0.0005  # 1 mrad/s steps
    assert c[layout.ANGVEL][1] > 0.17  # ratePitch -175 mrad/s is +10 deg/s about body y
    assert abs(abs(float(c[layout.QUAT] @ f[layout.QUAT])) - 1) < 1e-5
    assert vbat == 3.9


def test_frames_end_to_end_a_30_degree_roll_tilts_body_z_towards_minus_world_y():
    """Through task.observation: the observation's rotation matrix maps body z to
    (0, -sin 30, cos 30) for +30 deg about x, as the simulator's state convention does."""
    s, _ = state_from_log(float_values(pos=(0.0, 0.0, 1.0)), np.zeros(4))
    obs = task.observation(torch.as_tensor(s)[None], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))[0]
    rot = obs[layout.OBS_ROT].reshape(3, 3).numpy()
    np.testing.assert_allclose(rot[:, 2], [0.0, -0.5, math.cos(math.radians(30))], atol=1e-12)
    np.testing.assert_allclose(obs[layout.OBS_POS_ERR].numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(obs[layout.OBS_ANGVEL].numpy(), s[layout.ANGVEL])


def test_decompress_quaternion_matches_the_firmware_bit_layout():
    # largest = x (index 0), w magnitude 511 -> |w| = sqrt(1/2): q = (sqrt(1/2), 0, 0, sqrt(1/2))
    np.testing.assert_allclose(decompress_quaternion(511), [math.sqrt(0.5), 0, 0, math.sqrt(0.5)], atol=1e-12)
    # largest = w (index 3); x: sign bit set, magnitude 72 -> x = -72/511 sqrt(1/2); y = z = 0
    comp = (3 << 30) | (((1 << 9) | 72) << 20)
    x, y, z, w = decompress_quaternion(comp)
    assert x == pytest.approx(-72 / 511 * math.sqrt(0.5)) and y == 0 and z == 0
    assert w == pytest.approx(math.sqrt(1 - x * x))
    assert decompress_quaternion(3 << 30) == (0.0, 0.0, 0.0, 1.0)
    assert compress_quaternion(-0.1, 0.0, 0.0, math.sqrt(0.99)) == comp
    rng = np.random.default_rng(0)
    worst = 0.0
    for q in rng.standard_normal((1000, 4)):
        q /= np.linalg.norm(q)
        d = np.array(decompress_quaternion(compress_quaternion(*q)))
        worst = max(worst, math.degrees(2 * math.acos(min(1.0, abs(float(d @ q))))))
    assert worst < 0.35  # 9-bit components: a few tenths of a degree at most
    with pytest.raises(ValueError, match="not a uint32"):
        decompress_quaternion(1 << 32)


def test_implausible_units_and_missing_or_bad_values_are_named():
    with pytest.raises(ValueError, match=r"angular_velocity\[0\] = 43\.6.* exceeds the plausible 35\.0 rad/s"):
        state_from_log(float_values(gyro_dps=(2500.0, 0, 0)), np.zeros(4))
    with pytest.raises(ValueError, match=r"position\[2\] = 1000 m exceeds"):
        state_from_log(float_values(pos=(0.0, 0.0, 1000.0)), np.zeros(4))  # millimetres read as metres
    with pytest.raises(ValueError, match="quaternion has norm 2"):
        state_from_log(float_values(quat=(2.0, 0.0, 0.0, 0.0)), np.zeros(4))
    with pytest.raises(ValueError, match=r"non-finite value nan .*field velocity\[1\]"):
        state_from_log(float_values(vel=(0.0, float("nan"), 0.0)), np.zeros(4))
    values = float_values()
    del values["gyro.z"]
    with pytest.raises(KeyError, match="gyro.z"):
        state_from_log(values, np.zeros(4))
    with pytest.raises(ValueError, match=r"rotor_speed has shape \[3\]"):
        state_from_log(float_values(), np.zeros(3))


def test_log_blocks_fit_the_cflib_payload_and_cover_the_state():
    for variant, n_blocks in (("float", 3), ("compressed", 1)):
        blocks = log_blocks(variant)
        assert len(blocks) == n_blocks
        assert all(block_bytes(b) <= LOG_PAYLOAD_MAX_BYTES for _, b in blocks)
    assert sum(len(b) for _, b in log_blocks("float")) == 14
    assert block_bytes(log_blocks("compressed")[0][1]) == 24
    with pytest.raises(ValueError, match="log variant"):
        log_blocks("packed")


def test_log_assembler_merges_blocks_within_the_skew_and_handles_24_bit_wrap():
    asm = LogAssembler("float", max_skew_ms=15)
    v = float_values()
    parts = [{k: v[k] for k, _ in b} for _, b in log_blocks("float")]
    names = [n for n, _ in log_blocks("float")]
    assert asm.add(names[0], 1000, parts[0]) is None
    assert asm.add(names[1], 1001, parts[1]) is None
    t, merged = asm.add(names[2], 1002, parts[2])
    assert t == 1002 and merged == v
    # a block 40 ms older than the others does not make a sample until it is refreshed
    asm.add(names[0], 1010, parts[0])
    asm.add(names[1], 1050, parts[1])
    assert asm.add(names[2], 1050, parts[2]) is None
    assert asm.add(names[0], 1051, parts[0])[0] == 1051
    # timestamps wrap at 2^24 ms
    asm.add(names[0], (1 << 24) - 3, parts[0])
    asm.add(names[1], (1 << 24) - 1, parts[1])
    assert asm.add(names[2], 4, parts[2])[0] == 4
    with pytest.raises(ValueError, match="unknown log block"):
        asm.add("other", 0, {})


def test_rotor_speed_estimate_runs_the_model_motor_lag_on_commands():
    params = load_preset("cf21_paper")
    est = RotorSpeedEstimate(params, airborne=True)
    np.testing.assert_allclose(est.speed, params.hover_rotor_speed)
    for _ in range(20):
        est.update(np.full(4, params.hover_action))
    np.testing.assert_allclose(est.speed, params.hover_rotor_speed, rtol=1e-9)
    start = params.hover_rotor_speed
    for _ in range(15):  # one time constant (0.15 s) towards full speed
        speed = est.update(np.ones(4))
    frac = (speed[0] - start) / (params.rotor_speed_max - start)
    assert abs(frac - (1 - math.exp(-1))) < 1e-6
    est.reset(airborne=False)
    assert not est.speed.any()


def test_crazyflies_yaml_gives_robot_configs_and_errors_name_the_key():
    robots = load_crazyflies(config_dir() / "crazyflies.yaml")
    assert [(r.name, r.uri, r.initial_position_m, r.type, r.battery_critical_v) for r in robots] == [
        ("cf1", "radio://0/80/2M/E7E7E7E7E7", (0.0, 0.0, 0.0), "cf21_snn", 3.7)]
    assert robots[0].firmware_params == {}
    (sitl,) = load_crazyflies(config_dir() / "crazyflies_sitl.yaml")
    assert sitl.uri == "udp://127.0.0.1:19850" and sitl.firmware_params == {
        "pid_rate.yaw_kp": 30.0, "pid_rate.yaw_ki": 4.0, "pid_attitude.yaw_kp": 3.0}
    data = {"robots": {"a": {"uri": "radio://0/80/2M/E7E7E7E701", "initial_position": [1, 2, 0], "type": "t",
                             "firmware_params": {"kalman": {"pNAcc_xy": 1}}},
                       "b": {"enabled": False, "uri": "radio://0/80/2M/E7E7E7E702", "initial_position": [0, 0, 0],
                             "type": "t"}},
            "robot_types": {"t": {"battery": {"voltage_warning": 3.8}}}}
    (a,) = parse_crazyflies(data)
    assert a.initial_position_m == (1.0, 2.0, 0.0) and a.battery_warning_v == 3.8 and a.battery_critical_v is None
    assert a.extra == {"firmware_params": {"kalman": {"pNAcc_xy": 1}}}
    assert a.firmware_params == {"kalman.pNAcc_xy": 1}
    # crazyswarm2's merge: all, then the type, then the robot, per parameter
    data["all"] = {"firmware_params": {"commander": {"enHighLevel": True}, "kalman": {"pNAcc_xy": 0.5, "pNAcc_z": 2}}}
    data["robot_types"]["t"]["firmware_params"] = {"pid_rate": {"yaw_kp": 30.0}, "kalman": {"pNAcc_z": 3}}
    (a,) = parse_crazyflies(data)
    assert a.firmware_params == {"commander.enHighLevel": 1, "kalman.pNAcc_xy": 1, "kalman.pNAcc_z": 3,
                                 "pid_rate.yaw_kp": 30.0}
    assert [r.name for r in parse_crazyflies(data, include_disabled=True)] == ["a", "b"]

    def broken(**change):
        d = {"robots": {"cf2": {"uri": "radio://0/80/2M/E7E7E7E7E7", "initial_position": [0, 0, 0],
                                "type": "t", **change}}, "robot_types": {"t": {}}}
        return d
    bad = broken()
    del bad["robots"]["cf2"]["uri"]
    with pytest.raises(KeyError, match="robots.cf2 lacks 'uri'"):
        parse_crazyflies(bad)
    with pytest.raises(ValueError, match=r"robots.cf2.uri = 'radio://0/80/3M/E7'"):
        parse_crazyflies(broken(uri="radio://0/80/3M/E7"))
    with pytest.raises(ValueError, match="type = 'cf3' is not defined under robot_types"):
        parse_crazyflies(broken(type="cf3"))
    with pytest.raises(ValueError, match=r"initial_position = \[0, 0\], expected 3 finite numbers"):
        parse_crazyflies(broken(initial_position=[0, 0]))
    with pytest.raises(ValueError, match=r"robots.cf2.firmware_params.pid_rate.yaw_kp = 'fast', expected a finite number"):
        parse_crazyflies(broken(firmware_params={"pid_rate": {"yaw_kp": "fast"}}))
    with pytest.raises(ValueError, match=r"robots.cf2.firmware_params.pid_rate = 30, expected a mapping"):
        parse_crazyflies(broken(firmware_params={"pid_rate": 30}))
    two = broken()
    two["robots"]["cf3"] = dict(two["robots"]["cf2"])
    with pytest.raises(ValueError, match="share the uri"):
        parse_crazyflies(two)


@pytest.mark.parametrize("variant", ["float", "compressed"])
def test_a_firmware_without_power_management_logs_no_battery_and_a_missing_state_variable_is_named(variant):
    """CrazySim's SITL firmware has no pm.* variables: the blocks leave the battery out and the state
    comes without a voltage (the battery check is skipped); a missing state variable is an error."""
    full = {v for _, vs in log_blocks(variant) for v, _ in vs}
    battery = {"float": "pm.vbat", "compressed": "pm.vbatMV"}[variant]
    blocks = log_blocks(variant, has=lambda name: not name.startswith("pm."))
    assert {v for _, vs in blocks for v, _ in vs} == full - {battery}
    assert [n for n, _ in blocks] == [n for n, _ in log_blocks(variant)]
    values = (float_values if variant == "float" else compressed_values)()
    del values[battery]
    s, vbat = state_from_log(values, np.zeros(4), variant)
    assert vbat is None and s[layout.POS][2] == pytest.approx(1.0, abs=5e-4)
    gone = "gyro.x" if variant == "float" else "stateEstimateZ.quat"
    with pytest.raises(KeyError, match=gone):
        log_blocks(variant, has=lambda name: name != gone)
