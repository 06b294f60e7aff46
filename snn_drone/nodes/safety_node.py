"""safety_node: the flight safety supervisor (core/deploy/safety.py) on the graph, for drones without one of
their own (fly_real backend:=sim; on hardware crazyflie_bridge runs the same supervisor itself, with
the battery and radio-link checks that only a real drone has).

It keeps each drone's newest ``state`` row and its arrival time and, while the latched
``flight/status`` says the drone is airborne (takeoff, policy, landing), checks geofence, tilt,
non-finite values and state staleness on every state and on a timer (``check_rate_hz``). Each new
violation is logged and published on ``safety/status`` as one JSON object (robot, kind, action,
value, limit, message, verdict: the latched action); the drone end acts on the verdict (``land``
lands, ``stop`` stops the motors). A new take-off re-arms the supervisor.

Its clock is the simulated drone's: once ``/clock`` arrives (sim_flight_node publishes it every
step) the state's age is counted in simulated time, so a simulator that falls behind real time
(simulated time pauses) is not a stale state, while a state stream that stops under a running
simulation is. Before any ``/clock`` it counts wall time.
"""
from __future__ import annotations

import json
import time

import numpy as np
import yaml
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32MultiArray, String

from snn_drone.core.deploy.flight import AIRBORNE
from snn_drone.core.deploy.safety import SafetySupervisor, load_safety_config

from . import arrays
from .node_runtime import LATCHED_QOS, LIVE_QOS, declare, receive, report_trips, run_node


class SafetyNode(Node):
    def __init__(self):
        super().__init__("safety_node")
        path = declare(self, "safety_config", "", "safety YAML (SafetyConfig keys; empty: config/safety.yaml)")
        over = declare(self, "safety_overrides", "", "YAML mapping of SafetyConfig keys over the file, e.g. "
                                                     "'{geofence_max_m: [0.5, 0.5, 1.5]}'")
        self.b = declare(self, "num_drones", 1, "drones in each state message")
        rate = declare(self, "check_rate_hz", 50.0, "checks per second besides one per state (catches stale state)")
        self.robot = declare(self, "robot", "cf1", "name put in the safety/status messages")
        over_d = yaml.safe_load(over) if over.strip() else {}
        if not isinstance(over_d, dict):
            raise ValueError(f"safety_overrides = {over!r}, expected a YAML mapping of SafetyConfig keys")
        cfg = load_safety_config(path or None, over_d)
        if not rate > 0:
            raise ValueError(f"check_rate_hz = {rate}, expected > 0")
        self.supervisors = [SafetySupervisor(cfg) for _ in range(self.b)]
        self.state: np.ndarray | None = None
        self.state_time_s: float | None = None
        self.phase = "ground"
        self.pub = self.create_publisher(String, arrays.SAFETY_STATUS_TOPIC, LIVE_QOS)
        self.create_subscription(Float32MultiArray, arrays.STATE.topic, self._on_state, LIVE_QOS)
        self.create_subscription(String, arrays.FLIGHT_STATUS_TOPIC, self._on_flight, LATCHED_QOS)
        self._sim_now_s: float | None = None
        self.create_subscription(Clock, "/clock", self._on_clock, LIVE_QOS)
        self.create_timer(1.0 / rate, self._check)
        self.get_logger().info(f"watching {self.b} drone(s): geofence {list(cfg.geofence_min_m)} .. "
                               f"{list(cfg.geofence_max_m)} m ({cfg.geofence_action}), tilt {cfg.max_tilt_deg} deg "
                               f"({cfg.tilt_action}), state age {cfg.max_state_age_s} s ({cfg.stale_action})")

    def _on_flight(self, msg) -> None:
        try:
            phase = json.loads(msg.data)["phase"]
        except (json.JSONDecodeError, KeyError, TypeError):
            self.get_logger().error(f"dropped flight/status {msg.data!r}: expected JSON with 'phase'")
            return
        if phase == "takeoff" and self.phase != "takeoff":
            for s in self.supervisors:
                s.reset()
            self.state_time_s = self._now() if self.state is not None else None
        self.phase = phase

    def _now(self) -> float:
        return time.monotonic() if self._sim_now_s is None else self._sim_now_s

    def _on_clock(self, msg: Clock) -> None:
        self._sim_now_s = msg.clock.sec + 1e-9 * msg.clock.nanosec
        self._check()

    def _on_state(self, msg) -> None:
        got = receive(self, arrays.STATE, msg, rows=self.b)
        if got is None:
            return
        rows, _ = got
        self.state, self.state_time_s = rows[:, arrays.STATE_COLS].astype(np.float64), self._now()
        self._check()

    def _check(self) -> None:
        if self.phase not in AIRBORNE:
            return
        now = self._now()
        for i, sup in enumerate(self.supervisors):
            verdict = sup.check(now, None if self.state is None else self.state[i], self.state_time_s)
            report_trips(self, self.pub, verdict, self.robot if self.b == 1 else f"{self.robot}_{i}", drone=i)


def main(argv=None) -> int:
    return run_node(SafetyNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
