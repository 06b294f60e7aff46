"""`snn-drone simulate`: drive the Crazyflie model from outside Python through .npz files.

IN.npz holds ``state0`` [B, 17] (layout.py state) and ``actions`` [T, B, 4] in [-1, 1];
OUT.npz gets ``states`` [T + 1, B, 17] (float64; states[0] = state0), ``preset`` (name),
``dt_s``, and ``backend``.
"""
from __future__ import annotations

import argparse

import numpy as np

from ..core.common.layout import ACTION_DIM, STATE_DIM, STATE_FIELDS
from ..core.sim.params import DEFAULT_PRESET, load_preset
from ..core.common.validation import check_array


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run recorded motor commands through the Crazyflie model (npz in, npz out)",
        description="Simulate B Crazyflies for T steps of dt from the preset. IN.npz holds "
                    "state0 [B, 17] (position3 world m, quaternion4 wxyz, velocity3 world m/s, "
                    "angular_velocity3 body rad/s, rotor_speed4) and actions [T, B, 4] in "
                    "[-1, 1] (clipped). OUT.npz gets states [T+1, B, 17] as float64 (states[0] "
                    "= state0), preset, dt_s and backend.")
    parser.add_argument("--preset", default=DEFAULT_PRESET,
                        help=f"parameter preset name or YAML path (default {DEFAULT_PRESET})")
    parser.add_argument("--input", required=True, metavar="IN.npz", help="state0 and actions")
    parser.add_argument("--output", required=True, metavar="OUT.npz", help="where states go")
    parser.add_argument("--backend", choices=("batched", "pybullet"), default="batched",
                        help="batched: torch RK4 model (float64); pybullet: the pybullet world")
    parser.add_argument("--device", default="cpu",
                        help="torch device for the batched backend (cpu, cuda, ...)")
    parser.add_argument("--substeps", type=int, default=1,
                        help="pybullet steps per control step (pybullet backend only)")
    parser.add_argument("--no-ground", action="store_true",
                        help="pybullet backend without the ground plane (the batched model has none)")
    parser.set_defaults(func=run)


def load_inputs(path: str) -> tuple[np.ndarray, np.ndarray]:
    """state0 [B, 17] and actions [T, B, 4] from an npz file, checked."""
    from ..core.sim.dynamics import ACTION_FIELDS  # imports torch: not at `snn-drone --help` time

    with np.load(path) as data:
        for key in ("state0", "actions"):
            if key not in data:
                raise KeyError(f"{path} has no array '{key}' (has: {sorted(data.files)}); "
                               f"expected state0 [B, {STATE_DIM}] and actions [T, B, {ACTION_DIM}]")
        state0 = np.asarray(data["state0"], dtype=np.float64)
        actions = np.asarray(data["actions"], dtype=np.float64)
    check_array("state0", state0, (None, STATE_DIM), STATE_FIELDS)
    check_array("actions", actions, (None, state0.shape[0], ACTION_DIM), ACTION_FIELDS)
    return state0, actions


def simulate(preset: str, state0: np.ndarray, actions: np.ndarray, backend: str = "batched",
             device: str = "cpu", substeps: int = 1, ground: bool = True) -> np.ndarray:
    """States [T + 1, B, 17] (float64) from state0 [B, 17] under actions [T, B, 4]."""
    params = load_preset(preset)
    states = np.empty((actions.shape[0] + 1,) + state0.shape)
    states[0] = state0
    if backend == "batched":
        import torch

        from ..core.sim.dynamics import QuadrotorDynamics

        dyn = QuadrotorDynamics(params, device=device, dtype=torch.float64)
        s = torch.as_tensor(state0, dtype=torch.float64, device=dyn.device)
        acts = torch.as_tensor(actions, dtype=torch.float64, device=dyn.device)
        out = torch.empty((actions.shape[0],) + state0.shape, dtype=torch.float64, device=dyn.device)
        for t in range(actions.shape[0]):
            s = dyn.step(s, acts[t], validate=False)  # inputs checked once above
            out[t] = s
        states[1:] = out.cpu().numpy()
    elif backend == "pybullet":
        from ..core.sim.pybullet_world import PybulletWorld

        with PybulletWorld(params, state0.shape[0], ground=ground, substeps=substeps) as world:
            world.reset(state0)
            for t in range(actions.shape[0]):
                states[t + 1] = world.step(actions[t])
    else:
        raise ValueError(f"unknown backend '{backend}', expected 'batched' or 'pybullet'")
    return states


def run(args: argparse.Namespace) -> int:
    params = load_preset(args.preset)
    state0, actions = load_inputs(args.input)
    states = simulate(args.preset, state0, actions, backend=args.backend, device=args.device,
                      substeps=args.substeps, ground=not args.no_ground)
    np.savez(args.output, states=states, preset=np.array(params.name), dt_s=np.array(params.dt_s),
             backend=np.array(args.backend))
    print(f"simulate: {actions.shape[1]} drones x {actions.shape[0]} steps of {params.dt_s} s "
          f"({args.backend}, preset {params.name}) -> {args.output} states {list(states.shape)}")
    return 0
