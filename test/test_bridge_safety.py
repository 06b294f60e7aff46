"""The Crazyflie bridge's safety checks run on two threads (cflib's log thread after each state, the
ROS timer every 20 ms): each trip must be reported and acted on exactly once. The radio is absent
here: a recorder takes the place of cflib's Crazyflie object and notes every command sent to it."""
import dataclasses
import os
import threading
import time
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from snn_drone.core.common import layout  # noqa: E402
from snn_drone.nodes import crazyflie_bridge  # noqa: E402
from snn_drone.nodes.dds import localhost_defaults  # noqa: E402

from ros_helpers import CflibRecorder, fresh_domain_id  # noqa: E402


class _SlowSet(set):
    """The supervisor's record of trips already seen, slow to answer: it widens the window in which
    two unserialised checks both find a trip new."""

    def __contains__(self, item):
        seen = super().__contains__(item)
        time.sleep(0.02)
        return seen


@pytest.fixture
def bridge(monkeypatch):
    calls = []
    monkeypatch.setattr(crazyflie_bridge.CrazyflieBridge, "_connect",
                        lambda self: setattr(self, "cf", CflibRecorder(calls, with_args=False)))
    os.environ.update(localhost_defaults())
    rclpy.init(domain_id=fresh_domain_id())
    node = crazyflie_bridge.CrazyflieBridge()
    node.calls = calls
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown()


@pytest.mark.parametrize("action", ["land", "stop"])
def test_a_trip_seen_by_both_threads_at_once_is_acted_on_once(bridge, action):
    # only the geofence trips: the slow set makes the checks take a while, which must not age the state
    bridge.safety.cfg = dataclasses.replace(bridge.safety.cfg, geofence_action=action, max_state_age_s=60.0)
    bridge._takeoff(None, types.SimpleNamespace())
    state = np.zeros(layout.STATE_DIM)
    state[layout.QUAT.start] = 1.0
    state[layout.POS] = [0.0, 0.0, 50.0]  # far above any geofence
    bridge.state, bridge.state_time, bridge.last_link = state, time.monotonic(), time.monotonic()
    bridge.safety._seen = _SlowSet()
    go = threading.Barrier(3)

    def check():
        go.wait()
        bridge._check_safety()
    threads = [threading.Thread(target=check) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    trips = [v.kind for v in bridge.safety.history]
    acted = [c for c in bridge.calls if c in ("high_level_commander.land", "loc.send_emergency_stop")]
    assert trips == ["geofence"], trips
    assert acted == ["high_level_commander.land" if action == "land" else "loc.send_emergency_stop"], bridge.calls


def test_closing_in_flight_lands_the_drone_before_the_link_closes(bridge):
    bridge._takeoff(None, types.SimpleNamespace())
    bridge.close()
    assert bridge.calls[-2:] == ["high_level_commander.land", "close_link"], bridge.calls


def test_closing_on_the_ground_only_closes_the_link(bridge):
    bridge.close()
    assert "high_level_commander.land" not in bridge.calls and bridge.calls[-1] == "close_link", bridge.calls


CONFIRM_S = 0.6
"""Long enough that a loaded machine never spends it between two lines of the test."""


@pytest.mark.parametrize("action", ["land", "stop"])
def test_a_land_or_stop_the_drone_does_not_heed_is_sent_again_until_it_comes_down(bridge, action):
    # (a take-off too: below)
    from snn_drone.core.deploy.command_watch import CommandWatch, CommandWatchConfig
    bridge.watch = CommandWatch(CommandWatchConfig(land_confirm_s=CONFIRM_S, stop_confirm_s=CONFIRM_S, max_repeats=3))
    bridge.safety.cfg = dataclasses.replace(bridge.safety.cfg, max_state_age_s=60.0, link_timeout_s=60.0)  # no other trip
    bridge._takeoff(None, types.SimpleNamespace())
    state = np.zeros(layout.STATE_DIM)
    state[layout.QUAT.start] = 1.0
    state[layout.POS] = [0.0, 0.0, 1.0]
    bridge.state, bridge.state_time, bridge.last_link = state, time.monotonic(), time.monotonic()
    sent = "high_level_commander.land" if action == "land" else "loc.send_emergency_stop"
    bridge._end_flight(action, "test")
    bridge._check_safety()
    assert bridge.calls.count(sent) == 1, bridge.calls  # within its confirm time: not yet
    time.sleep(CONFIRM_S + 0.1)
    bridge._check_safety()
    assert bridge.calls.count(sent) == 2, bridge.calls  # still at 1 m: the packet was lost
    bridge.state = state.copy()
    bridge.state[layout.POS.start + 2] = 0.9  # coming down now
    time.sleep(CONFIRM_S + 0.1)
    bridge._check_safety()
    time.sleep(CONFIRM_S + 0.1)
    bridge._check_safety()
    assert bridge.calls.count(sent) == 2, bridge.calls


def test_a_take_off_the_drone_does_not_heed_is_sent_again_until_it_rises(bridge):
    from snn_drone.core.deploy.command_watch import CommandWatch, CommandWatchConfig
    bridge.watch = CommandWatch(CommandWatchConfig(takeoff_confirm_s=CONFIRM_S, max_repeats=3))
    bridge.safety.cfg = dataclasses.replace(bridge.safety.cfg, max_state_age_s=60.0, link_timeout_s=60.0)
    state = np.zeros(layout.STATE_DIM)
    state[layout.QUAT.start] = 1.0
    bridge.state, bridge.state_time, bridge.last_link = state, time.monotonic(), time.monotonic()
    bridge._takeoff(None, types.SimpleNamespace())
    time.sleep(CONFIRM_S + 0.1)
    bridge._check_safety()
    assert bridge.calls.count("high_level_commander.takeoff") == 2, bridge.calls  # still on the floor
    bridge.state = state.copy()
    bridge.state[layout.POS.start + 2] = 0.2  # rising now
    for _ in range(2):
        time.sleep(CONFIRM_S + 0.1)
        bridge._check_safety()
    assert bridge.calls.count("high_level_commander.takeoff") == 2, bridge.calls
