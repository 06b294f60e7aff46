"""The firmware's stock controller on the peer's model: take-off, hover, a yaw step and a lateral
step, flown by CrazySim's SITL ``cf2`` against ``snn-drone sitl-peer``, cflib driving the
high-level commander directly (no ROS graph). Prints the largest |yaw rate| and |pitch rate| per
second around the steps, then ``name=value`` pairs.

Why: the stock PID gains are the real Crazyflie 2.1's; the peer's default preset cf21_paper (the
model the SNN is trained on) has 3x less yaw inertia and 3x slower motors. With the stock gains the
yaw loop diverges there after the yaw step; config/crazyflies_sitl.yaml's gains hold it. Real time:
run it on a quiet machine (nothing else busy), one run at a time.

    .venv/bin/python bench/sitl_stock_step.py --cf2 $CRAZYSIM_CF2 [--preset cf21_paper]
        [--param pid_rate.yaw_kp=30 ...] [--robots config/crazyflies_sitl.yaml]

``--robots FILE`` takes the first robot's ``firmware_params`` from FILE (merged as the bridge
does); ``--param`` adds or overrides single ones.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snn_drone.core.deploy.robot_config import load_crazyflies  # noqa: E402
from snn_drone.core.deploy.udp_probe import wait_for_udp_crazyflie  # noqa: E402


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fly(uri: str, params: dict, yaw_step_rad: float, x_step_m: float) -> list[tuple[float, dict]]:
    import cflib.crtp
    from cflib.crazyflie import Crazyflie
    from cflib.crazyflie.log import LogConfig
    cflib.crtp.init_drivers()
    wait_for_udp_crazyflie(uri, 120.0)
    cf = Crazyflie(rw_cache=tempfile.mkdtemp(prefix="cflib_"))
    connected = threading.Event()
    cf.fully_connected.add_callback(lambda u: connected.set())
    cf.open_link(uri)
    if not connected.wait(90):
        raise SystemExit(f"cannot connect to {uri}")
    try:
        cf.param.set_value("commander.enHighLevel", "1")
        for name, value in params.items():
            cf.param.set_value(name, str(value))
        time.sleep(1.0)  # the writes queue behind the parameter fetch
        rows: list[tuple[float, dict]] = []
        lc = LogConfig(name="step", period_in_ms=10)
        for var in ("stateEstimate.z", "gyro.z", "gyro.y"):
            lc.add_variable(var, "float")
        cf.log.add_config(lc)
        lc.data_received_cb.add_callback(lambda ts, data, conf: rows.append((time.monotonic(), data)))
        lc.start()
        hl = cf.high_level_commander
        hl.takeoff(1.0, 2.0)
        time.sleep(4.0)
        t0 = time.monotonic()
        rows.append((t0, {"mark": 0.0}))
        hl.go_to(0.0, 0.0, 1.0, yaw_step_rad, 1.0)  # t = 0: the yaw step
        time.sleep(4.0)
        hl.go_to(0.0, 0.0, 1.0, 0.0, 0.5)           # t = 4: yaw back
        time.sleep(3.0)
        hl.go_to(x_step_m, 0.0, 1.0, 0.0, 0.6)      # t = 7: the lateral step
        time.sleep(3.0)
        hl.land(0.0, 2.0)
        time.sleep(2.5)
        return [(t - t0, d) for t, d in rows if "mark" not in d]
    finally:
        cf.close_link()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cf2", default=os.environ.get("CRAZYSIM_CF2", ""), help="SITL cf2 binary (default $CRAZYSIM_CF2)")
    ap.add_argument("--preset", default="cf21_paper", help="the peer's preset (default cf21_paper)")
    ap.add_argument("--robots", default="", help="take firmware_params from this robots file's first robot")
    ap.add_argument("--param", action="append", default=[], help="GROUP.NAME=VALUE, repeatable")
    ap.add_argument("--physics-every", default="10", help="the peer's --physics-every (default 10)")
    ap.add_argument("--yaw-step-rad", type=float, default=0.5)
    ap.add_argument("--x-step-m", type=float, default=0.4)
    args = ap.parse_args()
    if not (args.cf2 and Path(args.cf2).is_file()):
        raise SystemExit("--cf2 (or CRAZYSIM_CF2) must name a SITL cf2 binary")
    params = dict(load_crazyflies(args.robots)[0].firmware_params) if args.robots else {}
    for p in args.param:
        name, sep, value = p.partition("=")
        if not sep or "." not in name:
            raise SystemExit(f"--param {p!r}: expected GROUP.NAME=VALUE")
        params[name] = float(value)
    fw_port, cf_port = _free_udp_port(), _free_udp_port()
    tmp = Path(tempfile.mkdtemp(prefix="sitl_step_"))
    peer_log = tmp / "peer.log"
    with open(peer_log, "w") as log:
        peer = subprocess.Popen([sys.executable, "-m", "snn_drone.cli", "sitl-peer", "--cf2", args.cf2,
                                 "--firmware-port", str(fw_port), "--cflib-port", str(cf_port),
                                 "--preset", args.preset, "--physics-every", args.physics_every,
                                 "--cf2-log", str(tmp / "cf2.log"), "--stats", str(tmp / "stats.json")],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 240
        while not re.search(r"firmware ready", peer_log.read_text(errors="replace")):
            if peer.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the peer did not get the firmware ready:\n" + peer_log.read_text()[-2000:])
            time.sleep(0.5)
        rows = _fly(f"udp://127.0.0.1:{cf_port}", params, args.yaw_step_rad, args.x_step_m)
    finally:
        peer.terminate()
        peer.wait(timeout=30)
    t = np.array([r[0] for r in rows])
    gz, gy, z = (np.array([r[1][k] for r in rows]) for k in ("gyro.z", "gyro.y", "stateEstimate.z"))
    print(f"preset {args.preset}, firmware params {params or 'stock'}; yaw step {args.yaw_step_rad} rad at t=0, "
          f"back at t=4 s, x step {args.x_step_m} m at t=7 s")
    print("  t [s]    max|yaw rate| [deg/s]   max|pitch rate| [deg/s]   z [m]")
    for a in range(-1, 10):
        m = (t >= a) & (t < a + 1)
        if m.any():
            print(f"  {a:2d}..{a + 1:<2d}   {abs(gz[m]).max():8.1f}              {abs(gy[m]).max():8.1f}"
                  f"              {z[m].min():.2f}-{z[m].max():.2f}")
    late = (t >= 3) & (t < 4)
    after = (t >= 0) & (t < 10)
    fell = bool(z[after].min() < 0.5)
    print(f"preset={args.preset} yaw_rate_max_3_4s={abs(gz[late]).max():.1f} yaw_rate_max={abs(gz[after]).max():.1f} "
          f"pitch_rate_max_9_10s={abs(gy[(t >= 9) & (t < 10)]).max():.1f} fell={fell}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
