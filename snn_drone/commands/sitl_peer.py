"""`snn-drone sitl-peer`: the physics peer of CrazySim's SITL Crazyflie firmware (``cf2``), with
the project's dynamics (core/deploy/sitl.py has the protocol, the sensors and the pacing).

The peer listens on HOST:FIRMWARE_PORT for ``cf2 FIRMWARE_PORT HOST`` (a UDP client; handshake
0xF3) and on HOST:CFLIB_PORT for cflib (``udp://HOST:CFLIB_PORT``). It streams the IMU at 1 kHz
in real time, the barometer and the true pose as external pose at 100 Hz, applies the firmware's
motor PWMs to the simulated rotors, and relays all other CRTP traffic between cflib and the
firmware. Traffic from cflib goes down paced (one packet per 2 ms by default) because the
firmware's socket receive queue holds 5 packets and loses the rest of a burst (cflib's UDP link
never resends, so a lost table request stalls the connection), and is held while the firmware's
motor packets pause (its host stalled it: it would lose them when it wakes) until they have flowed
again 50 ms (at most 1 s: a longer pause is a firmware that stopped its motors). A 0xFF probe (cflib's
``scan_interface``) is answered only once the firmware has finished its sensor calibration: a
client that probes before connecting connects to a firmware that is ready.

With ``--cf2 BINARY`` the peer also starts the firmware, waits for its "Starting stabilizer loop"
and, when start-up stalls (it often does, at "Wait for sensor calibration..."), restarts it.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from ..core.common.config import from_dict
from ..core.deploy.motor_mapping import MotorMappingConfig
from ..core.deploy.sitl import HANDSHAKE, PROBE, PacingStats, SitlConfig, SitlPhysics, classify, decode_motors
from ..core.deploy.sitl_link import FirmwareLiveness, RequestResender
from ..core.sim.params import DEFAULT_PRESET, load_preset

READY_LINE = "Starting stabilizer loop"
RELAY_QUEUE_MAX = 2000
MAX_LAG_S = 0.05
"""Further behind real time than this, the peer skips the lost time (counted as time_given_up_ms)."""
CATCH_UP_TICKS = 5
"""Ticks stepped between two looks at the sockets."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sitl-peer", help="physics peer for CrazySim's SITL Crazyflie firmware (UDP), with our dynamics",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"parameter preset (default {DEFAULT_PRESET})")
    p.add_argument("--host", default="127.0.0.1", help="address both sockets bind (default 127.0.0.1)")
    p.add_argument("--firmware-port", type=int, default=19950, help="cf2's port argument (default 19950)")
    p.add_argument("--cflib-port", type=int, default=19850, help="cflib's udp:// port (default 19850)")
    p.add_argument("--imu-rate-hz", type=float, default=1000.0, help="accel + gyro rate (default 1000)")
    p.add_argument("--physics-every", type=int, default=1,
                   help="IMU periods per dynamics step (default 1: a fresh IMU sample every period; "
                        "10: the 10 ms training step, each sample held 10 periods, a tenth of the CPU)")
    p.add_argument("--pose-rate-hz", type=float, default=100.0, help="external pose rate (default 100)")
    p.add_argument("--sensor-delay-s", type=float, default=2.0,
                   help="wait after the handshake before the first sensor packet (default 2 s: "
                        "sensors sent at once stall the firmware's start-up more often)")
    p.add_argument("--relay-period-ms", type=float, default=2.0,
                   help="at most one cflib packet per this period to the firmware (default 2 ms)")
    p.add_argument("--resend-after-ms", type=float, default=100.0,
                   help="send a cflib request (tables, parameters, log control) to the firmware again when "
                        "its answer is this late (default 100 ms): the firmware's receive queue loses packets "
                        "on a loaded host and cflib's UDP link never resends")
    p.add_argument("--motor-mapping", default="{}",
                   help="YAML of MotorMappingConfig keys (mode, max_thrust_per_motor_n, max_ratio), "
                        "as given to the bridge")
    p.add_argument("--cf2", default=os.environ.get("CRAZYSIM_CF2", ""),
                   help="start this SITL cf2 binary too and restart it while start-up stalls "
                        "(default $CRAZYSIM_CF2; empty: wait for a cf2 started elsewhere)")
    p.add_argument("--cf2-log", default="", help="file for cf2's console output (default: discard)")
    p.add_argument("--attempts", type=int, default=4, help="firmware starts before giving up (default 4)")
    p.add_argument("--ready-timeout-s", type=float, default=12.0,
                   help="time for cf2 to reach 'Starting stabilizer loop' per attempt (default 12)")
    p.add_argument("--realtime-priority", type=int, default=20,
                   help="SCHED_FIFO priority of the peer and of the cf2 it starts (default 20, above the "
                        "flight graph's 10: both are paced by the wall clock; needs root or an rtprio limit, "
                        "else a warning and normal scheduling; 0: off)")
    p.add_argument("--cpus", default="",
                   help="comma-separated CPU numbers for the peer and the cf2 it starts (default: any): the "
                        "drone's side on its own cores, the ground station's graph on the others")
    p.add_argument("--duration-s", type=float, default=0.0, help="stop after this long (default 0: run until killed)")
    p.add_argument("--stats", default="", help="JSON file for the packet counts (written every second and at exit)")
    p.add_argument("--trace", default="", help="npz file for the true state and the PWMs the physics flew (mean per step) at 100 Hz (written at exit)")
    p.set_defaults(func=run)


STALL_REPORT_S = 0.05
"""Firmware stalls (motor packets paused) at least this long are logged with their wall-clock end."""


class Peer:
    def __init__(self, args):
        self.args = args
        self.params = load_preset(args.preset)
        self.mapping = from_dict(MotorMappingConfig, yaml.safe_load(args.motor_mapping) or {}, where="motor_mapping")
        self.cfg = SitlConfig(imu_rate_hz=args.imu_rate_hz, pose_rate_hz=args.pose_rate_hz,
                              physics_every=args.physics_every)
        self.fw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.fw.bind((args.host, args.firmware_port))
        self.cf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.cf.bind((args.host, args.cflib_port))
        for s in (self.fw, self.cf):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fw, selectors.EVENT_READ, "fw")
        self.sel.register(self.cf, selectors.EVENT_READ, "cf")
        self.stop = threading.Event()
        self.trace: list = []
        self.counts = collections.Counter()
        self.reset()

    def reset(self) -> None:
        """A fresh drone on the ground and no firmware (before each firmware start)."""
        self.physics = SitlPhysics(self.params, self.mapping, self.cfg)
        self.pacing = PacingStats(self.physics.dt_s)
        self.fw_addr = None
        self.cf_addr = None
        self.down: collections.deque = collections.deque()
        self.resend: collections.deque = collections.deque()
        self.resender = RequestResender(timeout_s=self.args.resend_after_ms * 1e-3)
        self.liveness = FirmwareLiveness()
        self.calibrated_at = None
        self.start_s = None
        self.motor_times: list = []
        self.max_motor_gap_s = 0.0

    # ---- traffic -------------------------------------------------------------------------------
    def _from_firmware(self, data: bytes, addr, now: float) -> None:
        kind = classify(data)
        self.counts[f"fw_{kind}"] += 1
        if kind == "handshake":
            self.fw_addr = addr
            self.fw.sendto(HANDSHAKE, addr)
            if self.start_s is None:
                self.start_s = now + self.args.sensor_delay_s
                print(f"sitl-peer: firmware at {addr[0]}:{addr[1]}; sensors in {self.args.sensor_delay_s} s",
                      file=sys.stderr, flush=True)
        elif kind == "motors":
            self.physics.set_pwm(decode_motors(data))
            stall = self.liveness.heard(now)
            if stall is not None and stall >= STALL_REPORT_S:  # the test ties a fall to it by the wall clock
                print(f"sitl-peer: firmware stalled {stall * 1e3:.0f} ms, motor packets again at wall time "
                      f"{time.time():.3f}", file=sys.stderr, flush=True)
            if self.motor_times:
                self.max_motor_gap_s = max(self.max_motor_gap_s, now - self.motor_times[-1])
            self.motor_times = [now]
        elif kind == "calibrated":
            self.calibrated_at = now
            print("sitl-peer: firmware reports its sensors calibrated", file=sys.stderr, flush=True)
        elif kind == "ground":
            if self.cf_addr is None:
                self.counts["up_no_client"] += 1
            elif self.resender.answer(data, now):  # False: the second answer to a request sent twice
                self.cf.sendto(data, self.cf_addr)
                self.counts["up_relayed"] += 1

    def _from_cflib(self, data: bytes, addr) -> None:
        if data == PROBE:
            self.counts["probes"] += 1
            if self.calibrated_at is not None:
                self.cf.sendto(PROBE, addr)
                self.counts["probes_answered"] += 1
            return
        self.cf_addr = addr
        if len(self.down) >= RELAY_QUEUE_MAX:
            self.counts["down_dropped"] += 1
            return
        self.down.append(data)

    def _send_down(self, now: float) -> bool:
        if self.fw_addr is None or self.calibrated_at is None:
            return False
        if not self.liveness.ready(now):  # stalled (or just woken): it would lose the packet
            return False
        self.resend.extend(self.resender.due(now))
        if self.resend:  # a request whose answer is late goes first
            self.fw.sendto(self.resend.popleft(), self.fw_addr)
            return True
        if self.down:
            packet = self.down.popleft()
            self.fw.sendto(packet, self.fw_addr)
            self.resender.sent(packet, now)
            self.counts["down_relayed"] += 1
            return True
        return False

    # ---- loop ----------------------------------------------------------------------------------
    def run(self, until: float, done: threading.Event | None = None) -> None:
        """Serve until ``until`` (monotonic s), :attr:`stop`, or ``done`` is set."""
        tick = 0
        relay_period_s, next_relay = self.args.relay_period_ms * 1e-3, 0.0
        self.trace_on = bool(self.args.trace)
        trace_every = max(1, int(round(0.01 / self.physics.dt_s)))
        next_stats = time.monotonic() + 1.0
        while not self.stop.is_set() and time.monotonic() < until and not (done and done.is_set()):
            now = time.monotonic()
            due = self.pacing.due(tick, self.start_s) if self.start_s is not None else now + 0.01
            for key, _ in self.sel.select(timeout=max(0.0, min(due - now, 0.01))):
                sock = key.fileobj
                while True:
                    try:
                        data, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    now = time.monotonic()
                    if key.data == "fw":
                        self._from_firmware(data, addr, now)
                    else:
                        self._from_cflib(data, addr)
            now = time.monotonic()
            if self.start_s is not None and self.fw_addr is not None:
                lag = now - self.pacing.due(tick, self.start_s)
                if lag > MAX_LAG_S:  # the host cannot keep up: give the time up rather than spiral
                    self.start_s += lag
                    self.counts["time_given_up_ms"] += int(round(lag * 1e3))
                sent = 0
                for _ in range(CATCH_UP_TICKS):
                    if self.pacing.due(tick, self.start_s) > now:
                        break
                    packets = self.physics.tick()
                    if self.pacing.decide(now - self.pacing.due(tick, self.start_s)):
                        for pk in packets:
                            self.fw.sendto(pk, self.fw_addr)
                        sent += len(packets)
                    if self.trace_on and tick % trace_every == 0:
                        self.trace.append((self.physics.time_s, self.physics.true_state(), self.physics.applied_pwm))
                    tick += 1
                # one cflib packet down per relay period, never beside a burst of sensor packets:
                # the firmware's 5-packet receive queue loses whatever overflows it
                if sent <= 2 and now >= next_relay:
                    if self._send_down(now):
                        next_relay = now + relay_period_s
            if now >= next_stats:
                next_stats = now + 1.0
                self.write_stats()

    def summary(self) -> dict:
        out = {"sim_time_s": round(self.physics.time_s, 3), **self.pacing.summary(), **self.counts,
               "max_motor_gap_ms": round(self.max_motor_gap_s * 1e3, 3),
               "imu_saturated": self.physics.saturated, "relay_queue": len(self.down), **self.resender.summary(), **self.liveness.summary(),
               "calibrated": self.calibrated_at is not None,
               "position_m": [round(float(v), 4) for v in self.physics.true_state()[:3]]}
        return out

    def write_stats(self, extra: dict | None = None) -> None:
        if self.args.stats:
            tmp = Path(self.args.stats + ".tmp")
            tmp.write_text(json.dumps({**self.summary(), **(extra or {})}, indent=1))
            tmp.replace(self.args.stats)

    def write_trace(self) -> None:
        if self.args.trace and self.trace:
            t, s, pwm = zip(*self.trace)
            np.savez(self.args.trace, time_s=np.array(t), states=np.array(s), pwm=np.array(pwm),
                     preset=self.params.name)

    def close(self) -> None:
        self.fw.close()
        self.cf.close()


class Firmware:
    """A cf2 process whose console is watched for READY_LINE."""

    def __init__(self, binary: str, args, log):
        cmd = [binary, str(args.firmware_port), args.host]
        if shutil.which("stdbuf"):  # cf2's printf would be block-buffered into a pipe
            cmd = ["stdbuf", "-oL"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, errors="replace")
        self.ready = threading.Event()
        self.lines: collections.deque = collections.deque(maxlen=50)
        self._log = log
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if self._log:
                self._log.write(line)
                self._log.flush()
            if READY_LINE in line:
                self.ready.set()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run(args) -> int:
    if args.cf2 and not Path(args.cf2).is_file():
        raise FileNotFoundError(f"--cf2 {args.cf2}: no such file (a SITL cf2 binary built from CrazySim's "
                                f"crazyflie-firmware, sitl_make)")
    if not 0 <= args.realtime_priority <= 99:
        raise ValueError(f"--realtime-priority {args.realtime_priority}: expected 0 (off) .. 99")
    if args.cpus:
        cpus = {int(c) for c in args.cpus.split(",")}
        if not cpus <= os.sched_getaffinity(0):
            raise ValueError(f"--cpus {args.cpus}: this process may run on CPUs {sorted(os.sched_getaffinity(0))}")
        os.sched_setaffinity(0, cpus)  # before any thread or child, like the priority
        print(f"sitl-peer: on CPUs {sorted(cpus)} (cf2 inherits them)", file=sys.stderr, flush=True)
    if args.realtime_priority:
        try:  # before any thread or child: the firmware's threads inherit it
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.realtime_priority))
            print(f"sitl-peer: real-time priority SCHED_FIFO {args.realtime_priority} (cf2 inherits it)",
                  file=sys.stderr, flush=True)
        except (OSError, AttributeError) as e:
            print(f"sitl-peer: no real-time priority (SCHED_FIFO {args.realtime_priority}: {e}); normal "
                  f"scheduling, so other load on the machine delays the IMU clock", file=sys.stderr, flush=True)
    peer = Peer(args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: peer.stop.set())
    log = open(args.cf2_log, "a") if args.cf2_log else None
    end = time.monotonic() + args.duration_s if args.duration_s > 0 else float("inf")
    firmware, starts = None, 0
    print(f"sitl-peer: firmware port {args.host}:{args.firmware_port}, cflib udp://{args.host}:{args.cflib_port}, "
          f"preset {args.preset}, IMU {args.imu_rate_hz:g} Hz", file=sys.stderr, flush=True)
    try:
        if args.cf2:
            while True:
                starts += 1
                peer.reset()
                firmware = Firmware(args.cf2, args, log)
                peer.run(min(end, time.monotonic() + args.ready_timeout_s + args.sensor_delay_s), firmware.ready)
                if firmware.ready.wait(0) or peer.stop.is_set() or time.monotonic() >= end:
                    break
                last = firmware.lines[-1] if firmware.lines else "(no output)"
                print(f"sitl-peer: firmware start {starts} stalled at {last!r}; "
                      f"{'restarting' if starts < args.attempts else 'giving up'}", file=sys.stderr, flush=True)
                firmware.kill()
                if starts >= args.attempts:
                    peer.write_stats({"firmware_starts": starts, "firmware_ready": False})
                    return 1
            if firmware.ready.is_set():
                print(f"sitl-peer: firmware ready (start {starts}): cflib may connect", file=sys.stderr, flush=True)
        peer.run(end)
    finally:
        if firmware is not None:
            firmware.kill()
        peer.write_stats({"firmware_starts": starts})
        peer.write_trace()
        print("sitl-peer: " + json.dumps(peer.summary()), file=sys.stderr, flush=True)
        peer.close()
        if log:
            log.close()
    return 0
