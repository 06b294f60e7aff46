"""The Crazyflie bridge in the onboard mode (mode:=onboard): start_policy sets snnonb.enable after a
first heartbeat, every state sample sends one, motor_cmd is ignored, the drone's snnonb log block is
published on onboard/status and fills the state rows, a trip the drone reports goes on
safety/status, and every end of a flight sets snnonb.enable back to 0. The radio is absent here: a
recorder takes the place of cflib's Crazyflie object and notes every call with its arguments; the
ROS side is real (rclpy node, subscriptions on the loopback)."""
import json
import os
import time
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from std_msgs.msg import Float32MultiArray, String  # noqa: E402

from snn_drone.core.deploy import onboard_link  # noqa: E402
from snn_drone.core.deploy.crazyflie_state import FLOAT_LOG_BLOCKS  # noqa: E402
from snn_drone.core.deploy.motor_packet import HEARTBEAT_MAGIC, heartbeat_packet  # noqa: E402
from snn_drone.nodes import arrays, crazyflie_bridge  # noqa: E402
from snn_drone.nodes.dds import localhost_defaults  # noqa: E402

from ros_helpers import CflibRecorder, fresh_domain_id  # noqa: E402


@pytest.fixture
def bridge(monkeypatch):
    calls = []
    def connect(self):  # the recorder in place of cflib, and a firmware that has the app (snnmotor group)
        self.cf, self.has_app = CflibRecorder(calls), True
    monkeypatch.setattr(crazyflie_bridge.CrazyflieBridge, "_connect", connect)
    os.environ.update(localhost_defaults())
    rclpy.init(domain_id=fresh_domain_id(), args=["--ros-args", "-p", "mode:=onboard"])
    node = crazyflie_bridge.CrazyflieBridge()
    node.calls = calls
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _log_sample(z=1.0):
    return {"stateEstimate.x": 0.0, "stateEstimate.y": 0.0, "stateEstimate.z": z, "stateEstimate.vx": 0.0,
            "stateEstimate.vy": 0.0, "stateEstimate.vz": 0.0, "stateEstimate.qw": 1.0, "stateEstimate.qx": 0.0,
            "stateEstimate.qy": 0.0, "stateEstimate.qz": 0.0, "pm.vbat": 4.0, "gyro.x": 0.0, "gyro.y": 0.0,
            "gyro.z": 0.0}


def _feed_state(bridge, ts, z=1.0):
    values = _log_sample(z)
    for name, names, _ in FLOAT_LOG_BLOCKS:
        bridge._on_log(ts, {k: values[k] for k in names}, types.SimpleNamespace(name=name))


def _onboard_sample(phase, trip, step, action=(0.1, 0.2, 0.3, 0.4)):
    names = [v for v, _ in onboard_link.LOG_BLOCK[1]]
    return dict(zip(names, [phase, trip, step, 120, 40, *action, 690]))


def _spin_until(node, pred, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not pred():
        rclpy.spin_once(node, timeout_sec=0.05)
    return pred()


def test_onboard_mode_starts_the_drone_by_parameter_heartbeats_and_records_its_spikes(bridge):
    got = {"onboard": [], "state": [], "safety": []}
    probe = rclpy.create_node("probe")
    probe.create_subscription(Float32MultiArray, arrays.ONBOARD.topic, lambda m: got["onboard"].append(m), 10)
    probe.create_subscription(Float32MultiArray, arrays.STATE.topic, lambda m: got["state"].append(m), 10)
    probe.create_subscription(String, "safety/status", lambda m: got["safety"].append(m), 10)
    try:
        assert sum(np.prod(f.size) for f in arrays.ONBOARD_FIELDS) == len(onboard_link.TELEMETRY_FIELDS)
        assert sum({"uint8_t": 1, "uint16_t": 2, "float": 4}[t] for _, t in onboard_link.LOG_BLOCK[1]) == 26
        _feed_state(bridge, 100)
        bridge._takeoff(None, types.SimpleNamespace())
        bridge.calls.clear()
        reply = bridge._start_policy(None, types.SimpleNamespace())
        assert reply.success and "snnonb.enable" in reply.message
        names = [c for c, _ in bridge.calls]
        assert names == ["appchannel.send_packet", "param.set_value"], bridge.calls
        assert bridge.calls[0][1][0][0] == HEARTBEAT_MAGIC and bridge.calls[1][1] == ("snnonb.enable", "1")
        # each state sample: one heartbeat, sequence +1
        bridge.calls.clear()
        for k in range(3):
            _feed_state(bridge, 110 + 10 * k)
        assert [a[0] for c, a in bridge.calls if c == "appchannel.send_packet"] == [heartbeat_packet(s) for s in (2, 3, 4)]  # 0 before, 1 at the start
        # motor_cmd is not streamed: the drone flies its own networks
        bridge.calls.clear()
        bridge._on_cmd(arrays.pack(arrays.MOTOR_CMD, np.zeros((1, 4), np.float32), {"step": bridge.step, "guide_steps": 50, "safe": 0}))
        assert bridge.calls == []
        # the drone's log block: onboard/status, and the state rows carry its step and flown action
        bridge._on_onboard_log(_onboard_sample(2, 0, 57))
        _feed_state(bridge, 150)
        assert _spin_until(probe, lambda: got["onboard"] and got["state"])
        row, head = arrays.unpack(arrays.ONBOARD, got["onboard"][-1], rows=1)
        assert list(row[0]) == pytest.approx([2, 0, 57, 120, 40, 0.1, 0.2, 0.3, 0.4, 690])
        assert _spin_until(probe, lambda: any(arrays.unpack(arrays.STATE, m, rows=1)[0][0, arrays.EPISODE_STEP_COL] >= 57
                                              for m in got["state"]))
        last = arrays.unpack(arrays.STATE, got["state"][-1], rows=1)[0][0]
        assert list(last[arrays.LAST_ACTION_COLS]) == pytest.approx([0.1, 0.2, 0.3, 0.4])
        # a trip on the drone: reported once on safety/status; the bridge stops following the drone's steps
        bridge._on_onboard_log(_onboard_sample(3, 2, 60, (0.0,) * 4))
        bridge._on_onboard_log(_onboard_sample(3, 2, 60, (0.0,) * 4))
        assert _spin_until(probe, lambda: got["safety"])
        time.sleep(0.2)
        rclpy.spin_once(probe, timeout_sec=0.1)
        trips = [json.loads(m.data) for m in got["safety"]]
        assert [t["kind"] for t in trips] == ["geofence"] and not bridge.streaming
        # landing (safety, the service, or closing) sets the parameter back to 0 before the land command
        bridge.calls.clear()
        bridge._land(None, types.SimpleNamespace())
        assert [c for c, _ in bridge.calls][:2] == ["param.set_value", "high_level_commander.land"], bridge.calls
        assert bridge.calls[0][1] == ("snnonb.enable", "0")
    finally:
        probe.destroy_node()


def test_ground_mode_is_refused_an_unknown_mode(monkeypatch):
    monkeypatch.setattr(crazyflie_bridge.CrazyflieBridge, "_connect", lambda self: None)
    os.environ.update(localhost_defaults())
    rclpy.init(domain_id=fresh_domain_id(), args=["--ros-args", "-p", "mode:=air"])
    try:
        with pytest.raises(ValueError, match="mode = 'air'"):
            crazyflie_bridge.CrazyflieBridge()
    finally:
        rclpy.shutdown()
