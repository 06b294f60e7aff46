"""The SITL physics peer (`snn-drone sitl-peer`, core/deploy/sitl.py): its packet formats, the
inverse of the motor mapping, its simulated sensors, and the peer process on real UDP sockets
(always on, seconds), with the probe cflib's udp link needs (core/deploy/udp_probe.py). The flight
against CrazySim's SITL ``cf2`` is test/test_sitl_flight.py (gated by ``CRAZYSIM_CF2``)."""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from snn_drone.core.common import layout
from snn_drone.core.common.config import package_root
from snn_drone.core.deploy import sitl, sitl_link
from snn_drone.core.deploy.motor_mapping import MotorMappingConfig, action_to_ratio, ratio_to_action
from snn_drone.core.deploy.udp_probe import udp_address, wait_for_udp_crazyflie
from snn_drone.core.sim.params import available_presets, load_preset

ROOT = package_root()


# ---- the motor mapping and its inverse -------------------------------------------------------------
@pytest.mark.parametrize("preset", available_presets())
@pytest.mark.parametrize("mode", ["thrust", "rpm_linear"])
def test_ratio_to_action_inverts_action_to_ratio_wherever_the_mapping_does_not_clip(preset, mode):
    params = load_preset(preset)
    cfg = MotorMappingConfig(mode=mode, max_thrust_per_motor_n=0.15)
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (2000, 4))
    r = action_to_ratio(a, params, cfg)
    unclipped = ((r > 0) & (r < cfg.max_ratio)).all(1)
    assert unclipped.mean() > 0.5, "the test must cover most of the action box"
    np.testing.assert_allclose(ratio_to_action(r, params, cfg)[unclipped], a[unclipped], rtol=0, atol=1e-9)
    # and the other way: any reachable ratio comes back
    reachable = r[unclipped]
    np.testing.assert_allclose(action_to_ratio(ratio_to_action(reachable, params, cfg), params, cfg),
                               reachable, rtol=0, atol=1e-12)


def test_ratio_to_action_clips_unreachable_thrusts_to_the_rotor_limits():
    params = load_preset("cf21_l2f2")  # c0 > 0: no thrust below c0 at rotor speed 0
    cfg = MotorMappingConfig(max_thrust_per_motor_n=0.5)
    out = ratio_to_action(np.array([0.0, 0.001, 1.0, 0.15]), params, cfg)  # 0.11 N at full speed
    assert out[0] == out[1] == -1.0 and out[2] == 1.0 and -1 < out[3] < 1
    with pytest.raises(ValueError, match="motor ratio"):
        ratio_to_action(np.array([0.1, np.nan, 0.1, 0.1]), params)


def test_pwm_to_action_reads_the_pwm_as_the_firmwares_normalised_thrust():
    params = load_preset("cf21_paper")
    ratio = action_to_ratio(np.full(4, params.hover_action), params)
    pwm = np.round(ratio * sitl.PWM_FULL_SCALE)
    np.testing.assert_allclose(sitl.pwm_to_action(pwm, params), params.hover_action, atol=1e-4)


# ---- packets ---------------------------------------------------------------------------------------
def test_imu_packet_is_port_9_type_0_with_int16_accel_and_gyro_at_the_firmwares_scales():
    acc, gyro = np.array([0.3, -1.2, 9.81]), np.array([0.5, -2.0, 0.01])
    pk, sat = sitl.encode_imu(acc, gyro, 9.81)
    assert len(pk) == 14 and pk[0] == 0x90 and pk[1] == 0 and not sat
    raw = struct.unpack_from("<6h", pk, 2)
    assert raw[2] == round(1.0 / (32 / 65536))  # 1 g on z = 2048 LSB
    assert raw[3] == round(np.degrees(0.5) / (4000 / 65536))
    a2, g2 = sitl.decode_imu(pk, 9.81)
    np.testing.assert_allclose(a2, acc, atol=0.5 * 32 / 65536 * 9.81)
    np.testing.assert_allclose(g2, gyro, atol=np.radians(0.5 * 4000 / 65536))
    _, sat = sitl.encode_imu([0, 0, 20 * 9.81], [0, 0, 0], 9.81)
    assert sat, "17 g must report saturation of the +-16 g range"


def test_baro_ext_pose_and_motor_packets_round_trip_and_classify():
    pk = sitl.encode_baro(1.5)
    assert len(pk) == 14 and pk[:2] == b"\x90\x02"
    p, t, asl = sitl.decode_baro(pk)
    assert asl == pytest.approx(1.5) and p == pytest.approx(1013.25 - 0.18, abs=0.01) and t == 25.0
    pose = sitl.encode_ext_pose([1.0, -2.0, 0.5], [0.9, 0.1, -0.2, 0.3])
    assert len(pose) == 30 and pose[0] == (6 << 4 | 1) and pose[1] == 8
    pos, quat = sitl.decode_ext_pose(pose)
    np.testing.assert_allclose(pos, [1, -2, 0.5], atol=1e-6)
    np.testing.assert_allclose(quat, [0.9, 0.1, -0.2, 0.3], atol=1e-6)  # wire order x, y, z, w
    assert struct.unpack_from("<4f", pose, 14) == pytest.approx((0.1, -0.2, 0.3, 0.9))
    m = sitl.encode_motors([1, 2, 65535, 40000])
    assert len(m) == 9 and sitl.classify(m) == "motors" and sitl.decode_motors(m) == (1, 2, 65535, 40000)
    assert sitl.classify(b"\xf3") == "handshake"
    assert sitl.classify(b"\x90\x01") == "calibrated"
    assert sitl.classify(b"\x90\x00") == "sim"
    assert sitl.classify(b"\x5c\x01\x02") == "ground"  # a log packet: relayed to cflib
    with pytest.raises(ValueError, match="not a motor packet"):
        sitl.decode_motors(b"\x90\x01")


# ---- the simulated drone ---------------------------------------------------------------------------
def test_physics_rests_on_the_ground_reading_1_g_and_climbs_above_hover_thrust():
    params = load_preset("cf21_paper")
    phys = sitl.SitlPhysics(params)
    for _ in range(100):
        out = phys.tick()
    assert len(out) == 3  # the 100th tick: IMU, barometer, external pose
    acc, gyro = sitl.decode_imu(out[0])
    np.testing.assert_allclose(acc, [0, 0, 9.81], atol=0.01)
    np.testing.assert_allclose(gyro, 0, atol=1e-9)
    assert phys.true_state()[2] == 0.0
    hover = action_to_ratio(np.full(4, params.hover_action), params)[0] * sitl.PWM_FULL_SCALE
    phys.set_pwm([hover * 1.3] * 4)
    for _ in range(1000):  # the rotors spin up from rest with the preset's lag first
        phys.tick()
    s = phys.true_state()
    assert s[2] > 0.01 and abs(s[0]) < 1e-9 and abs(s[1]) < 1e-9
    acc, _ = sitl.decode_imu(phys.tick()[0])
    assert acc[2] > 9.81  # thrust above weight: the accelerometer reads more than 1 g
    phys.set_pwm([hover] * 4)  # the inverse mapping's hover PWM holds the climb rate
    for _ in range(1000):  # 6.7 motor time constants
        phys.tick()
    v1 = phys.true_state()[layout.VEL][2]
    for _ in range(200):
        phys.tick()
    assert abs(phys.true_state()[layout.VEL][2] - v1) < 0.01


def test_a_roll_pwm_difference_rolls_the_drone_the_firmwares_way():
    """M3 and M4 (the left motors, y > 0) up: positive body x rate, as the firmware's mixer expects."""
    params = load_preset("cf21_paper")
    phys = sitl.SitlPhysics(params, cfg=sitl.SitlConfig(start_position_m=(0, 0, 1)))
    phys.set_pwm([30000, 30000, 40000, 40000])
    for _ in range(20):
        out = phys.tick()
    _, gyro = sitl.decode_imu(out[0])
    assert gyro[0] > 0.01 and abs(gyro[1]) < 1e-3 and abs(gyro[2]) < 1e-3


def test_held_imu_mode_steps_the_dynamics_once_per_10_periods():
    phys = sitl.SitlPhysics(load_preset("cf21_paper"), cfg=sitl.SitlConfig(physics_every=10,
                                                                            start_position_m=(0, 0, 1)))
    pks = [phys.tick()[0] for _ in range(10)]
    assert pks[0] == b"\x90" + bytes(13), "free fall: the accelerometer reads 0"
    phys.set_pwm([30000, 30000, 40000, 40000])  # a roll: the gyro changes with each step
    pks = [phys.tick()[0] for _ in range(20)]
    assert len(set(pks[:10])) == 1 and len(set(pks[10:])) == 1 and pks[10] != pks[9]
    assert phys.time_s == pytest.approx(0.03) and phys.true_state()[2] == pytest.approx(1 - 0.5 * 9.81 * 0.03 ** 2, abs=1e-4)


def test_a_held_step_flies_the_mean_set_point_of_the_packets_since_the_last_step():
    """physics_every = 10: the stabilizer's 500 Hz packets between two steps are averaged (as set-points,
    which the motor lag filters), not the newest alone; no packet: the last command holds."""
    params = load_preset("cf21_paper")
    phys = sitl.SitlPhysics(params, cfg=sitl.SitlConfig(physics_every=10, start_position_m=(0, 0, 1)))
    lo, hi = [30000, 30000, 30000, 30000], [40000, 40000, 30000, 30000]
    for pwm in (lo, hi, lo, hi, lo):
        phys.set_pwm(pwm)
    phys.tick()
    expected = np.mean([sitl.pwm_to_action(p, params) for p in (lo, hi, lo, hi, lo)], axis=0)
    np.testing.assert_allclose(phys.action[0].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(phys.applied_pwm, [34000, 34000, 30000, 30000])
    assert phys.pwm == tuple(lo)  # the newest packet, as received
    for _ in range(10):
        phys.tick()
    np.testing.assert_allclose(phys.action[0].numpy(), expected, atol=1e-12)


def test_pacing_drops_far_late_ticks_instead_of_bursting_and_counts_late_ones():
    p = sitl.PacingStats(0.001, late_after_s=0.0005, drop_after_s=0.002)
    assert [p.decide(x) for x in (0.0, 0.0007, 0.0019, 0.003, 0.1)] == [True, True, True, False, False]
    assert (p.sent, p.late, p.dropped) == (3, 2, 2) and p.max_lag_s == 0.1


# ---- the peer process on real sockets ----------------------------------------------------------------
def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _recv_until(sock, pred, timeout_s=30.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            data, addr = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if pred(data):
            return data
    raise AssertionError("expected datagram did not arrive")


def _drain(sock):
    """Drop what waits in the socket. A firmware socket left unread fills with 1 kHz sensor packets
    (its receive buffer holds about 0.3 s of them) and the kernel then drops whatever comes next."""
    sock.setblocking(False)
    try:
        while True:
            sock.recvfrom(2048)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(0.2)


def _motor_beat(fw, fw_port, motors):
    """The firmware's motor packets every 2 ms while ``motors["run"]`` is True (paused while False,
    ended by None)."""
    while motors["run"] is not None:
        if motors["run"]:
            fw.sendto(sitl.encode_motors([motors["pwm"]] * 4), ("127.0.0.1", fw_port))
        time.sleep(0.002)


def test_peer_process_handshakes_streams_sensors_applies_motors_relays_and_answers_probes_once_calibrated(tmp_path):
    """The firmware side is played by a socket that follows the SITL cf2's protocol."""
    fw_port, cf_port = _free_udp_port(), _free_udp_port()
    stats = tmp_path / "stats.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peer = subprocess.Popen([sys.executable, "-m", "snn_drone.cli", "sitl-peer", "--firmware-port", str(fw_port),
                             "--cflib-port", str(cf_port), "--sensor-delay-s", "0", "--cf2", "",
                             "--stats", str(stats), "--trace", str(tmp_path / "trace.npz")],
                            env=env, stderr=subprocess.PIPE, text=True)
    fw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fw.settimeout(0.2)
    cf.settimeout(0.2)
    try:
        # handshake: the firmware repeats 0xF3 until it is answered
        end = time.monotonic() + 60
        while True:
            fw.sendto(b"\xf3", ("127.0.0.1", fw_port))
            try:
                if fw.recvfrom(64)[0] == b"\xf3":
                    break
            except socket.timeout:
                pass
            assert time.monotonic() < end, "no handshake answer"
        imu = _recv_until(fw, lambda d: d[:2] == b"\x90\x00")
        acc, _ = sitl.decode_imu(imu)
        np.testing.assert_allclose(acc, [0, 0, 9.81], atol=0.01)
        pose = _recv_until(fw, lambda d: d[0] == 0x61)
        assert sitl.decode_ext_pose(pose)[0][2] == 0.0
        # before calibration: the probe (the bridge's, before cflib connects) gets no answer
        uri = f"udp://127.0.0.1:{cf_port}"
        with pytest.raises(TimeoutError, match=rf"no answer from {uri} to \d+ probes in 0.5 s"):
            wait_for_udp_crazyflie(uri, timeout_s=0.5, interval_s=0.1)
        fw.sendto(b"\x90\x01", ("127.0.0.1", fw_port))  # gyro bias found
        # from now on the stabilizer runs: motor PWMs every 2 ms, as the real firmware sends them
        motors = {"pwm": 0, "run": True}
        beat = threading.Thread(target=_motor_beat, args=(fw, fw_port, motors), daemon=True)
        beat.start()
        assert wait_for_udp_crazyflie(uri, timeout_s=20.0, interval_s=0.1) < 20.0
        # relay: cflib -> firmware (paced) and firmware -> cflib; setpoints (port 7) are never resent
        _drain(fw)  # unread during the probes: full, so a relayed packet would be dropped by the kernel
        for i in range(20):
            cf.sendto(bytes([0x7c, i]), ("127.0.0.1", cf_port))
        got = []
        while len(got) < 20:
            d = _recv_until(fw, lambda d: d[0] == 0x7c)
            got.append(d[1])
        assert got == list(range(20)), "the relay keeps cflib's order and loses nothing"
        # a firmware that stalls (silent) gets nothing down until it has run again 50 ms: it would lose it
        motors["run"] = False
        time.sleep(0.1)
        _drain(fw)
        cf.sendto(b"\x7c\x40", ("127.0.0.1", cf_port))
        with pytest.raises(AssertionError, match="did not arrive"):
            _recv_until(fw, lambda d: d == b"\x7c\x40", timeout_s=0.3)
        motors["run"] = True
        assert _recv_until(fw, lambda d: d == b"\x7c\x40", timeout_s=5.0) == b"\x7c\x40"
        fw.sendto(b"\x5c\x07", ("127.0.0.1", fw_port))
        assert _recv_until(cf, lambda d: d[0] == 0x5c) == b"\x5c\x07"
        # a parameter-table request the firmware "lost" (no answer) comes again; both answered: cflib
        # gets one answer
        cf.sendto(b"\x2c\x02\x05\x00", ("127.0.0.1", cf_port))  # table item 5
        assert _recv_until(fw, lambda d: d[0] == 0x2c) == b"\x2c\x02\x05\x00"
        assert _recv_until(fw, lambda d: d[0] == 0x2c) == b"\x2c\x02\x05\x00"  # resent after 100 ms
        for _ in range(2):
            fw.sendto(b"\x2c\x02\x05\x00\x08ab", ("127.0.0.1", fw_port))
        cf.sendto(b"\x7c\x63", ("127.0.0.1", cf_port))
        _recv_until(fw, lambda d: d == b"\x7c\x63")
        fw.sendto(b"\x5c\x08", ("127.0.0.1", fw_port))  # after both answers: only one came first
        answers = []
        _recv_until(cf, lambda d: answers.append(d) or d == b"\x5c\x08")
        assert answers == [b"\x2c\x02\x05\x00\x08ab", b"\x5c\x08"], answers
        # motors: full PWM lifts the drone off the ground
        motors["pwm"] = 60000
        time.sleep(0.6)
        motors["run"] = None  # the beat ends
        # the PWM holds until the next motor packet: a pose above the ground follows
        _recv_until(fw, lambda d: d[0] == 0x61 and sitl.decode_ext_pose(d)[0][2] > 0.0, timeout_s=60)
    finally:
        peer.terminate()
        err = peer.communicate(timeout=30)[1]
    assert peer.returncode == 0, err
    assert "real-time priority" in err, err  # SCHED_FIFO 20 where permitted, else the warning
    s = json.loads(stats.read_text())
    assert s["fw_motors"] >= 200 and s["down_relayed"] == 23 and s["up_relayed"] == 3
    assert s["fw_stalls"] >= 1 and s["fw_longest_stall_ms"] >= 300, s
    assert s["requests_resent"] >= 1 and s["duplicate_answers_dropped"] == 1 and s["requests_pending"] == 0
    assert s["probes_answered"] >= 1 and s["probes"] > s["probes_answered"]
    assert s["imu_sent"] + s["imu_dropped"] > 0 and s["calibrated"]
    trace = np.load(tmp_path / "trace.npz")
    assert trace["states"].shape[1] == layout.STATE_DIM and trace["states"][-1, 2] > 0


def test_udp_probe_reads_udp_uris_only_and_names_a_closed_port_in_its_timeout():
    assert udp_address("udp://127.0.0.1:19850") == ("127.0.0.1", 19850)
    assert udp_address("radio://0/80/2M/E7E7E7E7E7") is None
    with pytest.raises(ValueError, match="expected udp://HOST:PORT"):
        udp_address("udp://127.0.0.1")
    port = _free_udp_port()  # nothing listens there: refused at once, retried until the timeout
    with pytest.raises(TimeoutError, match=f"udp://127.0.0.1:{port}"):
        wait_for_udp_crazyflie(f"udp://127.0.0.1:{port}", timeout_s=0.3, interval_s=0.05)


def test_firmware_liveness_holds_packets_while_the_motor_stream_pauses_and_until_it_ran_again():
    live = sitl_link.FirmwareLiveness(silent_after_s=0.02, resumed_s=0.05, max_hold_s=1.0)
    assert live.ready(0.0)  # no motor stream yet: nothing held
    for i in range(40):  # a motor packet every 2 ms from t = 0
        live.heard(0.002 * i)
    assert not live.ready(0.04) and live.ready(0.078) and live.ready(0.095)
    assert not live.ready(0.1) and not live.ready(1.0)  # paused: a stall, held
    assert live.heard(0.5) == pytest.approx(0.422)  # wakes after 422 ms: the stall it ends
    assert not live.ready(0.5) and not live.ready(0.53)
    for i in range(1, 30):
        assert live.heard(0.5 + 0.002 * i) is None
    assert live.ready(0.55)
    # motors stopped (supervisor locked): held 1 s, then packets flow without motors
    assert not live.ready(1.5) and live.ready(1.6)
    assert live.heard(5.0) is None  # motors again after 4.4 s: not a stall; 50 ms before packets go down
    assert not live.ready(5.01)
    assert live.summary() == {"fw_stalls": 1, "fw_longest_stall_ms": 422.0}
    with pytest.raises(ValueError, match="silent_after_s"):
        sitl_link.FirmwareLiveness(silent_after_s=0.0)


def test_request_resender_matches_answers_by_their_leading_bytes_and_gives_up_after_max_resends():
    r = sitl_link.RequestResender(timeout_s=0.1, max_resends=2)
    log_create = b"\x51\x06\x01\x07\x10"  # log block control: create block 1 (answer: command, id, error)
    r.sent(log_create, 0.0)
    r.sent(b"\x7c\x00", 0.0)  # a setpoint: no answer expected
    assert r.due(0.05) == [] and r.due(0.11) == [log_create]
    assert r.answer(b"\x51\x06\x02\x00", 0.12)  # block 2's answer: not this request's, relayed
    assert r.answer(b"\x51\x06\x01\x00", 0.13) and not r.answer(b"\x51\x06\x01\x11", 0.14)
    assert (r.resent, r.duplicates, r.pending) == (1, 1, [])
    r.sent(b"\xd1\x01", 1.0)  # platform version request, never answered
    assert [len(r.due(t)) for t in (1.2, 1.4, 1.6)] == [1, 1, 0]
    assert r.summary() == {"requests_resent": 3, "duplicate_answers_dropped": 1, "requests_given_up": 1,
                           "requests_pending": 0}


def test_peer_cpus_pins_the_peer_and_refuses_a_cpu_it_may_not_use(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "snn_drone.cli", "sitl-peer", "--firmware-port", str(_free_udp_port()),
            "--cflib-port", str(_free_udp_port()), "--cf2", "", "--realtime-priority", "0", "--duration-s", "0.5"]
    cpu = min(os.sched_getaffinity(0))
    ok = subprocess.run(base + ["--cpus", str(cpu)], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and f"on CPUs [{cpu}]" in ok.stderr, ok.stderr[-2000:]
    bad = subprocess.run(base + ["--cpus", "4096"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--cpus 4096: this process may run on CPUs" in bad.stderr, bad.stderr[-2000:]
