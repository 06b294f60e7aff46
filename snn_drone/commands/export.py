"""`snn-drone export`: a spiking-actor checkpoint as onboard C (float32 step function + weights
header) or as a Neuromorphic Intermediate Representation (NIR) file; a guide (MLP) checkpoint as
onboard C. Every C export also writes the onboard observation (snn_observation.c)."""
from __future__ import annotations

import argparse
from pathlib import Path

from snn_drone.core.learning.checkpoint import load_policy
from snn_drone.core.sim.params import load_preset


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export an actor checkpoint as onboard C code or as a NIR graph",
        description="Export a spiking-actor checkpoint for onboard inference. --format c writes "
                    "snn_actor.h (API: snn_reset, snn_step), snn_actor_weights.h (float32 parameters) "
                    "and snn_actor.c (C99, no malloc, only tanhf from libm), bit-exact with the torch "
                    "actor summed in the same order (snn_drone.core.deploy.export_c.sequential_step); "
                    "for a guide (MLP) checkpoint snn_guide.h/_weights.h/.c with its own action history "
                    "(snn_guide_reset, snn_guide_step, snn_guide_push); both add snn_observation.h/.c "
                    "(task.observation from a state estimate) and snn_onboard_config.h (the onboard mode's defaults). "
                    "--format nir writes snn_actor.nir for neuromorphic toolchains: Affine -> LI -> "
                    "Threshold with the subtract reset as a Scale(-threshold) feedback edge (see "
                    "snn_drone/core/deploy/export_nir.py).",
        epilog="Build the C files with any C99 compiler, without -ffast-math, e.g. "
               "`gcc -std=c99 -O2 -c snn_actor.c`. firmware/README.md shows how they fit a Crazyflie app.")
    p.add_argument("checkpoint", help="spiking-actor checkpoint (.pt, written by save_actor / training), or "
                                      "for --format c also a guide / MLP checkpoint (save_policy)")
    p.add_argument("--format", choices=("c", "nir"), required=True, help="c: C99 sources; nir: NIR HDF5 file")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: CHECKPOINT's folder / <checkpoint name>_export)")
    p.add_argument("--config", default="", metavar="YAML",
                   help="--format c: training config whose preset, task (target) and horizon.warmup set the "
                        "onboard mode's defaults in snn_onboard_config.h, with config/safety.yaml and the "
                        "default motor mapping (default: config/train.yaml)")
    p.add_argument("--dt", type=float, default=None,
                   help="control period in seconds for the NIR time constants (default: the default "
                        "preset's dt_s, 0.01 s = 100 Hz)")
    p.set_defaults(func=run)


def onboard_defaults(config: str = ""):
    """The onboard mode's defaults from a training config (its preset, task and warm-up), the safety
    config and the default motor mapping: what fly_real's ground-station path flies with."""
    from snn_drone.core.common.config import resolve_path
    from snn_drone.core.deploy.export_c_onboard import OnboardDefaults
    from snn_drone.core.deploy.motor_mapping import MotorMappingConfig
    from snn_drone.core.deploy.safety import load_safety_config
    from snn_drone.core.env import task
    from snn_drone.core.learning.train_config import load_train_config
    cfg = load_train_config(resolve_path(config) if config else None)
    task_cfg = task.load_task_config(resolve_path(cfg.task_config) if cfg.task_config else None)
    return OnboardDefaults(load_preset(cfg.preset), task_cfg, cfg.horizon.warmup, MotorMappingConfig(),
                           load_safety_config())


def run(args: argparse.Namespace) -> int:
    ckpt = Path(args.checkpoint)
    policy = load_policy(ckpt)
    out = Path(args.out) if args.out else ckpt.parent / f"{ckpt.stem}_export"
    if args.format == "c":
        from snn_drone.core.deploy.export_c import export_c, footprint_bytes
        paths = export_c(policy, out, source=ckpt.name, onboard=onboard_defaults(args.config))
        size = footprint_bytes(policy)
        for path in paths:
            print(path)
        print(f"weights_flash_bytes={size['weights_flash']} state_ram_bytes={size['state_ram']}")
    else:
        from snn_drone.core.deploy.export_nir import export_nir
        dt = args.dt if args.dt is not None else load_preset().dt_s
        print(export_nir(policy, out / "snn_actor.nir", dt_s=dt, source=ckpt.name))
    return 0
