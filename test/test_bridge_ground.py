"""The Crazyflie bridge in the ground mode, radio absent (a recorder takes the place of cflib's
Crazyflie object; the ROS side is real): with predict_steps the state topic carries the measured
state advanced through the commands streamed last, while pose and the safety checks keep the
measured one; stop_policy hands the motors back at the first calm state, or at the end of its wait."""
import math
import os
import time
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from std_msgs.msg import Float32MultiArray  # noqa: E402

from snn_drone.core.common import layout  # noqa: E402
from snn_drone.core.deploy.crazyflie_state import FLOAT_LOG_BLOCKS  # noqa: E402
from snn_drone.core.sim.prediction import PendingCommands  # noqa: E402
from snn_drone.nodes import arrays, crazyflie_bridge  # noqa: E402
from snn_drone.nodes.dds import localhost_defaults  # noqa: E402

from ros_helpers import CflibRecorder, fresh_domain_id  # noqa: E402


def _bridge(monkeypatch, *params):
    calls = []

    def connect(self):  # the recorder in place of cflib, and a firmware that has the app (snnmotor group)
        self.cf, self.has_app = CflibRecorder(calls), True
    monkeypatch.setattr(crazyflie_bridge.CrazyflieBridge, "_connect", connect)
    os.environ.update(localhost_defaults())
    args = ["--ros-args"] + [x for p in params for x in ("-p", p)]
    rclpy.init(domain_id=fresh_domain_id(), args=args)
    node = crazyflie_bridge.CrazyflieBridge()
    node.calls = calls
    return node


@pytest.fixture
def bridge(monkeypatch):
    node = _bridge(monkeypatch, "predict_steps:=2", "safety_overrides:='{hand_back_wait_s: 0.3}'")
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _feed_state(bridge, ts, z=1.0, gyro_deg_s=(0.0, 0.0, 0.0), vz=0.0):
    values = {"stateEstimate.x": 0.0, "stateEstimate.y": 0.0, "stateEstimate.z": z, "stateEstimate.vx": 0.0,
              "stateEstimate.vy": 0.0, "stateEstimate.vz": vz, "stateEstimate.qw": 1.0, "stateEstimate.qx": 0.0,
              "stateEstimate.qy": 0.0, "stateEstimate.qz": 0.0, "pm.vbat": 4.0, "gyro.x": gyro_deg_s[0],
              "gyro.y": gyro_deg_s[1], "gyro.z": gyro_deg_s[2]}
    for name, names, _ in FLOAT_LOG_BLOCKS:
        bridge._on_log(ts, {k: values[k] for k in names}, types.SimpleNamespace(name=name))


def _spin_until(node, pred, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not pred():
        rclpy.spin_once(node, timeout_sec=0.05)
    return pred()


def _cmd(bridge, action):
    bridge._on_cmd(arrays.pack(arrays.MOTOR_CMD, np.asarray([action], np.float32),
                               {"step": bridge.step, "guide_steps": 50, "safe": 0}))


def test_predict_steps_publishes_the_state_the_streamed_commands_lead_to_and_pose_stays_measured(bridge):
    got = {"state": [], "pose": []}
    probe = rclpy.create_node("probe")
    probe.create_subscription(Float32MultiArray, arrays.STATE.topic, lambda m: got["state"].append(m), 50)
    probe.create_subscription(PoseStamped, "cf1/pose", lambda m: got["pose"].append(m), 50)
    try:
        _feed_state(bridge, 100)
        bridge._takeoff(None, types.SimpleNamespace())
        assert bridge._start_policy(None, types.SimpleNamespace()).success
        # the reference: the same bookkeeping, fed what the bridge streams and its rotor model before each
        ref = PendingCommands(bridge.params, 2)
        up = np.full(4, 0.6)
        for k in range(3):  # full-ish throttle: the prediction climbs away from the measurement
            ref.sent(up, bridge.rotor.speed.copy())
            _cmd(bridge, up)
        measured = bridge.state.copy()
        measured[layout.ROTOR] = bridge.rotor.speed  # (the prediction starts from the speeds it recorded)
        def streamed():  # a sample taken while streaming reached the probe (discovery may take a while)
            return [r for r in (arrays.unpack(arrays.STATE, m, rows=1)[0][0] for m in got["state"])
                    if r[layout.ROTOR].min() > 0]
        ts = 110
        while not (streamed() and got["pose"]) and ts < 600:  # the same sample again: no new command
            _feed_state(bridge, ts)
            _spin_until(probe, lambda: streamed() and got["pose"], 0.1)
            ts += 10
        row = streamed()[-1]
        expect = ref.predict(measured)
        assert bridge.pending.pending == 2
        np.testing.assert_allclose(row[:layout.STATE_DIM], expect, rtol=1e-5, atol=1e-6)
        assert row[layout.VEL][2] > 0.005 and row[2] > 1.00005  # advanced 20 ms into the climb
        assert got["pose"][-1].pose.position.z == pytest.approx(1.0)  # pose: measured
        assert bridge.state[2] == pytest.approx(1.0) and bridge.state[layout.VEL][2] == 0.0  # safety: measured
    finally:
        probe.destroy_node()


def test_stop_policy_hands_back_at_the_first_calm_state_and_at_the_latest_after_the_wait(bridge):
    _feed_state(bridge, 100)
    bridge._takeoff(None, types.SimpleNamespace())
    assert bridge._start_policy(None, types.SimpleNamespace()).success
    _cmd(bridge, np.zeros(4))
    _feed_state(bridge, 110, gyro_deg_s=(90.0, 0.0, 0.0))
    bridge.calls.clear()
    reply = bridge._stop_policy(None, types.SimpleNamespace())
    assert reply.success and "first calm state" in reply.message and bridge.streaming
    _feed_state(bridge, 120, gyro_deg_s=(90.0, 0.0, 0.0))  # swinging: the policy flies on
    _cmd(bridge, np.zeros(4))
    assert bridge.streaming and [c for c, _ in bridge.calls].count("appchannel.send_packet") == 1
    bridge.calls.clear()
    _feed_state(bridge, 130, gyro_deg_s=(10.0, -5.0, 3.0))  # calm: the stop packet, then hold here
    assert not bridge.streaming
    names = [c for c, _ in bridge.calls]
    assert names[:2] == ["appchannel.send_packet", "high_level_commander.go_to"], bridge.calls
    assert bridge.calls[1][1][2] == pytest.approx(1.0)
    # never calm: handed back when the wait (0.3 s here) is over
    assert bridge._start_policy(None, types.SimpleNamespace()).success
    _feed_state(bridge, 140, gyro_deg_s=(0.0, 0.0, math.degrees(2.0)))
    bridge.calls.clear()
    t0 = time.monotonic()
    bridge._stop_policy(None, types.SimpleNamespace())
    ts = 150
    while bridge.streaming and time.monotonic() - t0 < 3.0:
        _feed_state(bridge, ts, gyro_deg_s=(0.0, 0.0, math.degrees(2.0)))  # yawing at 115 deg/s
        _spin_until(bridge, lambda: not bridge.streaming, 0.02)
        ts += 10
    assert not bridge.streaming and time.monotonic() - t0 >= 0.29
    names = [c for c, _ in bridge.calls]
    assert "high_level_commander.go_to" in names and "high_level_commander.land" not in names, bridge.calls


def test_without_a_wait_stop_policy_hands_back_at_once(monkeypatch):
    node = _bridge(monkeypatch, "safety_overrides:='{hand_back_wait_s: 0.0}'")
    try:
        _feed_state(node, 100)
        node._takeoff(None, types.SimpleNamespace())
        assert node._start_policy(None, types.SimpleNamespace()).success
        _feed_state(node, 110, gyro_deg_s=(200.0, 0.0, 0.0))
        node.calls.clear()
        assert "stopped streaming" in node._stop_policy(None, types.SimpleNamespace()).message
        assert not node.streaming and node.pending.steps == 0
        assert [c for c, _ in node.calls][:2] == ["appchannel.send_packet", "high_level_commander.go_to"]
    finally:
        node.destroy_node()
        rclpy.shutdown()
