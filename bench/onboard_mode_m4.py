"""Instructions of the firmware app's onboard control step (firmware/src/snn_onboard.c so_step: the
estimate conversion, safety checks, observation, guide during the warm-up, actor, motor mapping)
on the Crazyflie's Cortex-M4F, built at crazyflie-firmware's own flags (-Os ..., see
test/onboard_mode_support.py FIRMWARE_FLAGS) and run on qemu-system-arm -M mps2-an386 -icount
shift=0 over flights that the ground-station deploy path flew in BatchedHoverEnv (the same flights
test/test_onboard_mode.py checks for equality). SysTick reads each call's instructions to within
one tick (40 instructions). "Share" is instructions / (168 MHz * 10 ms), a lower bound of the load
(flash wait states and FPU stalls add cycles). Also the 1 kHz so_hold between steps, the sizes of
snn_onboard.o at those flags, and sizeof(so_t) / so_config_t (the app's RAM for the mode).

    PYTHONPATH=. .venv/bin/python bench/onboard_mode_m4.py [--drones 4] [--steps 300]

The last line is `name=value ...`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

import onboard_mode_support as om  # noqa: E402
import onboard_support as onboard  # noqa: E402
from snn_drone.core.learning.checkpoint import load_policy  # noqa: E402

STEP_BUDGET = onboard.CPU_HZ * onboard.CONTROL_DT_S


def _sizeof(export_dir: Path) -> dict[str, int]:
    src = export_dir / "sizes.c"
    src.write_text('#include <stdio.h>\n#include "snn_onboard.h"\n'
                   'int main(void) { printf("%u %u\\n", (unsigned)sizeof(so_t), (unsigned)sizeof(so_config_t)); return 0; }\n')
    exe = export_dir / "sizes"
    subprocess.run(["gcc", "-std=c99", "-I", str(export_dir), "-I", str(om.FIRMWARE_SRC), str(src), "-o", str(exe)],
                   check=True)
    so, cfg = (int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split())
    return {"so_t": so, "so_config_t": cfg}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actor", default=str(ROOT / "checkpoints" / "snn_actor.pt"))
    ap.add_argument("--guide", default=str(ROOT / "checkpoints" / "guide.pt"))
    ap.add_argument("--drones", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    why = onboard.arm_tools_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    actor, guide = load_policy(args.actor).eval(), load_policy(args.guide).eval()
    flight = om.record_deploy_flight(actor, guide, args.drones, args.steps, args.seed)
    cfg = om.ModeConfig(fill=tuple(flight.fill), max_tilt_deg=180.0, geofence_min=(-50.0,) * 3,
                        geofence_max=(50.0,) * 3)
    with tempfile.TemporaryDirectory() as tmp:
        d = om.export_mode(actor, guide, Path(tmp))
        _, _, _, host = om.run_host(om.build_host(d), flight.fw, flight.flags, flight.time_us, cfg)
        elf = om.build_m4(d)
        ipt, rec = om.run_m4(elf, flight.fw, flight.flags, flight.time_us, cfg)
        # 1 kHz: holds between the steps of drone 0's first 300 ms
        ms = 300
        idx = np.arange(ms) // 10
        fw = {k: v[idx, :1] for k, v in flight.fw.items()}
        flags = np.where(np.arange(ms) % 10 == 0, om.CMD_STEP | om.CMD_HEARTBEAT, 0).astype(np.uint8)[:, None]
        flags[0] |= om.CMD_START
        ipt_h, hold = om.run_m4(elf, fw, flags, (np.arange(ms, dtype=np.uint32) * 1000)[:, None], cfg)
        obj = d / "snn_onboard.o"
        subprocess.run(["arm-none-eabi-gcc", *om.FIRMWARE_FLAGS, "-c", "-I", str(d), "-I", str(om.FIRMWARE_SRC),
                        str(om.FIRMWARE_SRC / "snn_onboard.c"), "-o", str(obj)], check=True)
        size = onboard.section_sizes(obj)
        sizes = _sizeof(d)
    ins = rec["ticks"].astype(np.float64) * ipt
    warm = flight.episode_step < 50
    holds = hold["ticks"][np.arange(ms) % 10 != 0].astype(np.float64) * ipt_h
    same = all(np.array_equal(rec[k], host[k]) for k in ("obs", "spikes", "phase", "out", "step"))
    print(f"flight: {args.drones} drones x {args.steps} steps of the deploy path ({Path(args.actor).name}, "
          f"{Path(args.guide).name}) in BatchedHoverEnv (seed {args.seed}); {int((flight.episode_step == 0).sum())} starts")
    print(f"arm-none-eabi-gcc {' '.join(om.FIRMWARE_FLAGS)}; instructions per SysTick tick {ipt:.3f}")
    print(f"{'so_step':<30}{'mean':>10}{'worst':>10}{'best':>10}  instructions")
    for name, v in (("warm-up (guide + actor)", ins[warm]), ("after the hand-over (actor)", ins[~warm]),
                    ("so_hold (1 kHz, between)", holds)):
        print(f"{name:<30}{v.mean():>10.0f}{v.max():>10.0f}{v.min():>10.0f}")
    print(f"share of a 168 MHz 10 ms step: worst {ins.max() / STEP_BUDGET:.2%}, mean warm-up "
          f"{ins[warm].mean() / STEP_BUDGET:.2%}, mean after {ins[~warm].mean() / STEP_BUDGET:.2%}; "
          f"worst as time at 168 MHz {ins.max() / onboard.CPU_HZ * 1e6:.0f} us (>= that)")
    print(f"snn_onboard.o: text {size['text']} data {size['data']} bss {size['bss']}; sizeof(so_t) {sizes['so_t']} B, "
          f"sizeof(so_config_t) {sizes['so_config_t']} B (host gcc; same layout on the M4)")
    print(f"M4 vs host build: obs, spikes, phases equal {same}, max |action diff| "
          f"{float(np.abs(rec['action'] - host['action']).max()):.3g}")
    print(f"step_mean_warmup={ins[warm].mean():.0f} step_mean_after={ins[~warm].mean():.0f} step_worst={ins.max():.0f} "
          f"step_share_worst={ins.max() / STEP_BUDGET:.4f} hold_worst={holds.max():.0f} "
          f"onboard_text_bytes={size['text']} so_t_bytes={sizes['so_t']} equal_host={int(same)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
