"""fly_real on the sim backend, end to end with real node processes (`snn-drone launch fly_real
backend:=sim`: sim_flight_node, safety_node, actor, guide, jump-start, recorder): take-off, the
policy's hover at the target, landing; and every safety trip the sim can produce (tilt -> stop,
stale state -> land, geofence -> land), each published on safety/status and acted on by the drone.

The hover flies the shipped spiking actor checkpoints/snn_actor_bc_only.pt after the guide's 50-step warm-up.
The trip test flies the shipped guide as the actor file: the trips come from outside (a body-rate
kick, a lost state stream, a velocity kick), so any policy that hovers will do, and the guide
recovers from the kicks the same way every run.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseArray, PoseStamped, Twist
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import SetBool, Trigger

from ros_helpers import Probe, Processes, fresh_domain_id
from snn_drone.core.common.config import package_root
from snn_drone.nodes import arrays
from snn_drone.nodes.bag_io import read_bag

ROOT = package_root()
SNN = ROOT / "checkpoints" / "snn_actor_bc_only.pt"
LOADED = ("safety_overrides:={max_state_age_s: 1.0}", "command_timeout_s:=1.0")
"""State may be 1 s old before it trips and commands 1 s late before the simulated firmware watchdog
trips: the CI machine is shared (the hardware defaults are 0.1 s and 0.05 s)."""


def _phases(msgs):
    return [json.loads(m.data) for m in msgs]


def _states(msgs):
    out = []
    for m in msgs:
        rows, head = arrays.unpack(arrays.STATE, m, rows=1)
        out.append((int(head["step"]), rows[0]))
    return out


def _call(probe, srv_type, name, request=None, timeout_s=30.0):
    client = probe.node.create_client(srv_type, name)
    probe.spin_until(client.service_is_ready, timeout_s, f"service {name}")
    future = client.call_async(request or srv_type.Request())
    probe.spin_until(future.done, timeout_s, f"answer of {name}")
    return future.result()


def test_fly_real_sim_takes_off_the_snn_hovers_10_s_at_the_target_after_the_guide_warmup_lands_and_records_the_bag(tmp_path):
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    bag = tmp_path / "flight"
    try:
        states = probe.listen("/state", Float32MultiArray, depth=5000)
        motor = probe.listen("/motor_cmd", Float32MultiArray, depth=5000)
        flight = probe.listen("/flight/status", String, latched=True)
        safety = probe.listen("/safety/status", String)
        launch = procs.cli("launch", "launch", "fly_real", "backend:=sim", f"actor:={SNN}",
                           "hover_s:=10", "auto_takeoff_s:=0.5", f"bag:={bag}", *LOADED)
        assert launch.wait(timeout=240) == 0, procs.log("launch")[-4000:]
        probe.spin_for(1.0)
        log = procs.log("launch")
        phases = [p["phase"] for p in _phases(flight)]
        assert phases[-4:] == ["takeoff", "policy", "landing", "ground"], (phases, log[-3000:])
        assert not safety, [m.data for m in safety]
        # the recorder runs at real-time priority (priority 1): its bag holds every step even where this
        # test's own listener, with normal scheduling on a busy machine, falls behind and loses some
        from rclpy.serialization import deserialize_message
        recorded = {}
        for m in read_bag(bag):
            recorded.setdefault(m.topic, []).append(m.rawdata)
        rows = _states([deserialize_message(raw, Float32MultiArray) for raw in recorded["/state"]])
        poses = [deserialize_message(raw, PoseStamped) for raw in recorded.get("/cf1/pose", [])]
        batch = [deserialize_message(raw, PoseArray) for raw in recorded.get("/poses", [])]
        policy = np.array([r for _, r in rows if r[arrays.EPISODE_STEP_COL] >= 1])
        assert 950 <= len(policy) <= 1010, len(policy)  # 10 s at 100 Hz (a few states may be lost)
        err = np.linalg.norm(policy[:, :3] - np.array([0.0, 0.0, 1.0]), axis=1)
        print(f"hover with {SNN.name}: {len(policy)} states, mean position error {err.mean():.3f} m, "
              f"max {err.max():.3f} m")
        # in one process (no timing) the shipped actor hovers with a mean error of 0.18 m; on a loaded machine the
        # real-time loop flies late commands, so the bound is loose (the default geofence is 1.5 m away)
        assert err.mean() < 0.4 and err.max() < 0.8, (err.mean(), err.max())
        m = re.search(r"policy flew (\d+) steps, mean position error ([\d.]+) m", log)
        assert m and abs(float(m.group(2)) - err.mean()) < 0.05, log[-2000:]
        assert re.search(r"phase ground;", log), log[-2000:]  # the node ended at rest on the ground
        assert rows[-1][1][2] < 0.03, rows[-1][1]  # the last states the probe heard: landed (motors off)
        # rviz / Foxglove: the same flight as PoseStamped and PoseArray in the world frame, simulated-time stamps
        assert len(poses) >= 0.95 * len(rows) and len(batch) >= 0.95 * len(rows), (len(poses), len(batch), len(rows))
        assert {m.header.frame_id for m in poses} == {"world"} and all(len(m.poses) == 1 for m in batch)
        pz = np.array([m.pose.position.z for m in poses])
        assert abs(pz.max() - max(r[2] for _, r in rows)) < 1e-4 and pz[-1] < 0.03
        t = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in poses])
        assert np.all(np.diff(t) > 0) and abs(np.median(np.diff(t)) - 0.01) < 1e-6
        # the jump-start node flew the guide for the 50-step warm-up (deployment), then the actor
        heads = [arrays.unpack(arrays.MOTOR_CMD, c, rows=1).header for c in motor]
        assert {h["guide_steps"] for h in heads if h["safe"] == 0} == {50.0}
        counts = {t: len(v) for t, v in recorded.items()}
        # flight/status is latched (depth 1) and changes once per phase: a recorder whose discovery of the
        # flight node finishes after take-off starts at the newest phase, so only the later phases are certain
        assert counts.get("/state", 0) >= 0.95 * len(states) and counts.get("/flight/status", 0) >= 3, counts
    finally:
        probe.close()
        procs.stop_all()


def test_fly_real_sim_tilt_stops_stale_state_lands_and_geofence_lands_each_published_on_safety_status(tmp_path):
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    fence = "{geofence_min_m: [-0.5, -0.5, -0.1], geofence_max_m: [0.5, 0.5, 1.6], max_state_age_s: 0.8}"
    try:
        states = probe.listen("/state", Float32MultiArray, depth=5000)
        flight = probe.listen("/flight/status", String, latched=True)
        safety = probe.listen("/safety/status", String)
        kick = probe.publisher("/disturbance", Twist)
        procs.cli("launch", "launch", "fly_real", "backend:=sim", f"actor:={ROOT / 'checkpoints' / 'guide.pt'}",
                  "record:=false", "auto_takeoff_s:=-1", "hover_s:=0", "exit_when_landed:=false",
                  f"safety_overrides:={fence}", "command_timeout_s:=0.3", "command_fallback:=land",
                  "state_timeout_s:=2.0")
        probe.spin_until(lambda: len(states) > 20, 120, "the sim's state", procs, "launch")

        def phase():
            return json.loads(flight[-1].data)["phase"] if flight else None

        def fly(trip_kind, cause, end_phases):
            n = len(safety)
            ok = _call(probe, Trigger, "/takeoff")
            assert ok.success, ok.message
            probe.spin_until(lambda: phase() == "policy", 30, "the hand-over to the policy", procs, "launch")
            probe.spin_for(1.0)
            assert not safety[n:], [m.data for m in safety[n:]]
            cause()
            probe.spin_until(lambda: len(safety) > n, 20, f"a {trip_kind} trip", procs, "launch")
            trip = json.loads(safety[n].data)
            assert trip["kind"] == trip_kind, trip
            probe.spin_until(lambda: phase() in end_phases, 10, f"phase {end_phases} after {trip_kind}", procs, "launch")
            probe.spin_until(lambda: phase() == "ground", 30, f"the drone on the ground after {trip_kind}",
                             procs, "launch")
            return trip

        twist = Twist()
        twist.angular.x = 30.0  # rad/s roll: tilts past 60 degrees
        trip = fly("tilt", lambda: kick.publish(twist), ("stopped",))
        assert trip["action"] == "stop" and trip["verdict"] == "stop" and trip["value"] > 60.0, trip

        # without state the graph sends no motor_cmd either: the simulated firmware watchdog lands the drone
        # after 0.3 s (fallback land), the stale trip follows at 0.8 s while it descends
        trip = fly("stale_state", lambda: _call(probe, SetBool, "/drop_state", SetBool.Request(data=True)),
                   ("landing", "ground"))
        assert trip["action"] == "land" and trip["value"] > 0.8, trip
        assert _call(probe, SetBool, "/drop_state", SetBool.Request(data=False)).success
        probe.spin_until(lambda: phase() == "ground" and len(states) > 0, 10, "state again")

        push = Twist()
        push.linear.x = 3.0  # m/s: carries the drone out of the 0.5 m fence
        trip = fly("geofence", lambda: kick.publish(push), ("landing",))
        assert trip["action"] == "land" and trip["value"] > 0.5 and trip["limit"] == 0.5, trip
        probe.spin_until(lambda: arrays.unpack(arrays.STATE, states[-1], rows=1).rows[0][2] == 0.0, 5,
                         "the drone resting on the ground (z = 0)")
        log = procs.log("launch")
        for kind in ("tilt", "stale_state", "geofence"):
            assert re.search(rf"\[safety_node\].*safety trip {kind}", log), kind
    finally:
        probe.close()
        procs.stop_all()


class _Burners:
    """Busy processes, one per core, each ending by itself after ``seconds`` (bounded even if the
    test dies): the "loaded machine" of the control-loop tests."""

    def __init__(self, n: int, seconds: float):
        code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


LOADED_FLIGHTS = int(os.environ.get("SNN_DRONE_LOADED_FLIGHTS", "5"))
"""Flights in a row of the loaded test: 5 in CI (~30 s each there), the issue's 10 with
SNN_DRONE_LOADED_FLIGHTS=10."""


def test_fly_real_sim_holds_its_100_hz_loop_with_both_cores_busy_flights_in_a_row(tmp_path):
    """The hardware deadlines (motor command within 0.05 s, state at most 0.1 s old) while two busy
    processes load both cores: the flight graph's nodes run at real-time priority
    (realtime_priority, SCHED_FIFO), so LOADED_FLIGHTS short flights in a row take off, hand over,
    hover and land with no safety trip and no watchdog stop. A flight that fails says which one."""
    burners = _Burners(2, seconds=120 * LOADED_FLIGHTS)  # stopped at the end; the bound only outlives a dead test
    try:
        for i in range(LOADED_FLIGHTS):
            domain = fresh_domain_id()
            procs, probe = Processes(tmp_path / f"logs{i}", domain), Probe(domain)
            try:
                flight = probe.listen("/flight/status", String, latched=True)
                safety = probe.listen("/safety/status", String)
                launch = procs.cli("launch", "launch", "fly_real", "backend:=sim", f"actor:={SNN}", "hover_s:=2",
                                   "auto_takeoff_s:=0.5", "record:=false")
                rc = launch.wait(timeout=180)
                probe.spin_for(0.5)
                log = procs.log("launch")
                phases = [p["phase"] for p in _phases(flight)]
                assert rc == 0, (i, log[-3000:])
                assert phases[-4:] == ["takeoff", "policy", "landing", "ground"], (i, phases, log[-3000:])
                assert "watchdog" not in log and not safety, (i, [m.data for m in safety], log[-3000:])
                if i == 0:
                    assert "real-time priority: SCHED_FIFO 10" in log or "no real-time priority" in log, log[-3000:]
            finally:
                probe.close()
                procs.stop_all()
    finally:
        burners.stop()
