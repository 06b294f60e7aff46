"""sim_flight_node: a simulated Crazyflie in real time, in place of crazyflie_bridge (fly_real backend:=sim).

It flies one (or B) drones of the training dynamics through the phases of core/deploy/flight.py (ground,
take-off, policy, landing, stopped) at the model's dt of wall-clock time and offers the bridge's
interface:

- ``state`` (batched, 22 values per drone as sim_node: 17 state + ``episode_step`` since the policy
  took over + the last applied action), ``clock`` (sim time), latched ``flight/status`` (JSON:
  phase, why, sim time);
- ``motor_cmd``: the newest command flies while the policy has the motors; one flagged safe (the
  jump-start watchdog lost the state) lands the drone, as the bridge does; none for
  ``command_timeout_s`` trips the watchdog of the firmware app (stop, or land: ``command_fallback``);
- ``safety/status`` (safety_node's JSON): a verdict ``land`` lands, ``stop`` stops the motors;
- services (std_srvs/Trigger) ``takeoff``, ``land``, ``emergency_stop``, ``start_policy``;
- fault injection for tests and drills: ``disturbance`` (geometry_msgs/Twist: linear = world
  velocity kick [m/s], angular = body-rate kick [rad/s]) and ``drop_state`` (std_srvs/SetBool:
  stop publishing state while the physics goes on, like a lost log stream).

A mission for unattended runs (``snn-drone launch fly_real backend:=sim``): take off
``auto_takeoff_s`` after the graph listens, land ``hover_s`` after the policy took over, exit once
landed and at rest on the ground (``exit_when_landed``) with a one-line flight report (mean position error under the policy).
"""
from __future__ import annotations

import json
import sys
import time

import torch
from geometry_msgs.msg import Twist
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import SetBool, Trigger

from snn_drone.core.common import layout
from snn_drone.core.deploy.flight import FlightConfig, FlightSim
from snn_drone.core.sim.params import load_preset

from . import arrays
from .poses import PosePublisher
from .node_runtime import (LATCHED_QOS, LIVE_QOS, await_acks, declare, declare_train_config, receive, run_node,
                           task_config, wait_for_readers)


class SimFlightNode(Node):
    def __init__(self):
        super().__init__("sim_flight_node")
        self._fqn = self.get_fully_qualified_name()  # the handle is gone after a signal's shutdown
        cfg = declare_train_config(self)
        self.b = declare(self, "num_drones", 1, "drones flown together (1 for fly_real)")
        flight = FlightConfig(
            takeoff_duration_s=declare(self, "takeoff_duration_s", 2.5, "take-off ramp to the target (s)"),
            land_duration_s=declare(self, "land_duration_s", 3.0, "landing ramp to the ground (s)"),
            settle_s=declare(self, "settle_s", 1.0, "the controller holds the target this long after the "
                             "take-off ramp before the policy takes over (s)"),
            policy_after_takeoff=declare(self, "policy_after_takeoff", True, "the policy takes over when the "
                                         "take-off ends (false: call start_policy)"))
        self.auto_takeoff_s = declare(self, "auto_takeoff_s", -1.0, "take off this long after the graph "
                                      "listens (s; -1: wait for the takeoff service)")
        self.hover_s = declare(self, "hover_s", 0.0, "land this long after the policy took over (sim s; 0: "
                               "until the land service)")
        self.exit_when_landed = declare(self, "exit_when_landed", False, "end the node (and a launch that "
                                        "requires it) once the drone landed after a flight")
        self.command_timeout_s = declare(self, "command_timeout_s", 0.05, "while the policy flies, no new "
                                         "motor_cmd for this long trips the onboard watchdog (s; the firmware "
                                         "app's snnmotor.timeoutMs)")
        self.command_fallback = declare(self, "command_fallback", "stop", "watchdog trip: 'stop' (motors off, "
                                        "snnmotor.fallback 0) or 'land' (stock controller lands, fallback 1)")
        if self.command_fallback not in ("stop", "land"):
            raise ValueError(f"command_fallback = {self.command_fallback!r}, expected stop or land")
        if not self.command_timeout_s > 0:
            raise ValueError(f"command_timeout_s = {self.command_timeout_s}, expected > 0 s")
        self.wait_for_subscribers = declare(self, "wait_for_subscribers", 0, "start the clock once this many "
                                            "subscribers listen to state")
        self.wait_for_nodes = declare(self, "wait_for_nodes", "", "start the clock once these nodes "
                                      "(comma-separated names) listen to state and every listener is matched")
        threads = declare(self, "threads", 1, "torch intra-op threads")
        if threads > 0:
            torch.set_num_threads(threads)
        self.sim = FlightSim(self.b, load_preset(cfg.preset), task_config(cfg), flight)
        self.dt_s = float(self.sim.params.dt_s)
        self.step = 0
        self.publish_state = True
        self._newest: torch.Tensor | None = None
        self._cmd_sim_s = 0.0     # simulated time of the newest motor_cmd
        self._slipped_s = 0.0     # real time the simulator fell behind (simulated time paused)
        self._flown = False
        self._max_stale_s = 0.0   # the oldest command the policy phase flew (sim s)
        self._after_shutdown = ""
        self._errors_m: list[float] = []
        self._phase_sent = None
        self.pub_state = self.create_publisher(Float32MultiArray, arrays.STATE.topic, LIVE_QOS)
        self.pub_clock = self.create_publisher(Clock, arrays.CLOCK_TOPIC, LIVE_QOS)
        robot = declare(self, "robot", "cf1", "name of the simulated drone: its cf1/pose topic and TF frame "
                        "(with several drones: <robot>_<i>)")
        self.poses = PosePublisher(self, [robot] if self.b == 1 else [f"{robot}_{i}" for i in range(self.b)])
        self.pub_flight = self.create_publisher(String, arrays.FLIGHT_STATUS_TOPIC, LATCHED_QOS)
        self.create_subscription(Float32MultiArray, arrays.MOTOR_CMD.topic, self._on_cmd, LIVE_QOS)
        self.create_subscription(String, arrays.SAFETY_STATUS_TOPIC, self._on_safety, LIVE_QOS)
        self.create_subscription(Twist, arrays.DISTURBANCE_TOPIC, self._on_disturbance, LIVE_QOS)
        for name, act in (("takeoff", self.sim.takeoff), ("land", self.sim.land),
                          ("emergency_stop", self.sim.stop), ("start_policy", self.sim.start_policy)):
            self.create_service(Trigger, name, lambda req, res, act=act: self._service(act, res))
        self.create_service(SetBool, "drop_state", self._drop_state)
        self.get_logger().info(f"{self.b} simulated Crazyflie(s) on the ground, real time, dt {self.dt_s} s")

    # ---- inputs -----------------------------------------------------------------------------
    def _on_cmd(self, msg) -> None:
        got = receive(self, arrays.MOTOR_CMD, msg, rows=self.b)
        if got is None:
            return
        rows, head = got
        if head.get("safe"):
            if self.sim.phase == "policy":
                self._log(self.sim.land("jump-start watchdog safe command"), warn=True)
            return
        self._newest = torch.from_numpy(rows.copy())
        self._cmd_sim_s = self.sim.time_s

    def _on_safety(self, msg) -> None:
        try:
            verdict = json.loads(msg.data).get("verdict")
        except (json.JSONDecodeError, AttributeError):
            self.get_logger().error(f"dropped safety/status {msg.data!r}: expected a JSON object with 'verdict'")
            return
        if verdict == "stop":
            self._log(self.sim.stop("safety stop"), warn=True)
        elif verdict == "land":
            self._log(self.sim.land("safety land"), warn=True)

    def _on_disturbance(self, msg: Twist) -> None:
        lin, ang = msg.linear, msg.angular
        self.sim.disturb([lin.x, lin.y, lin.z], [ang.x, ang.y, ang.z])
        self._log(f"disturbance: velocity +[{lin.x}, {lin.y}, {lin.z}] m/s, body rates +[{ang.x}, {ang.y}, "
                  f"{ang.z}] rad/s")

    def _service(self, act, response):
        text = act()
        response.success = "refused" not in text and "ignored" not in text
        response.message = text
        self._log(text)
        return response

    def _drop_state(self, request, response):
        self.publish_state = not request.data
        response.success, response.message = True, ("state publication stopped (fault injection)" if request.data
                                                    else "state publication resumed")
        self._log(response.message, warn=bool(request.data))
        return response

    def _log(self, text: str, warn: bool = False) -> None:
        if warn:  # one call site per severity: rclpy refuses to change it between calls
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    # ---- outputs ----------------------------------------------------------------------------
    def _publish(self, action: torch.Tensor) -> None:
        sim = self.sim
        if self.publish_state:
            rows = torch.cat([sim.state, torch.full((self.b, 1), float(sim.episode_step)), action], dim=1)
            self.pub_state.publish(arrays.pack(arrays.STATE, rows, {"step": self.step}))
        t_ns = int(round(sim.time_s * 1e9))
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = t_ns // 1_000_000_000, t_ns % 1_000_000_000
        self.pub_clock.publish(clock)
        self.poses.publish(sim.state.cpu().numpy(), self.step, sim.time_s)
        if sim.events and sim.events[-1] is not self._phase_sent:
            self._phase_sent = sim.events[-1]
            t, why = sim.events[-1]
            self.pub_flight.publish(String(data=json.dumps({"phase": sim.phase, "event": why, "time_s": round(t, 3)})))
            self._log(f"t={t:.2f} s: {why}")

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(self)
        wait_for_readers(self, ex, self.pub_state, self.wait_for_subscribers, self.wait_for_nodes)
        self.sim.events.append((0.0, "ground (start)"))
        try:
            self._publish(torch.full((self.b, layout.ACTION_DIM), -1.0))
            # the subscribers this writer counts may not have matched it yet (DDS discovery is two-sided,
            # and slow on a loaded machine): once every reader acknowledged the first message, none of
            # the flight is lost to a recorder still discovering the graph
            for pub in self.publishers:
                if self.context.ok():
                    await_acks(self, pub, "the first message")
            self._fly_online(ex)
            # landed and leaving: the last state and phase ("ground") reach every reader before the
            # process (and with it the latched phase) is gone
            for pub, what in ((self.pub_flight, "the last phase"), (self.pub_state, "the last state"),
                              (self.pub_clock, "the last clock")):
                if self.context.ok():
                    await_acks(self, pub, what, timeout_s=5.0)
        except (ExternalShutdownException, RuntimeError):
            if self.context.ok():
                raise
            # a spin, publish or wait that met the signal's shutdown: the drone flies on below
        if not self._at_rest():
            self._fly_out()
        print(f"[{self._fqn}] {self.report()}", file=sys.stderr, flush=True)

    def _fly_online(self, ex) -> None:
        """The real-time loop while the graph runs: spin until each step's deadline, then step."""
        sim = self.sim
        t0 = time.monotonic()
        policy_since = None
        while self.context.ok():
            deadline = t0 + (self.step + 1) * self.dt_s
            while self.context.ok() and (left := deadline - time.monotonic()) > 0:
                ex.spin_once(timeout_sec=left)
            for _ in range(10):  # behind time: still take what arrived
                ex.spin_once(timeout_sec=0.0)
            late = time.monotonic() - deadline
            if late > self.dt_s:  # this process itself fell behind: simulated time pauses rather than jumps
                t0 += late
                self._slipped_s += late
            if self.auto_takeoff_s >= 0 and not self._flown and sim.time_s >= self.auto_takeoff_s:
                self._log(sim.takeoff())
            action = self._firmware_step(self._log)
            if sim.phase == "policy":
                policy_since = sim.time_s if policy_since is None else policy_since
                self._errors_m.append(float((sim.state[:, layout.POS] - sim.target).norm(dim=1).mean()))
                if self.hover_s > 0 and sim.time_s - policy_since >= self.hover_s:
                    self._log(sim.land(f"mission: {self.hover_s} s of policy flight"))
            else:
                policy_since = None
            self._publish(action)
            if self.exit_when_landed and self._flown and self._at_rest():
                break

    def _firmware_step(self, log) -> torch.Tensor:
        """One step of the drone's own firmware and physics: the motor command watchdog (on the
        drone's clock), then the phase's command flies. Returns the applied action."""
        sim = self.sim
        silent = sim.time_s - self._cmd_sim_s
        if sim.phase == "policy" and silent > self.command_timeout_s:
            why = f"motor command watchdog: no motor_cmd for {silent:.3f} s (command_timeout_s {self.command_timeout_s})"
            log(sim.stop(why) if self.command_fallback == "stop" else sim.land(why), warn=True)
        if sim.phase == "policy":  # the age of the command that flies this step
            self._max_stale_s = max(self._max_stale_s, sim.time_s - self._cmd_sim_s)
        if sim.phase != "ground":
            self._flown = True
        action = sim.step(self._newest if sim.phase == "policy" else None)
        self.step += 1
        return action

    def _at_rest(self) -> bool:
        return self.sim.phase == "ground" and bool((self.sim.state[:, 2] <= 0).all())

    def _fly_out(self, limit_s: float = 60.0) -> None:
        """The graph stopped (or a node of it died) with the drone off the ground: the drone itself
        flies on without a ground station, as hardware would, until it rests on the ground. The
        command that flew last goes on until the watchdog trips its fallback; a take-off or a hover
        of the stock controller lands, as the bridge does when it closes. Simulated time runs as
        fast as the CPU allows (nothing listens any more); the report says how it ended."""
        sim, t_end = self.sim, self.sim.time_s + limit_s
        start_s = sim.time_s
        if sim.phase == "takeoff":
            sim.land("the graph stopped: the bridge lands")
        while not self._at_rest() and sim.time_s < t_end:
            self._firmware_step(lambda text, warn=False: None)  # the events keep what happened
        self._after_shutdown = (f"graph stopped at {start_s:.2f} s with the drone airborne; "
                                + (f"at rest on the ground at {sim.time_s:.2f} s" if self._at_rest()
                                   else f"still {sim.phase} after {limit_s:.0f} s"))

    def report(self) -> str:
        """Flight report: phases and the mean position error while the policy flew."""
        e = self._errors_m
        text = f"{self.step} steps ({self.sim.time_s:.2f} s sim time), phase {self.sim.phase}; " + \
            "; ".join(f"{t:.2f} s {why}" for t, why in self.sim.events)
        if e:
            text += f"; policy flew {len(e)} steps, mean position error {sum(e) / len(e):.3f} m"
        if self._max_stale_s > 0:
            text += f"; oldest motor_cmd flown {self._max_stale_s:.3f} s"
        if self._after_shutdown:
            text += f"; {self._after_shutdown}"
        if self._slipped_s > 0:
            text += f"; the simulator fell behind real time by {self._slipped_s:.3f} s in all (time paused)"
        return text


def main(argv=None) -> int:
    return run_node(SimFlightNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
