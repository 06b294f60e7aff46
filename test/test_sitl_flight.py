"""fly_real backend:=real against the Crazyflie firmware itself: CrazySim's software-in-the-loop
``cf2`` (with the project's firmware app, firmware/, as its out-of-tree controller) and the project's
physics peer (`snn-drone sitl-peer`), cflib over ``udp://``. Gated: ``CRAZYSIM_CF2`` names the cf2
binary (built from CrazySim's crazyflie-firmware fork, sitl_make, with firmware/'s app added; see the
issue 14 note); skipped otherwise.

Seven tests, each with its own firmware boot and flight graph:
- probe + connect, the stock take-off into a low geofence: the bridge's trip lands the drone with
  the firmware's high-level commander;
- the SNN flown from the ground (guide warm-up, then the actor) as motor packets: accepted by the
  app (up to 2 % lost on the SITL path), then either no trip (the SNN held, or wandered: this
  machine's latency decides), stop_policy, the stock hold and landing, or a tilt / geofence trip
  the firmware acts on;
- the onboard mode: the firmware flies the exported guide and SNN itself; the position error, then
  stop_policy (the stock controller holds) and landing;
- the onboard mode losing its ground link: the drone's own watchdog stops the motors;
- the firmware frozen 0.5 s in a stock hover: the bridge's stale-state trip lands the drone;
- a roll torque streamed from the ground (the test plays the paused jump-start node): the bridge's
  tilt trip, and the firmware's supervisor stops the motors;
- a take-off whose motor stream stops (the test plays the paused jump-start node: hover commands,
  then none): the app's watchdog in the firmware trips and lands the drone itself.
SNN_DRONE_SITL_PHYSICS_EVERY (default 10) steps the peer's physics every N IMU periods;
SNN_DRONE_SITL_PREDICT (default 2) is the ground stream's predict_steps (delay compensation),
SNN_DRONE_SITL_LOG_VARIANT (default float) its log_variant, SNN_DRONE_SITL_PRESET (default: the
peer's) the peer's preset. The robots file is config/crazyflies_sitl.yaml (its stock-PID yaw gains
for cf21_paper are left out for another preset).
Both are real time: the firmware and the peer run at SCHED_FIFO 20 where permitted (the peer's
default; SNN_DRONE_SITL_PRIORITY changes it), the flight graph at 10. SNN_DRONE_SITL_CPUS (default:
any) pins the peer and the firmware to those CPUs (sitl-peer --cpus).
"""
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

CF2 = os.environ.get("CRAZYSIM_CF2", "")
pytestmark = pytest.mark.skipif(not (CF2 and Path(CF2).is_file()),
                                reason="CRAZYSIM_CF2 does not name a SITL cf2 binary (CrazySim's firmware "
                                       "built with firmware/'s app): no firmware to fly against")

from std_msgs.msg import Float32MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ros_helpers import Probe, Processes, child_pid, fresh_domain_id  # noqa: E402
from snn_drone.core.common.config import package_root  # noqa: E402
from snn_drone.nodes import arrays  # noqa: E402

ROOT = package_root()
SNN = Path(os.environ.get("SNN_DRONE_SITL_ACTOR", str(ROOT / "checkpoints" / "snn_actor_delay.pt")))
TARGET = np.array([0.0, 0.0, 1.0])
POLICY_S = 6.0
PEER_PRIORITY = os.environ.get("SNN_DRONE_SITL_PRIORITY", "20")
COMMAND_AGE = os.environ.get("SNN_DRONE_SITL_COMMAND_AGE", "5")
PHYSICS_EVERY = os.environ.get("SNN_DRONE_SITL_PHYSICS_EVERY", "10")
PREDICT = os.environ.get("SNN_DRONE_SITL_PREDICT", "2")
LOG_VARIANT = os.environ.get("SNN_DRONE_SITL_LOG_VARIANT", "float")
PEER_PRESET = os.environ.get("SNN_DRONE_SITL_PRESET", "")
PEER_CPUS = os.environ.get("SNN_DRONE_SITL_CPUS", "")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(probe, name, timeout_s=30.0):
    client = probe.node.create_client(Trigger, name)
    probe.spin_until(client.service_is_ready, timeout_s, f"service {name}")
    future = client.call_async(Trigger.Request())
    probe.spin_until(future.done, timeout_s, f"answer of {name}")
    return future.result()


@pytest.fixture
def sitl(tmp_path):
    """A fresh firmware and its peer for each test (the peer restarts a start-up that stalls; a
    firmware whose supervisor locked needs a reboot)."""
    tmp = tmp_path / "sitl"
    tmp.mkdir()
    fw_port, cf_port = _free_udp_port(), _free_udp_port()
    # config/crazyflies_sitl.yaml on this test's port; its yaw gains are for the peer's cf21_paper only
    robots = tmp / "crazyflies.yaml"
    data = yaml.safe_load((ROOT / "config" / "crazyflies_sitl.yaml").read_text())
    (cf1,) = data["robots"].values()
    cf1["uri"] = f"udp://127.0.0.1:{cf_port}"
    if PEER_PRESET not in ("", "cf21_paper"):
        data["robot_types"][cf1["type"]].pop("firmware_params")
    robots.write_text(yaml.safe_dump(data))
    procs = Processes(tmp / "logs", fresh_domain_id())
    cf2_log, stats = tmp / "cf2.log", tmp / "peer_stats.json"
    try:
        procs.cli("peer", "sitl-peer", "--cf2", CF2, "--firmware-port", str(fw_port), "--cflib-port", str(cf_port),
                  "--physics-every", PHYSICS_EVERY, "--attempts", "8", "--realtime-priority", PEER_PRIORITY,
                  "--cf2-log", str(cf2_log), "--stats", str(stats), "--trace", str(tmp / "trace.npz"),
                  *(("--preset", PEER_PRESET) if PEER_PRESET else ()), *(("--cpus", PEER_CPUS) if PEER_CPUS else ()))
        procs.wait_log("peer", r"firmware ready \(start \d+\)", 240)
        yield {"robots": robots, "cf2_log": cf2_log, "stats": stats, "procs": procs}
        procs.stop("peer")
        peer = json.loads(stats.read_text())
        print(f"SITL peer: {peer}")
    finally:
        procs.stop_all()


def _launch(sitl, tmp_path, *extra):
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    states = probe.listen("/state", Float32MultiArray, depth=20000)
    safety = probe.listen("/safety/status", String)
    # a shared 2-core machine: state may be 1 s old, link quiet 1 s, before the bridge acts
    try:
        procs.cli("launch", "launch", "fly_real", "backend:=real", f"robots_file:={sitl['robots']}", f"actor:={SNN}",
                  "record:=false", "connect_timeout_s:=90", *extra)
        probe.spin_until(lambda: len(states) > 50, 240, "state from the firmware", procs, "launch")
        assert "Locked" not in sitl["cf2_log"].read_text(errors="replace"), _cf2_tail(sitl)
        log = procs.log("launch")
        assert re.search(r"answered the probe after", log), log[-3000:]
        if PEER_PRESET in ("", "cf21_paper"):  # the robots file's yaw gains, written and confirmed
            m = re.search(r"firmware parameters set: (.*)", log)
            assert m and set(m.group(1).split(", ")) == {"pid_rate.yaw_kp=30", "pid_rate.yaw_ki=4",
                                                         "pid_attitude.yaw_kp=3"}, log[-3000:]
        assert re.search(r"no log variable pm\.vbat(MV)?: left out", log), log[-3000:]
    except BaseException:  # the caller's cleanup never runs: a graph left behind would load the next tests
        probe.close()
        procs.stop_all()
        raise
    return procs, probe, states, safety


def _cf2_tail(sitl) -> str:
    lines = [ln for ln in sitl["cf2_log"].read_text(errors="replace").splitlines() if "prediction rate" not in ln]
    return "cf2: " + "\n".join(lines[-15:])


def _stalls_before(peer_log: str, launch_log: str, within_s: float = 0.5) -> list[tuple[float, float]]:
    """The firmware stalls (ms, s before the trip) that ended within ``within_s`` before the first
    trip the bridge logged: the SITL firmware on a loaded host pauses ~100 ms in most flights
    (its FreeRTOS side not scheduled), a real Crazyflie does not."""
    trip = re.search(r"\[ERROR\] \[(\d+\.\d+)\] \[crazyflie_bridge\]: (?:onboard trip|safety trip)", launch_log)
    if trip is None:
        return []
    t_trip = float(trip.group(1))
    stalls = [(float(ms), t_trip - float(t)) for ms, t in
              re.findall(r"firmware stalled (\d+) ms, motor packets again at wall time (\d+\.\d+)", peer_log)]
    return [(ms, ago) for ms, ago in stalls if 0.0 <= ago <= within_s]


def _repeats(procs) -> int:
    """Take-off / land / stop commands the bridge sent again because the drone did not move as asked
    (a packet lost on the way)."""
    return len(re.findall(r"the drone did not (?:rise|come down) within .* sent again", procs.log("launch")))


def _firmware_stopped(sitl, probe, procs, states) -> None:
    """The firmware acted on the bridge's emergency stop: supervisor locked, motors off, the drone on the floor."""
    probe.spin_until(lambda: "Locked" in sitl["cf2_log"].read_text(errors="replace"), 10,
                     f"the supervisor's lock ({_cf2_tail(sitl)})")
    probe.spin_until(lambda: _z(states) < 0.1, 10, "the stopped drone on the floor", procs, "launch")


def _z(states):
    return float(arrays.unpack(arrays.STATE, states[-1], rows=1).rows[0][2])


def _held_then_stock_hold_and_land(probe, procs, states, flown, err, held=True):
    """The policy's states stayed near the target and up (``held``; else only off the floor: a policy
    that wandered without a trip); after stop_policy the bridge hands back at a calm state (or at
    the end of its wait), and the stock controller holds for 2 s where it took over, then lands."""
    if held:
        assert err.max() < 0.8 and flown[:, 2].min() > 0.3, (err.mean(), err.max(), flown[:, 2].min())
    else:
        assert flown[:, 2].min() > 0.1, (err.mean(), err.max(), flown[:, 2].min())
    m = procs.wait_log("launch", r"handed back to the stock controller (.*)", 10)
    print(f"SITL hand-back: {m.group(1)}")
    z0 = _z(states)
    probe.spin_for(2.0)
    assert _z(states) > min(0.5, z0 - 0.1), (z0, _z(states))
    assert _call(probe, "/land").success
    probe.spin_until(lambda: _z(states) < 0.05, 30, "the stock landing", procs, "launch")


def test_sitl_stock_take_off_into_a_low_geofence_trips_and_the_firmware_lands(sitl, tmp_path):
    procs, probe, states, safety = _launch(
        sitl, tmp_path, "safety_overrides:={geofence_max_m: [1.5, 1.5, 0.6], max_state_age_s: 1.0, link_timeout_s: 1.0}")
    try:
        assert _call(probe, "/takeoff").success  # to 1 m: through the fence at 0.6 m
        probe.spin_until(lambda: len(safety) > 0, 30, f"the geofence trip ({_cf2_tail(sitl)})", procs, "launch")
        trip = json.loads(safety[0].data)
        assert trip["kind"] == "geofence" and trip["action"] == "land" and trip["limit"] == 0.6, trip
        probe.spin_until(lambda: _z(states) < 0.05, 30, "the firmware's landing", procs, "launch")
        # after the landing: the probe's states lag the bridge's, and the drone climbs on for ~0.7 s
        # after the trip (to 0.93 m in one SITL trace); a take-off to 1 m without the land peaks at 1.08 m
        zmax = max(float(arrays.unpack(arrays.STATE, m, rows=1).rows[0][2]) for m in list(states))
        print(f"SITL geofence: tripped at {trip['value']:.3f} m, highest {zmax:.3f} m, landed "
              f"({_repeats(procs)} commands repeated)")
        assert zmax < 1.0, zmax  # the climb to 1 m was cut short
    finally:
        probe.close()
        procs.stop_all()


def test_sitl_stale_state_trips_and_the_firmware_lands(sitl, tmp_path):
    """The firmware freezes for 0.5 s (SIGSTOP on cf2: no log, no answers) while the drone hovers on
    the stock controller: the state goes stale before the link times out, the bridge trips and
    asks the firmware to land, which it does once it runs again."""
    procs, probe, states, safety = _launch(
        sitl, tmp_path, "safety_overrides:={max_state_age_s: 0.2, link_timeout_s: 3.0}")
    try:
        assert _call(probe, "/takeoff").success
        probe.spin_until(lambda: _z(states) > 0.9, 30, f"the stock take-off to 1 m ({_cf2_tail(sitl)})", procs, "launch")
        probe.spin_for(1.0)
        assert not safety, [m.data for m in safety]
        cf2 = child_pid(sitl["procs"].procs["peer"].pid, b"cf2")
        os.kill(cf2, signal.SIGSTOP)
        try:
            probe.spin_for(0.5)
        finally:
            os.kill(cf2, signal.SIGCONT)
        probe.spin_until(lambda: len(safety) > 0, 10, "the stale-state trip", procs, "launch")
        trip = json.loads(safety[0].data)
        assert trip["kind"] == "stale_state" and trip["action"] == "land", trip
        t_trip = time.monotonic()
        probe.spin_until(lambda: _z(states) < 0.05, 30, f"the firmware's landing ({_cf2_tail(sitl)})", procs, "launch")
        print(f"SITL stale state: tripped at {trip['value']:.2f} s old, landed {time.monotonic() - t_trip:.1f} s later "
              f"({_repeats(procs)} commands repeated)")
        assert all(json.loads(m.data)["kind"] != "lost_link" for m in safety), [m.data for m in safety]
    finally:
        probe.close()
        procs.stop_all()


def test_sitl_snn_streamed_from_the_ground_reaches_the_app_and_a_tilt_is_stopped_by_the_firmware(
        sitl, tmp_path):
    """The ground path: the graph's guide for 50 steps, then the SNN, streamed as motor packets. This
    loop has 1-3 steps of delay (log sample, graph, packet, 10 ms physics); the paper's SNNs fall at
    that (docs/RESULTS.md, "Why the SNN streamed from the ground falls"). The delay-trained
    checkpoints/snn_actor_delay.pt (the default here; SNN_DRONE_SITL_ACTOR) acting on the state
    predicted 2 steps ahead (predict_steps) held whenever the graph's latency stayed near 10 ms and
    fell above ~15 ms (docs/RESULTS.md, "Delay compensation").
    Either way the packets must reach the app (but for the few the SITL path loses) and the guide must hold its warm-up; a hold must stay
    near the target and hand back to the stock controller, a fall must be caught by the bridge's
    trip, which the firmware acts on."""
    procs, probe, states, safety = _launch(
        sitl, tmp_path, f"max_command_age_steps:={COMMAND_AGE}", f"predict_steps:={PREDICT}", f"log_variant:={LOG_VARIANT}",
        "command_timeout_s:=0.3",
        "command_fallback:=land",
        "safety_overrides:={max_state_age_s: 1.0, link_timeout_s: 1.0}")
    try:
        def rows():
            return [arrays.unpack(arrays.STATE, m, rows=1).rows[0] for m in list(states)]

        assert _call(probe, "/takeoff").success
        probe.spin_until(lambda: _z(states) > 0.9, 30, f"the stock take-off to 1 m ({_cf2_tail(sitl)})", procs, "launch")
        probe.spin_for(2.0)
        n0 = len(states)
        ok = _call(probe, "/start_policy")
        assert ok.success, ok.message
        end = time.monotonic() + POLICY_S
        while time.monotonic() < end and not safety:
            probe.spin_for(0.05)
        t_trip = time.monotonic()
        assert _call(probe, "/stop_policy").success
        m = procs.wait_log("launch", r"motor stream: (\{.*\})", 10)
        stream = json.loads(m.group(1))
        flown = np.array([r for r in rows()[n0:] if r[arrays.EPISODE_STEP_COL] >= 1]).reshape(-1, arrays.STATE.width)
        warmup = flown[flown[:, arrays.EPISODE_STEP_COL] <= 50]
        err = np.linalg.norm(flown[:, :3] - TARGET, axis=1)
        print(f"SITL stream: {stream}; {len(flown)} states, {int(flown[:, arrays.EPISODE_STEP_COL].max())} steps, "
              f"mean position error {err.mean():.3f} m; trips {[json.loads(x.data)['kind'] for x in safety]}")
        # the link: the app accepted what the bridge sent (the stop packet too), none out of
        # sequence, but for the packets the SITL path loses: the fork's 5-packet socket queue overflows
        # when its FreeRTOS side stalls (7 of 617 packets in one stream, 2026-12-03; the
        # cflib requests it resent in the same run show the same), up to 2 % here. After a trip the emergency stop locks the app: the
        # packets still on their way then (one per 10 ms of the slowest state-to-packet latency) are not accepted
        in_flight = 1 + (int(np.ceil(stream.get("latency_max_ms", 0.0) / 10.0)) if safety else 0)
        lost = stream.get("not_accepted", -99)
        # every state flown got its command: sent, or refused by the bridge as too old (on this 2-core
        # machine the firmware and the peer, at a higher priority, slow the graph down: in 3 of 9 runs
        # on 2026-12-04 a third or more of the commands went stale and the drone fell early)
        flown_steps = int(flown[:, arrays.EPISODE_STEP_COL].max())
        assert stream["sent"] + stream["stale_dropped"] >= min(flown_steps, 50) - 5 and stream["sent"] >= 10, stream
        assert stream["stops_sent"] == 1 and 0 <= lost <= in_flight + 0.02 * stream["sent"], stream
        assert stream.get("err_seq") == 0, stream
        slow = stream["stale_dropped"] > 0.1 * (stream["sent"] + stream["stale_dropped"])
        if slow:  # the loop was not flown as designed: the link and the firmware's answer are what is tested
            print(f"SITL ground stream: the graph was too slow for the loop ({stream['stale_dropped']} of "
                  f"{stream['sent'] + stream['stale_dropped']} commands stale, {stream.get('latency_mean_ms')} ms mean)")
        else:  # the guide's warm-up held (the drone still near 1 m and upright when it handed over)
            assert flown_steps > 50 and warmup[:, 2].min() > 0.7, (warmup[:, 2].min(), stream)
        if safety:
            trip = json.loads(safety[0].data)
            steps = flown_steps - 50
            assert (trip["kind"], trip["action"]) in (("tilt", "stop"), ("geofence", "land")), trip
            if trip["kind"] == "tilt":
                _firmware_stopped(sitl, probe, procs, states)
            else:  # left the box: the firmware's high-level commander lands it
                probe.spin_until(lambda: _z(states) < 0.05, 30, "the firmware's landing", procs, "launch")
            print(f"SITL ground stream: the SNN tripped {trip['kind']} ({trip['value']:.2f} against {trip['limit']}) "
                  f"at step {flown_steps} ({max(steps, 0)} SNN steps); the firmware acted ({trip['action']}) and the drone was on the floor "
                  f"{time.monotonic() - t_trip:.1f} s after the trip")
        else:  # no trip: the stock controller takes back and lands
            # the SNN's flight from the ground depends on this machine's latency (docs/RESULTS.md): without
            # a trip it may have held or wandered; either way the stock controller must take it back
            wandered = err.max() >= 0.8 or flown[:, 2].min() <= 0.3
            if wandered:
                print(f"SITL ground stream: no trip, but the SNN wandered (max error {err.max():.2f} m, "
                      f"min z {flown[:, 2].min():.2f} m)")
            _held_then_stock_hold_and_land(probe, procs, states, flown, err, held=not wandered)
    finally:
        probe.close()
        procs.stop_all()


def test_sitl_onboard_mode_flies_guide_then_snn_in_the_firmware_and_the_stock_controller_takes_back(sitl, tmp_path):
    """mode:=onboard: the firmware runs the exported guide and SNN itself from its Kalman estimate (no
    radio in the control loop); the bridge only sets snnonb.enable, sends heartbeats and records the
    snnonb log block."""
    procs, probe, states, safety = _launch(sitl, tmp_path, "mode:=onboard",
                                           "safety_overrides:={max_state_age_s: 1.0, link_timeout_s: 1.0}")
    onboard = probe.listen("/onboard/status", Float32MultiArray, depth=20000)
    try:
        assert _call(probe, "/takeoff").success
        probe.spin_until(lambda: _z(states) > 0.9, 30, f"the stock take-off to 1 m ({_cf2_tail(sitl)})", procs, "launch")
        probe.spin_for(2.0)
        n0, k0 = len(states), len(onboard)
        ok = _call(probe, "/start_policy")
        assert ok.success, ok.message
        probe.spin_for(POLICY_S)
        n1, k1 = len(states), len(onboard)
        assert _call(probe, "/stop_policy").success
        tele = np.array([arrays.unpack(arrays.ONBOARD, m, rows=1).rows[0] for m in list(onboard)[k0:k1]])
        assert len(tele) > 0.5 * POLICY_S * 100, (len(tele), _cf2_tail(sitl))
        phase, trip, step = tele[:, 0], tele[:, 1], tele[:, 2]
        if safety or (trip != 0).any():
            stalls = _stalls_before(sitl["procs"].log("peer"), procs.log("launch"))
            if stalls:  # the drone's own trip acted (motors stopped): the SITL host froze the firmware first
                probe.spin_until(lambda: _z(states) < 0.1, 20, "the stopped drone on the floor", procs, "launch")
                pytest.xfail(f"the onboard SNN tripped {[json.loads(x.data)['kind'] for x in safety]} "
                             f"{stalls[0][1]:.2f} s after a {stalls[0][0]:.0f} ms stall of the SITL firmware "
                             f"(a host artefact); the drone stopped itself")
        assert not safety and not (trip != 0).any(), ([s.data for s in safety], np.unique(trip), _cf2_tail(sitl))
        assert (phase == 1).any() and (phase == 2).any(), np.unique(phase)
        # the drone's step counter after the step it logs: steps 1..50 flown by the guide, then the SNN
        assert step[phase == 1].max() <= 50 and step[phase == 2].min() >= 51, (step[phase == 1].max(), step[phase == 2].min())
        rows = np.array([arrays.unpack(arrays.STATE, m, rows=1).rows[0] for m in list(states)[n0:n1]])
        snn = rows[rows[:, arrays.EPISODE_STEP_COL] > 50]
        err = np.linalg.norm(snn[:, :3] - TARGET, axis=1)
        step_us = tele[phase == 2, -1]
        print(f"SITL onboard: {len(snn)} states under the SNN ({int(step.max())} steps), mean position error "
              f"{err.mean():.3f} m, max {err.max():.3f} m, min z {snn[:, 2].min():.3f} m; spikes/step "
              f"{tele[phase == 2, 3].mean():.1f} + {tele[phase == 2, 4].mean():.1f}; step {np.median(step_us):.0f} us")
        assert len(snn) > 0.5 * (POLICY_S - 0.5) * 100, len(snn)
        _held_then_stock_hold_and_land(probe, procs, states, snn, err)
    finally:
        probe.close()
        procs.stop_all()


def test_sitl_onboard_mode_lost_link_trips_in_the_firmware_which_stops_the_motors(sitl, tmp_path):
    """The ground goes silent mid-flight (the bridge process is stopped with SIGSTOP for 1.5 s): no
    heartbeat reaches the drone, the onboard link watchdog (250 ms, config/safety.yaml's link_timeout_s,
    exported into the firmware) trips and the drone acts on it itself (link_action stop: motors off)."""
    procs, probe, states, safety = _launch(sitl, tmp_path, "mode:=onboard",
                                           "safety_overrides:={max_state_age_s: 5.0, link_timeout_s: 5.0}")
    onboard = probe.listen("/onboard/status", Float32MultiArray, depth=20000)
    try:
        assert _call(probe, "/takeoff").success
        probe.spin_until(lambda: _z(states) > 0.9, 30, f"the stock take-off to 1 m ({_cf2_tail(sitl)})", procs, "launch")
        probe.spin_for(1.0)
        assert _call(probe, "/start_policy").success
        probe.spin_until(lambda: any(arrays.unpack(arrays.ONBOARD, m, rows=1).rows[0][0] == 2 for m in list(onboard)),
                         10, "the SNN flying on the drone")
        probe.spin_for(0.5)
        bridge = child_pid(procs.procs["launch"].pid, b"crazyflie_bridge")
        os.kill(bridge, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            os.kill(bridge, signal.SIGCONT)
        cf2_log = sitl["cf2_log"]
        probe.spin_until(lambda: any(json.loads(x.data).get("verdict") == "onboard" for x in list(safety)), 20,
                         f"the drone's trip reported by the bridge ({_cf2_tail(sitl)})")
        trip = [json.loads(x.data) for x in list(safety) if json.loads(x.data).get("verdict") == "onboard"][0]
        assert trip["kind"] == "lost_link", trip
        probe.spin_until(lambda: _z(states) < 0.1, 20, "the stopped drone on the floor", procs, "launch")
        last = arrays.unpack(arrays.ONBOARD, list(onboard)[-1], rows=1).rows[0]
        assert int(last[0]) == 3 and int(last[1]) == 1, last  # latched: tripped, lost_link
        print(f"SITL onboard lost link: {trip['message']}; the drone was on the floor")
    finally:
        probe.close()
        procs.stop_all()


def test_sitl_a_streamed_roll_torque_trips_tilt_and_the_firmware_stops_the_motors(sitl, tmp_path):
    """The tilt trip on demand (the SNN's own stream trips it only when it falls): the test plays the
    jump-start node (paused) and streams the hover command with a roll/pitch torque (two neighbouring
    motors up, the other two down: no yaw); past 60 deg the bridge trips tilt, its emergency stop
    locks the firmware's supervisor and the motors stop."""
    from snn_drone.core.learning.train_config import load_train_config
    from snn_drone.core.sim.params import load_preset
    hover = load_preset(load_train_config(None).preset).hover_action
    torque = np.clip(hover + np.array([[-0.3, -0.3, 0.3, 0.3]]), -1.0, 1.0)
    procs, probe, states, safety = _launch(sitl, tmp_path, "max_command_age_steps:=50",
                                           "safety_overrides:={max_state_age_s: 1.0, link_timeout_s: 1.0}")
    cmd = probe.publisher("/motor_cmd", Float32MultiArray)
    try:
        assert _call(probe, "/takeoff").success
        probe.spin_until(lambda: _z(states) > 0.9, 60, f"the stock take-off to 1 m ({_cf2_tail(sitl)})", procs, "launch")
        probe.spin_for(1.0)
        assert not safety, [m.data for m in safety]
        jumpstart = child_pid(procs.procs["launch"].pid, b"jumpstart_node")
        os.kill(jumpstart, signal.SIGSTOP)
        try:
            assert _call(probe, "/start_policy").success
            t_start = time.monotonic()
            while time.monotonic() < t_start + 3.0 and not safety:
                step = arrays.unpack(arrays.STATE, states[-1], rows=1).header["step"]
                cmd.publish(arrays.pack(arrays.MOTOR_CMD, torque, {"step": step, "guide_steps": 50, "safe": 0}))
                probe.spin_for(0.01)
            assert safety, f"no trip after 3 s of a roll torque ({_cf2_tail(sitl)})"
            t_trip = time.monotonic()
        finally:
            os.kill(jumpstart, signal.SIGCONT)
        trip = json.loads(safety[0].data)
        assert (trip["kind"], trip["action"]) == ("tilt", "stop"), trip
        _firmware_stopped(sitl, probe, procs, states)
        print(f"SITL tilt: tripped at {trip['value']:.1f} deg (limit {trip['limit']}) {t_trip - t_start:.2f} s into "
              f"the torque; the firmware locked and the drone was on the floor {time.monotonic() - t_trip:.1f} s later")
    finally:
        probe.close()
        procs.stop_all()


def test_sitl_motor_stream_stops_and_the_apps_watchdog_in_the_firmware_lands_the_drone(sitl, tmp_path):
    """The test plays the jump-start node (paused) for half a second: hover commands for the newest
    state, which the bridge streams to the app; then none. The app's watchdog (0.3 s, land) trips in
    the firmware and the stock controller lands the drone."""
    from snn_drone.core.learning.train_config import load_train_config
    from snn_drone.core.sim.params import load_preset
    hover = load_preset(load_train_config(None).preset).hover_action
    procs, probe, states, safety = _launch(
        sitl, tmp_path, "command_timeout_s:=0.3", "command_fallback:=land", "max_command_age_steps:=50",
        "safety_overrides:={max_state_age_s: 1.0, link_timeout_s: 1.0}")
    cf2_log = sitl["cf2_log"]
    cmd = probe.publisher("/motor_cmd", Float32MultiArray)
    try:
        assert "snn_motor app: watchdog 300 ms, fallback land" in procs.log("launch")
        assert _call(probe, "/takeoff").success
        probe.spin_until(lambda: _z(states) > 0.9, 60, f"the stock take-off to 1 m ({_cf2_tail(sitl)})", procs, "launch")
        probe.spin_for(1.0)
        jumpstart = child_pid(procs.procs["launch"].pid, b"jumpstart_node")
        os.kill(jumpstart, signal.SIGSTOP)  # the graph's commands stop; the test sends them for 0.5 s
        try:
            assert _call(probe, "/start_policy").success
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                step = arrays.unpack(arrays.STATE, states[-1], rows=1).header["step"]
                cmd.publish(arrays.pack(arrays.MOTOR_CMD, np.full((1, 4), hover),
                                        {"step": step, "guide_steps": 50, "safe": 0}))
                probe.spin_for(0.01)
            t_stop = time.monotonic()
            probe.spin_until(lambda: "no motor packet for 300 ms, fallback 1" in cf2_log.read_text(errors="replace"),
                             10, f"the app's watchdog trip in the firmware ({_cf2_tail(sitl)})")
            probe.spin_until(lambda: _z(states) < 0.05, 30, "the firmware's landing after its watchdog trip")
            print(f"SITL watchdog: tripped and landed {time.monotonic() - t_stop:.1f} s after the stream stopped")
        finally:
            os.kill(jumpstart, signal.SIGCONT)
        assert _call(probe, "/stop_policy").success
        m = procs.wait_log("launch", r"motor stream: (\{.*\})", 10)
        stream = json.loads(m.group(1))
        print(f"SITL watchdog stream: {stream}")
        # a landing, not a fall: no trip of the bridge's own (a fall ends below the geofence floor, z < -0.1 m)
        assert stream["sent"] >= 1 and not safety, (stream, [s.data for s in safety])
    finally:
        probe.close()
        procs.stop_all()
