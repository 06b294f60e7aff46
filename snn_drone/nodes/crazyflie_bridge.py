"""crazyflie_bridge: one real Crazyflie on the graph, in place of sim_node (cflib over a Crazyradio).

- State: cflib log blocks at 100 Hz (core/deploy/crazyflie_state.py: float or compressed variant) become
  the batched ``state`` topic with one row, exactly like sim_node's (17 state values, the
  ``episode_step`` since the policy took over, the last streamed action); crazyswarm2-style
  ``<robot>/pose`` (PoseStamped, world) and ``<robot>/odom`` (Odometry: twist in the body frame).
- Motors: while the policy flies (service ``start_policy``), each ``motor_cmd`` is mapped to the
  firmware's normalised thrusts (core/deploy/motor_mapping.py) and streamed to the snn_motor app
  (firmware/) as one app-channel packet (core/deploy/motor_packet.py); the app's watchdog stops or hands
  back within 50 ms if packets stop. ``stop_policy`` sends the stop packet (onboard mode:
  ``snnonb.enable`` 0) at the first calm state, all body rates and the tilt below config/safety.yaml's
  ``hand_back_max_rate_deg_s`` / ``hand_back_max_tilt_deg``, at the latest after ``hand_back_wait_s``
  (the policy flies on until then); the stock controller then holds position.
- Delay compensation: with ``predict_steps`` k > 0 the state topic carries, while the policy
  streams, the measured state advanced k control steps through the last k commands sent
  (core/sim/prediction.py): the policy acts on the state its command will meet, which cancels a
  k-step radio-path delay up to the model's error (pose, odom and the safety checks keep the
  measured state).
- Flight services (std_srvs/Trigger, high-level commander): ``takeoff``, ``land``,
  ``emergency_stop``, ``start_policy``, ``stop_policy``; ``arm`` (std_srvs/SetBool).
- Motion capture: with ``mocap_topic`` set, PoseStamped messages are forwarded as external pose.
- Safety (core/deploy/safety.py, config/safety.yaml): every state sample and a 50 Hz timer check the
  geofence, tilt, state age, battery and link; a trip lands (stop streaming + high-level land) or
  stops (emergency stop) as configured, is logged, and is published on ``safety/status`` (JSON).
  A ``motor_cmd`` flagged safe (the jump-start watchdog lost the state) ends streaming and lands.
  A take-off, land or emergency stop is one packet: while the drone has not moved 5 cm its way
  (up from its lowest point since the command; down from its highest, or to the floor) within 1.5 s
  of a take-off or land, 0.5 s of a stop (counted from where it turned if it still moved the other
  way, at most 3 s), the bridge sends it again, up to 3 times (core/deploy/command_watch.py; the
  SITL firmware's receive queue lost a landing at a geofence trip, and a take-off).

Onboard mode (``mode:=onboard``, core/deploy/onboard_link.py): the drone flies the deployed protocol
itself (firmware app's snn_onboard.c, networks compiled in). ``start_policy`` sets the parameter
``snnonb.enable`` to 1, ``stop_policy`` and every end of a flight set it to 0; each state sample
sends a heartbeat on the app channel for the drone's link watchdog; motor_cmd is ignored. The
``snnonb`` log block (phase, trip, step, spikes per layer, flown action, step time) is published on
``onboard/status`` (Float32MultiArray, arrays.ONBOARD) and fills the state rows'
``episode_step`` and last action; a trip the drone reports is logged and published on ``safety/status``.

Robots come from a crazyswarm2 crazyflies.yaml (``robots_file``, ``robot``). A ``udp://HOST:PORT``
URI is a simulated Crazyflie (CrazySim's SITL firmware with ``snn-drone sitl-peer``): the bridge
probes it until it answers (core/deploy/udp_probe.py; cflib's UDP link never resends, so a connect
before the firmware is up hangs), and leaves out the log variables that firmware lacks (``pm.vbat``:
no battery check). Flown against that firmware by test/test_sitl_flight.py; not run against a
Crazyflie here (none attached).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import yaml
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import SetBool, Trigger

from snn_drone.core.common import layout
from snn_drone.core.common.config import config_dir, from_dict
from snn_drone.core.deploy.crazyflie_state import LogAssembler, RotorSpeedEstimate, log_blocks, state_from_log
from snn_drone.core.deploy.motor_mapping import MotorMappingConfig, action_to_ratio
from snn_drone.core.deploy import onboard_link
from snn_drone.core.deploy.motor_packet import MotorPacketStream, heartbeat_packet
from snn_drone.core.sim.params import load_preset
from snn_drone.core.sim.prediction import PendingCommands
from snn_drone.core.deploy.robot_config import load_crazyflies
from snn_drone.core.deploy.safety import SafetySupervisor, calm_for_hand_back, load_safety_config, tilt_deg
from snn_drone.core.deploy.command_watch import CommandWatch
from snn_drone.core.deploy.stream_stats import StreamStats
from snn_drone.core.deploy.udp_probe import udp_address, wait_for_udp_crazyflie

from . import arrays
from .node_runtime import LIVE_QOS, declare, declare_train_config, report_trips, run_node

STALE_COMMAND_STEPS = 5
"""A motor_cmd answering a state more than this many samples old is dropped (50 ms at 100 Hz)."""


def _quat_rotate_inverse(q_wxyz, v):
    """v in world -> body for a body-to-world quaternion."""
    w, x, y, z = q_wxyz
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    return r.T @ np.asarray(v)


class CrazyflieBridge(Node):
    def __init__(self):
        super().__init__("crazyflie_bridge")
        cfg = declare_train_config(self)
        robots_file = declare(self, "robots_file", "", "crazyswarm2 crazyflies.yaml (empty: config/crazyflies.yaml)")
        robot = declare(self, "robot", "", "robot name in the file (empty: the first enabled robot)")
        self.variant = declare(self, "log_variant", "float", "log blocks: 'float' (3 blocks, 14 floats) or "
                               "'compressed' (1 block: mm, mrad/s, compressed quaternion)")
        safety_file = declare(self, "safety_config", "", "safety YAML (empty: config/safety.yaml)")
        safety_over = declare(self, "safety_overrides", "", "YAML mapping of SafetyConfig keys over the file")
        self.probe_timeout_s = declare(self, "probe_timeout_s", 60.0, "udp:// URIs: probe this long for the "
                                       "simulator's answer before connecting (s)")
        self.connect_timeout_s = declare(self, "connect_timeout_s", 20.0, "time for cflib to connect and "
                                         "download the parameter and log tables (s)")
        self.command_timeout_s = declare(self, "command_timeout_s", 0.05, "the app's watchdog: no motor "
                                         "packet for this long while streaming trips it (snnmotor.timeoutMs)")
        self.command_fallback = declare(self, "command_fallback", "stop", "the app's watchdog trip: stop "
                                        "(motors off, snnmotor.fallback 0) or land (stock controller + landing, 1)")
        if self.command_fallback not in ("stop", "land"):
            raise ValueError(f"command_fallback = {self.command_fallback!r}, expected stop or land")
        if not 0.001 <= self.command_timeout_s <= 65.535:
            raise ValueError(f"command_timeout_s = {self.command_timeout_s}, expected 0.001 .. 65.535 s")
        self.max_command_age_steps = declare(self, "max_command_age_steps", STALE_COMMAND_STEPS, "a motor_cmd "
                                             "answering a state more samples old than this is dropped")
        predict_steps = declare(self, "predict_steps", 0, "ground mode: the state topic carries the state "
                                "predicted this many control steps ahead through the commands streamed last "
                                "(delay compensation, core/sim/prediction.py); 0: the measured state")
        self.has_app = False
        self.stats = StreamStats()
        self.app_counters: dict = {}
        mapping = declare(self, "motor_mapping", "{}", "YAML mapping of MotorMappingConfig keys "
                          "(mode, max_thrust_per_motor_n, max_ratio)")
        self.takeoff_height_m = declare(self, "takeoff_height_m", 1.0, "take-off height, world z (m)")
        self.takeoff_duration_s = declare(self, "takeoff_duration_s", 2.5, "take-off duration (s)")
        self.land_duration_s = declare(self, "land_duration_s", 3.0, "landing duration (s)")
        mocap_topic = declare(self, "mocap_topic", "", "PoseStamped topic forwarded as external pose (empty: off)")
        self.mode = declare(self, "mode", "ground", "ground: stream the graph's motor_cmd to the snn_motor app; "
                            "onboard: the app flies the guide and the SNN itself (snnonb.enable), the bridge "
                            "sends heartbeats and records its log block")
        if self.mode not in ("ground", "onboard"):
            raise ValueError(f"parameter mode = {self.mode!r}, expected 'ground' or 'onboard'")
        self.mapping = from_dict(MotorMappingConfig, yaml.safe_load(mapping) or {}, where="motor_mapping")
        self.params = load_preset(cfg.preset)
        robots = load_crazyflies(robots_file or config_dir() / "crazyflies.yaml")
        chosen = [r for r in robots if r.name == robot] if robot else robots[:1]
        if not chosen:
            raise ValueError(f"robot {robot!r} is not an enabled robot of {robots_file or 'crazyflies.yaml'} "
                             f"(robots: {[r.name for r in robots]})")
        self.robot = chosen[0]
        over = yaml.safe_load(safety_over) if safety_over.strip() else {}
        if not isinstance(over, dict):
            raise ValueError(f"safety_overrides = {safety_over!r}, expected a YAML mapping of SafetyConfig keys")
        self.safety = SafetySupervisor(load_safety_config(safety_file or None, over))
        self.rotor = RotorSpeedEstimate(self.params)
        self.pending = PendingCommands(self.params, predict_steps)
        self.assembler = LogAssembler(self.variant)
        self.stream = MotorPacketStream()
        self._lock = threading.Lock()
        # safety runs on cflib's log thread (after each state) and on the ROS timer: one check at a
        # time, so that a trip is reported and acted on once (re-entrant: the services end flights too)
        self._safety_lock = threading.RLock()
        self.streaming = False
        self._hand_back_at: tuple[float, float] | None = None  # (asked, latest): stop_policy waits for calm
        self.flying = False  # safety acts between take-off and the end of a landing / stop
        self._rest_at: float | None = None
        self.watch = CommandWatch()  # a take-off / land / stop packet lost on the way is sent again
        self.episode_step = 0
        self.step = 0
        self.last_action = np.full(layout.ACTION_DIM, self.params.hover_action)
        self.state: np.ndarray | None = None
        self.state_time = None
        self.battery_v = None
        self.last_link = None

        name = self.robot.name
        self.pub_state = self.create_publisher(Float32MultiArray, arrays.STATE.topic, LIVE_QOS)
        self.pub_pose = self.create_publisher(PoseStamped, f"{name}/pose", LIVE_QOS)
        self.pub_odom = self.create_publisher(Odometry, f"{name}/odom", LIVE_QOS)
        self.pub_safety = self.create_publisher(String, "safety/status", LIVE_QOS)
        self.pub_onboard = self.create_publisher(Float32MultiArray, arrays.ONBOARD.topic, LIVE_QOS)
        self._heartbeat_seq = 0
        self._onboard_phase = 0
        self.create_subscription(Float32MultiArray, arrays.MOTOR_CMD.topic, self._on_cmd, LIVE_QOS)
        if mocap_topic:
            self.create_subscription(PoseStamped, mocap_topic, self._on_mocap, LIVE_QOS)
        for srv, cb in (("takeoff", self._takeoff), ("land", self._land), ("emergency_stop", self._estop),
                        ("start_policy", self._start_policy), ("stop_policy", self._stop_policy)):
            self.create_service(Trigger, srv, cb)
        self.create_service(SetBool, "arm", self._arm)
        self.create_timer(0.02, self._check_safety)
        self._connect()

    # ---- radio ------------------------------------------------------------------------------
    def _connect(self) -> None:
        import cflib.crtp
        from cflib.crazyflie import Crazyflie
        from cflib.crazyflie.log import LogConfig
        cflib.crtp.init_drivers()
        from pathlib import Path
        cache = Path.home() / ".cache" / "snn_drone" / "cflib"
        cache.mkdir(parents=True, exist_ok=True)
        self.cf = cf = Crazyflie(rw_cache=str(cache))
        connected = threading.Event()
        failure: list[str] = []
        cf.fully_connected.add_callback(lambda uri: connected.set())
        cf.connection_failed.add_callback(lambda uri, msg: (failure.append(msg), connected.set()))
        cf.connection_lost.add_callback(lambda uri, msg: self.get_logger().error(f"link to {uri} lost: {msg}"))
        cf.packet_received.add_callback(self._on_packet)
        if udp_address(self.robot.uri) is not None:
            waited = wait_for_udp_crazyflie(self.robot.uri, self.probe_timeout_s)
            self.get_logger().info(f"{self.robot.uri} answered the probe after {waited:.1f} s")
        self.get_logger().info(f"connecting to {self.robot.name} at {self.robot.uri}")
        t0 = time.monotonic()
        cf.open_link(self.robot.uri)
        if not connected.wait(self.connect_timeout_s) or failure:
            cf.close_link()
            raise ValueError(f"cannot connect to {self.robot.uri}: "
                             f"{failure[0] if failure else f'timeout after {self.connect_timeout_s:g} s'}")
        self.get_logger().info(f"connected in {time.monotonic() - t0:.1f} s")
        cf.param.set_value("commander.enHighLevel", "1")
        if self.robot.firmware_params:
            values = {}
            for name, value in self.robot.firmware_params.items():
                element = cf.param.toc.get_element_by_complete_name(name)
                why = ("the firmware has no such parameter" if element is None else
                       "it is read-only" if element.access == element.RO_ACCESS else
                       f"it is an integer, not {value!r}" if element.pytype not in ("<f", "<d", "<e")
                       and not float(value).is_integer() else "")
                if why:
                    cf.close_link()
                    raise ValueError(f"{self.robot.uri}: cannot set {name} ({why}; firmware_params of "
                                     f"{self.robot.name} in the robots file)")
                values[name] = float(value) if element.pytype in ("<f", "<d", "<e") else int(value)
            for name, value in values.items():
                self._set_param_confirmed(name, value)
            self.get_logger().info("firmware parameters set: " + ", ".join(
                f"{k}={v:g}" for k, v in self.robot.firmware_params.items()))
        self.has_app = "timeoutMs" in cf.param.toc.toc.get("snnmotor", {})
        if self.has_app:
            self._set_param_confirmed("snnmotor.timeoutMs", int(round(self.command_timeout_s * 1000)))
            self._set_param_confirmed("snnmotor.fallback", 1 if self.command_fallback == "land" else 0)
            self.get_logger().info(f"snn_motor app: watchdog {self.command_timeout_s * 1000:.0f} ms, "
                                   f"fallback {self.command_fallback}")
            app = LogConfig(name="snn_app", period_in_ms=100)
            for var in ("snnmotor.accepted", "snnmotor.errSeq", "snnmotor.trips", "snnmotor.state", "snnmotor.seq"):
                app.add_variable(var)
            cf.log.add_config(app)
            app.data_received_cb.add_callback(lambda ts, data, lc: self.app_counters.update(data))
            app.start()
        else:
            self.get_logger().warning("the firmware has no snn_motor app (parameter group snnmotor): "
                                      "start_policy is refused (firmware/README.md builds it)")
        toc = cf.log.toc.toc  # {group: {name: element}}
        blocks = log_blocks(self.variant, has=lambda name: name.partition(".")[2] in toc.get(name.partition(".")[0], {}))
        left_out = sorted({v for _, vs in log_blocks(self.variant) for v, _ in vs} - {v for _, vs in blocks for v, _ in vs})
        if left_out:
            self.get_logger().warning(f"the firmware has no log variable {', '.join(left_out)}: left out "
                                      "(no battery voltage: the battery check is off)")
        for block, variables in blocks:
            lc = LogConfig(name=block, period_in_ms=10)
            for var, fetch in variables:
                lc.add_variable(var, fetch)
            cf.log.add_config(lc)
            lc.data_received_cb.add_callback(self._on_log)
            lc.error_cb.add_callback(lambda logconf, msg: self.get_logger().error(f"log block {logconf.name}: {msg}"))
            lc.start()
        if self.mode == "onboard":
            name, variables = onboard_link.LOG_BLOCK
            lc = LogConfig(name=name, period_in_ms=10)
            for var, fetch in variables:
                lc.add_variable(var, fetch)
            cf.log.add_config(lc)
            lc.data_received_cb.add_callback(lambda timestamp, data, logconf: self._on_onboard_log(data))
            lc.error_cb.add_callback(lambda logconf, msg: self.get_logger().error(f"log block {logconf.name}: {msg} "
                                                                                  "(is the onboard app flashed?)"))
            lc.start()
        self.get_logger().info(f"connected; logging {self.variant} state blocks at 100 Hz"
                               + (" and the onboard block" if self.mode == "onboard" else ""))

    def _set_param_confirmed(self, name: str, value: int | float) -> None:
        """Write a parameter and wait until the firmware echoes it: cflib queues the write behind its
        fetch of every parameter value, so a flight started at once would still fly the old value
        (the app's 50 ms watchdog with the motors-off fallback). Floats echo as float32."""
        group, _, var = name.partition(".")
        done = threading.Event()

        def seen(complete_name, v):
            try:
                if abs(float(v) - value) <= 1e-6 * max(1.0, abs(value)):
                    done.set()
            except (TypeError, ValueError):
                pass
        self.cf.param.add_update_callback(group=group, name=var, cb=seen)
        self.cf.param.set_value(name, str(value))
        if not done.wait(self.connect_timeout_s):
            raise ValueError(f"{self.robot.uri}: the firmware did not confirm {name} = {value} within "
                             f"{self.connect_timeout_s:g} s")

    def _on_packet(self, pk) -> None:
        self.last_link = time.monotonic()

    def _on_log(self, timestamp, data, logconf) -> None:
        sample = self.assembler.add(logconf.name, timestamp, data)
        if sample is None:
            return
        try:
            state, vbat = state_from_log(sample[1], self.rotor.speed, self.variant)
        except (ValueError, KeyError) as e:
            self.get_logger().error(f"dropped state sample: {e}")
            return
        now = time.monotonic()
        with self._lock:
            self.state, self.state_time, self.battery_v = state, now, vbat
            self.step += 1
            seen = self.pending.predict(state) if self.streaming and self.mode == "ground" else state
            row = np.concatenate([seen, [self.episode_step], self.last_action])[None]
            stamp = self.step
            self.stats.state(stamp % arrays.STEP_MODULUS, now)
            if self.streaming:
                self.episode_step += 1
        self.pub_state.publish(arrays.pack(arrays.STATE, row, {"step": stamp}))
        self._publish_pose(state)
        if self.mode == "onboard":
            self._heartbeat()
        self._check_safety()
        self._hand_back_when_due(state, now)

    # ---- onboard mode -----------------------------------------------------------------------
    def _heartbeat(self) -> None:
        with self._lock:
            seq = self._heartbeat_seq
            self._heartbeat_seq = (seq + 1) % 65536
        self.cf.appchannel.send_packet(heartbeat_packet(seq))

    def _on_onboard_log(self, data) -> None:
        try:
            row = onboard_link.telemetry(data)
        except KeyError as e:
            self.get_logger().error(f"dropped onboard sample: {e}")
            return
        phase = int(row[0])
        with self._lock:
            was, self._onboard_phase = self._onboard_phase, phase
            if self.streaming:
                self.episode_step = int(row[2])
                self.last_action = onboard_link.flown_action(row)
                self.rotor.update(self.last_action)
        self.pub_onboard.publish(arrays.pack(arrays.ONBOARD, row[None], {"step": self.step}))
        if phase == onboard_link.PHASES.index("tripped") and was != phase:
            text = f"onboard trip: {onboard_link.describe(row)}; the drone acts on it (snnonb.act*)"
            self.get_logger().error(text)
            self.pub_safety.publish(String(data=json.dumps({
                "robot": self.robot.name, "kind": onboard_link.trip_name(row), "action": "onboard",
                "message": text, "verdict": "onboard"})))
            with self._lock:
                self.streaming = False

    def _publish_pose(self, s: np.ndarray) -> None:
        stamp = self.get_clock().now().to_msg()
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, "world"
        p, q = s[layout.POS], s[layout.QUAT]
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in p)
        o = pose.pose.orientation
        o.w, o.x, o.y, o.z = (float(v) for v in q)
        self.pub_pose.publish(pose)
        odom = Odometry()
        odom.header = pose.header
        odom.child_frame_id = self.robot.name
        odom.pose.pose = pose.pose
        lin = odom.twist.twist.linear
        lin.x, lin.y, lin.z = (float(v) for v in _quat_rotate_inverse(q, s[layout.VEL]))
        ang = odom.twist.twist.angular
        ang.x, ang.y, ang.z = (float(v) for v in s[layout.ANGVEL])
        self.pub_odom.publish(odom)

    # ---- motor commands ---------------------------------------------------------------------
    def _on_cmd(self, msg) -> None:
        try:
            rows, head = arrays.unpack(arrays.MOTOR_CMD, msg, rows=1)
        except ValueError as e:
            self.get_logger().error(f"dropped motor_cmd: {e}")
            return
        if self.mode == "onboard":
            return  # the drone flies its own networks
        if head.get("safe"):
            if self.streaming:
                self.get_logger().warning("motor_cmd marked safe (the graph lost the state): landing")
                self._end_flight("land", "jump-start watchdog safe command")
            return
        with self._lock:
            if not self.streaming:
                return
            step = head["step"]
            if step is not None and (self.step - int(step)) % arrays.STEP_MODULUS > self.max_command_age_steps:
                self.stats.stale += 1
                return
            action = np.clip(rows[0].astype(np.float64), -1.0, 1.0)
            packet = self.stream.packet(action_to_ratio(action, self.params, self.mapping))
            self.last_action = action
            self.pending.sent(action, self.rotor.speed)
            self.rotor.update(action)
        self.cf.appchannel.send_packet(packet)
        self.stats.sent_for(None if step is None else int(step), time.monotonic())

    def _stop_streaming(self) -> None:
        with self._lock:
            was = self.streaming
            self.streaming = False
            self._hand_back_at = None
        if self.mode == "onboard":
            self.cf.param.set_value(onboard_link.ENABLE_PARAM, "0")  # also after a trip: re-arms the next start
        elif was:
            self.cf.appchannel.send_packet(self.stream.stop())
            self.stats.stop_sent()
            threading.Thread(target=self._report_stream, args=((self.stream.sequence - 1) & 0xFFFF,),
                             daemon=True).start()

    def _report_stream(self, last_sequence: int, wait_s: float = 2.0) -> None:
        """Log the stream's summary once the app's counters (a 10 Hz log block) show the stop packet
        (``caught_up``: then every packet not accepted was lost on the way), or after ``wait_s``
        (the stop packet itself lost, or the log late: the counts may be short)."""
        end = time.monotonic() + wait_s
        while time.monotonic() < end and self.app_counters.get("snnmotor.seq") != last_sequence:
            time.sleep(0.02)
        c = dict(self.app_counters)
        summary = self.stats.summary(c.get("snnmotor.accepted"), c.get("snnmotor.errSeq"))
        summary["caught_up"] = c.get("snnmotor.seq") == last_sequence
        self.get_logger().info("motor stream: " + json.dumps(summary))

    # ---- safety -----------------------------------------------------------------------------
    def _check_safety(self) -> None:
        self._hand_back_when_due(None, time.monotonic())
        with self._safety_lock:
            self._repeat_unheeded_command()
            if self._rest_at is not None and time.monotonic() > self._rest_at:
                self.flying, self._rest_at = False, None
            if not self.flying:
                return
            with self._lock:
                state, t_state, vbat, t_link = self.state, self.state_time, self.battery_v, self.last_link
            verdict = self.safety.check(time.monotonic(), state, t_state, vbat, t_link)
            report_trips(self, self.pub_safety, verdict, self.robot.name)
            if verdict.new and verdict.action in ("land", "stop"):
                self._end_flight(verdict.action, verdict.new[0].kind)

    def _end_flight(self, action: str, reason: str) -> None:
        with self._safety_lock:
            self._stop_streaming()
            self._send(action)
            self.watch.commanded(action, time.monotonic(), self._z())
        self.get_logger().info(f"{action} ({reason})")

    def _send(self, action: str) -> None:
        """The flight command ``action`` ('takeoff', 'land', 'stop') to the firmware (one packet)."""
        if action == "takeoff":
            self.cf.high_level_commander.takeoff(self.takeoff_height_m, self.takeoff_duration_s)
        elif action == "stop":
            self._emergency_stop()
            self.flying = False
        else:
            self.cf.high_level_commander.land(0.0, self.land_duration_s)
            # safety keeps watching the landing, then rests until the next take-off
            self._rest_at = time.monotonic() + self.land_duration_s + 0.5

    def _z(self) -> float | None:
        with self._lock:
            return None if self.state is None else float(self.state[layout.POS][2])

    def _repeat_unheeded_command(self) -> None:
        """The drone has not moved as the last take-off / land / stop asked: the packet was lost, send it again."""
        action = self.watch.action
        again = self.watch.check(time.monotonic(), self._z())
        way = "rise" if action == "takeoff" else "come down"
        if again == "gave_up":
            self.get_logger().error(f"{action}: the drone did not {way} after {self.watch.cfg.max_repeats} repeats "
                                    f"of the command: take over by hand")
        elif again is not None:
            self._send(again)
            self.get_logger().warning(f"{again}: the drone did not {way} within {self.watch.cfg.confirm_s(again):g} s, "
                                      f"sent again ({self.watch.repeats} of {self.watch.cfg.max_repeats})")

    def _emergency_stop(self) -> None:
        sup = getattr(self.cf, "supervisor", None)
        if sup is not None and self.cf.platform.get_protocol_version() >= 12:
            sup.send_emergency_stop()
        else:
            self.cf.loc.send_emergency_stop()

    # ---- services ---------------------------------------------------------------------------
    def _reply(self, response, ok: bool, message: str):
        response.success, response.message = ok, message
        self.get_logger().info(message)
        return response

    def _takeoff(self, request, response):
        with self._safety_lock:
            self.safety.reset()
            self.flying, self._rest_at = True, None
        self.rotor.reset(airborne=True)  # the stock controller spins the rotors up to hover
        self._send("takeoff")
        with self._safety_lock:
            self.watch.commanded("takeoff", time.monotonic(), self._z())
        return self._reply(response, True, f"take-off to {self.takeoff_height_m} m in {self.takeoff_duration_s} s")

    def _land(self, request, response):
        self._end_flight("land", "land service")
        return self._reply(response, True, f"landing in {self.land_duration_s} s")

    def _estop(self, request, response):
        self._end_flight("stop", "emergency_stop service")
        return self._reply(response, True, "emergency stop sent (latched until the Crazyflie restarts)")

    def _start_policy(self, request, response):
        with self._lock:
            if not self.has_app:
                return self._reply(response, False, "the firmware has no snn_motor app: cannot stream motors")
            if self.state is None:
                return self._reply(response, False, "no state yet: cannot hand the motors to the policy")
            self.stream.restart()
            self.pending.reset()
            self.stats.reset(self.app_counters.get("snnmotor.accepted"), self.app_counters.get("snnmotor.errSeq"))
            self.episode_step = 0
            self.streaming = True
        if self.mode == "onboard":
            self._heartbeat()  # the drone's link watchdog looks at the last heartbeat from the first step on
            self.cf.param.set_value(onboard_link.ENABLE_PARAM, "1")
            return self._reply(response, True, f"the drone flies its own guide and SNN ({onboard_link.ENABLE_PARAM} = 1)")
        return self._reply(response, True, "policy flies: streaming motor commands (episode restarts)")

    def _stop_policy(self, request, response):
        wait = self.safety.cfg.hand_back_wait_s
        now = time.monotonic()
        with self._lock:
            waits = self.streaming and wait > 0
            if waits and self._hand_back_at is None:
                self._hand_back_at = (now, now + wait)
        if waits:
            c = self.safety.cfg
            return self._reply(response, True, f"handing back to the stock controller at the first calm state (body "
                               f"rates < {c.hand_back_max_rate_deg_s:g} deg/s, tilt < {c.hand_back_max_tilt_deg:g} "
                               f"deg), within {wait:g} s")
        self._hand_back("at once")
        return self._reply(response, True, "stopped streaming: the stock controller holds position")

    def _hand_back_when_due(self, state, now: float) -> None:
        """After stop_policy: hand back at a calm measured ``state`` (None: the timer, which only
        looks at the deadline), or once the wait is over."""
        with self._lock:
            if self._hand_back_at is None:
                return
            asked, latest = self._hand_back_at
            calm = state is not None and calm_for_hand_back(state, self.safety.cfg)
            if not (calm or now >= latest):
                return
            self._hand_back_at = None
            seen = self.state
        why = "at a calm state" if calm else "at the end of the wait, not calm"
        rates = np.degrees(seen[layout.ANGVEL]) if seen is not None else np.full(3, np.nan)
        tilt = tilt_deg(seen[layout.QUAT]) if seen is not None else float("nan")
        self._hand_back(f"{why} {1000 * (now - asked):.0f} ms after stop_policy (body rates "
                        f"{np.array2string(rates, precision=0, separator=', ')} deg/s, tilt {tilt:.1f} deg)")

    def _hand_back(self, why: str) -> None:
        """End the stream (ground: the stop packet; onboard: snnonb.enable 0) and hold where the drone is."""
        self._stop_streaming()
        with self._lock:
            state = self.state
        if state is not None and self.flying and self._rest_at is None:
            # the app's keep-alive setpoints (CRTP priority) stopped the high-level planner: without a new
            # high-level command nothing sends setpoints after the hand-back and the supervisor locks the
            # drone 2 s later (seen in the SITL firmware); hold where the drone is
            w, x, y, z = state[layout.QUAT]
            yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
            px, py, pz = (float(v) for v in state[layout.POS])
            self.cf.high_level_commander.go_to(px, py, pz, yaw, 1.0)
        self.get_logger().info(f"handed back to the stock controller {why}")

    def _arm(self, request, response):
        sup = getattr(self.cf, "supervisor", None)
        if sup is not None and self.cf.platform.get_protocol_version() >= 12:
            sup.send_arming_request(bool(request.data))
        else:
            self.cf.platform.send_arming_request(bool(request.data))
        return self._reply(response, True, "arming request sent" if request.data else "disarming request sent")

    # ---- motion capture ---------------------------------------------------------------------
    def _on_mocap(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        self.cf.extpos.send_extpose(p.x, p.y, p.z, o.x, o.y, o.z, o.w)

    def close(self) -> None:
        """The bridge is going (the graph stopped, or a node of it died): a drone in the air lands
        with the stock controller rather than hover on with no ground station."""
        cf = getattr(self, "cf", None)
        if cf is not None:
            try:
                if self.flying and self._rest_at is None:
                    self._end_flight("land", "the bridge is closing")
                    time.sleep(0.1)  # let the radio carry the land command before the link closes
                else:
                    self._stop_streaming()
            finally:
                cf.close_link()


def main(argv=None) -> int:
    return run_node(CrazyflieBridge, argv)


if __name__ == "__main__":
    raise SystemExit(main())
