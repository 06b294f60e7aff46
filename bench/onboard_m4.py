"""Instructions per onboard control step on the Crazyflie's Cortex-M4F, with flash and RAM sizes.

The onboard step (test/c/onboard_harness.c): observation from the state estimate
(snn_observation.c), the guide MLP with its 32-step action history (snn_guide.c: step + push) and
the spiking actor (snn_actor.c), exported from checkpoints/ by `snn-drone export --format c`,
cross-compiled with arm-none-eabi-gcc (-mcpu=cortex-m4 -mthumb -mfloat-abi=hard
-mfpu=fpv4-sp-d16 -O2 + --flags) and run on qemu-system-arm -M mps2-an386 -icount shift=0 with
semihosting, over a flight of the actor simulated by BatchedHoverEnv. Under -icount shift=0 each
instruction takes 1 ns of virtual time, so SysTick (25 MHz processor clock) reads the instructions
of each part to within one tick (40 instructions; the ratio is calibrated on a known loop).

During the 50-step warm-up the drone runs observation + guide + actor (the actor warms its hidden
state on the same states, as in training and evaluation); after the hand-over observation + actor.
"Share" is instructions / (168 MHz * 10 ms); cycles are at least the instructions (FPU loads and
stores and flash wait states add more on the STM32F405), so this is a lower bound of the load.
Sizes: arm-none-eabi-size of each part compiled alone (flash = text + data; the state structs are
the caller's RAM: snn_state_t and snn_guide_state_t per drone). Also checks the M4 run against
the host build (spikes and membranes bit-identical, largest action difference).

    PYTHONPATH=. .venv/bin/python bench/onboard_m4.py [--drones 4] [--steps 300] [--flags -funroll-loops] [--compare] [--fixed-point]

The last line is `name=value ...`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

import onboard_support as onboard  # noqa: E402
from snn_drone.core.deploy.export_c import footprint_bytes  # noqa: E402
from snn_drone.core.learning.checkpoint import load_policy  # noqa: E402

STEP_BUDGET = onboard.CPU_HZ * onboard.CONTROL_DT_S  # 1.68 M cycles


@torch.no_grad()
def fixed_point_check(actor, flight, bits_list=(16, 12, 8)) -> None:
    """What a fixed-point first layer (int weights per output row, int observations per input,
    exact integer sums: the SMLAD kind of kernel) does to the spikes: layer 0 quantized, the rest
    float32 in the C order, free-running on the flight's observations, against the float export."""
    from snn_drone.core.deploy.export_c import sequential_affine, sequential_sequence
    from snn_drone.core.snn.lif import LIFState, lif_step
    reset = torch.from_numpy(flight.reset)
    x = flight.obs
    _, spk, act = sequential_sequence(actor, x, reset)
    n0 = actor.cfg.hidden[0]

    def lif_run(current, lif):
        m, out = torch.zeros_like(current[0]), []
        for t in range(current.shape[0]):
            m = torch.where(reset[t][:, None], torch.zeros_like(m), m)
            s, st = lif_step(current[t], LIFState(m), lif.beta, lif.threshold, actor.slope)
            m = st.membrane
            out.append(s)
        return torch.stack(out)
    w, b = actor.fc[0].weight, actor.fc[0].bias
    for bits in bits_list:
        q = 2 ** (bits - 1) - 1
        sw = w.abs().amax(1, keepdim=True) / q
        sx = x.abs().amax((0, 1)) / q  # scales from this very flight: optimistic
        acc = torch.round(x / sx).double() @ (torch.round(w / sw).double() * sx.double()).T
        s0 = lif_run((acc * sw.double().T + b.double()).float(), actor.lif[0])
        s1 = lif_run(sequential_affine(actor.fc[1].weight, actor.fc[1].bias, s0), actor.lif[1])
        a = torch.tanh(sequential_affine(actor.readout.weight, actor.readout.bias, s1))
        print(f"fixed-point layer 0, int{bits}: layer-0 spikes differ {(s0 != spk[..., :n0]).float().mean():.4%}, "
              f"layer-1 {(s1 != spk[..., n0:]).float().mean():.4%}, |action diff| max {(a - act).abs().max():.3g} "
              f"mean {(a - act).abs().mean():.3g} (tolerance: spikes equal, actions 1e-6)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actor", default=str(ROOT / "checkpoints" / "snn_actor.pt"))
    ap.add_argument("--guide", default=str(ROOT / "checkpoints" / "guide.pt"))
    ap.add_argument("--drones", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--flags", default="", help="extra arm-none-eabi-gcc flags, e.g. -funroll-loops")
    ap.add_argument("--fixed-point", action="store_true",
                    help="also what an int16/12/8 first layer does to the spikes (torch, no M4 run)")
    ap.add_argument("--compare", action="store_true",
                    help="also the plain loops (-DSNN_BLOCKED=0) and -funroll-loops builds, in this run")
    args = ap.parse_args(argv)
    why = onboard.arm_tools_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    actor, guide = load_policy(args.actor).eval(), load_policy(args.guide).eval()
    neurons = sum(actor.cfg.hidden)
    flight = onboard.record_flight(actor, args.drones, args.steps, args.seed)
    if args.fixed_point:
        fixed_point_check(actor, flight)
    variants = [("blocked kernels (default)", tuple(args.flags.split()))]
    if args.compare:
        variants += [("plain loops (SNN_BLOCKED=0)", ("-DSNN_BLOCKED=0", *args.flags.split())),
                     ("plain loops -funroll-loops", ("-DSNN_BLOCKED=0", "-funroll-loops")),
                     ("blocked -funroll-loops", ("-funroll-loops",))]
    with tempfile.TemporaryDirectory() as tmp:
        d = onboard.export_onboard(actor, guide, Path(tmp))
        host = onboard.run_host(d, flight, neurons)
        results = []
        for k, (label, flags) in enumerate(variants):
            elf = onboard.build_m4(d, flags, name=f"v{k}.elf")
            ipt, rec = onboard.run_m4(elf, flight, neurons)
            results.append((label, flags, ipt, rec, onboard.compile_objects_m4(d, flags), onboard.section_sizes(elf)))
    print(f"flight: {args.drones} drones x {args.steps} steps of {Path(args.actor).name} in BatchedHoverEnv "
          f"(seed {args.seed}); arm-none-eabi-gcc {' '.join(onboard.M4_FLAGS)}")
    base = None
    for label, flags, ipt, rec, parts, whole in results:
        ins = rec["ticks"].astype(np.float64) * ipt  # [T, B, 3] observation, guide, actor
        warm = ins.sum(-1)
        after = ins[..., 0] + ins[..., 2]
        base = base if base is not None else warm.mean()
        l0 = rec["spikes"][..., :actor.cfg.hidden[0]].sum(-1)
        print(f"\n== {label} (flags: {' '.join(flags) or 'none'}); instructions per SysTick tick {ipt:.3f}")
        print(f"{'part':<28}{'mean':>10}{'worst':>10}{'best':>10}  instructions")
        for name, v in (("observation", ins[..., 0]), ("guide (step + push)", ins[..., 1]), ("actor", ins[..., 2]),
                        ("warm-up step (all three)", warm), ("step after hand-over", after)):
            print(f"{name:<28}{v.mean():>10.0f}{v.max():>10.0f}{v.min():>10.0f}")
        l1 = rec["spikes"][..., actor.cfg.hidden[0]:].sum(-1)
        fit = np.linalg.lstsq(np.stack([np.ones(l0.size), l0.ravel(), l1.ravel()], 1).astype(np.float64),
                              ins[..., 2].ravel(), rcond=None)[0]
        print(f"actor: layer-0 spikes per step {l0.mean():.1f} (max {l0.max()}, of {actor.cfg.hidden[0]}); "
              f"least squares: {fit[0]:.0f} + {fit[1]:.1f} per layer-0 spike + {fit[2]:.1f} per layer-1 spike; "
              f"warm-up step mean vs the first variant: {warm.mean() / base:.3f}")
        print(f"share of a 168 MHz 10 ms step (instructions / 1.68 M): worst {warm.max() / STEP_BUDGET:.2%}, "
              f"mean warm-up {warm.mean() / STEP_BUDGET:.2%}, mean after hand-over {after.mean() / STEP_BUDGET:.2%}")
        for name, sz in parts.items():
            print(f"size {name}.o: text {sz['text']} data {sz['data']} bss {sz['bss']} (flash {sz['text'] + sz['data']} B)")
        state_ram = footprint_bytes(actor)["state_ram"] + footprint_bytes(guide)["state_ram"]
        print(f"RAM per drone: snn_state_t + snn_guide_state_t = {state_ram} B; whole test ELF: text {whole['text']} "
              f"data {whole['data']} bss {whole['bss']} (newlib stdio included)")
        same_spikes = bool(np.array_equal(rec["spikes"], host["spikes"]))
        same_mem = bool(np.array_equal(rec["membrane"], host["membrane"]))
        dact = float(np.abs(rec["action"] - host["action"]).max())
        dguide = float(np.abs(rec["guide"] - host["guide"]).max())
        print(f"M4 vs host build: spikes equal {same_spikes}, membranes equal {same_mem}, "
              f"max |action diff| {dact:.3g}, max |guide diff| {dguide:.3g}")
        flash = sum(sz["text"] + sz["data"] for sz in parts.values())
    label, flags, ipt, rec, parts, whole = results[0]
    ins = rec["ticks"].astype(np.float64) * ipt
    warm = ins.sum(-1)
    flash = sum(sz["text"] + sz["data"] for sz in parts.values())
    print(f"obs_mean={ins[..., 0].mean():.0f} guide_mean={ins[..., 1].mean():.0f} actor_mean={ins[..., 2].mean():.0f} "
          f"actor_worst={ins[..., 2].max():.0f} step_worst={warm.max():.0f} step_share_worst={warm.max() / STEP_BUDGET:.4f} "
          f"after_handover_mean={(ins[..., 0] + ins[..., 2]).mean():.0f} flash_bytes={flash} "
          f"state_ram_bytes={footprint_bytes(actor)['state_ram'] + footprint_bytes(guide)['state_ram']} "
          f"spikes_equal_host={int(np.array_equal(rec['spikes'], host['spikes']))} "
          f"max_action_diff={float(np.abs(rec['action'] - host['action']).max()):.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
