"""The onboard step (observation + guide + spiking actor, exported by `snn-drone export --format c`)
on recorded simulated flights, built for the host with gcc or for a Cortex-M4F with Debian's
gcc-arm-none-eabi and run on QEMU's mps2-an386 with semihosting: shared by test/test_onboard_m4.py
and bench/onboard_m4.py (which puts test/ on sys.path)."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snn_drone.core.common import layout
from snn_drone.core.deploy.export_c import export_c
from snn_drone.core.env.batched_env import BatchedHoverEnv

C_DIR = Path(__file__).parent / "c"
HARNESS = C_DIR / "onboard_harness.c"
M4_DIR = C_DIR / "m4"
M4_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2")
APT_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
CPU_HZ = 168e6      # STM32F405 of the Crazyflie 2.x
CONTROL_DT_S = 0.01  # 100 Hz


@dataclass
class Flight:
    """A recorded closed-loop flight of the actor in BatchedHoverEnv, [T, B, ...] per field."""
    state: np.ndarray        # [T, B, 13] position, quaternion, velocity, body rates (float32)
    target: np.ndarray       # [3]
    fill: np.ndarray         # [T, B, 4] the env's action history entries at a reset (oldest)
    applied: np.ndarray      # [T, B, 4] the (clipped) action flown at step t
    reset: np.ndarray        # [T, B] bool, the drone's episode (re)started before step t
    obs: torch.Tensor        # [T, B, 18] env.obs()
    priv_obs: torch.Tensor   # [T, B, 146] env.privileged_obs()


@torch.no_grad()
def record_flight(actor, drones: int, steps: int, seed: int) -> Flight:
    env = BatchedHoverEnv(drones, seed=seed)
    obs, state = env.reset(), actor.init_state(drones)
    reset = torch.ones(drones, dtype=torch.bool)
    rec = {k: [] for k in ("state", "fill", "applied", "reset", "obs", "priv")}
    for _ in range(steps):
        rec["state"].append(env.state[:, :13].clone())
        rec["fill"].append(env.action_history[:, 0].clone())
        rec["reset"].append(reset.clone())
        rec["obs"].append(obs.clone())
        rec["priv"].append(env.privileged_obs().clone())
        state = actor.reset_state(state, reset)
        action, state = actor.step(obs, state)
        rec["applied"].append(action.clamp(-1.0, 1.0))
        obs, _, _, _, info = env.step(action)
        reset = info["done"]
    st = {k: torch.stack(v) for k, v in rec.items()}
    return Flight(st["state"].numpy().astype(np.float32), env.target.cpu().numpy().astype(np.float32),
                  st["fill"].numpy().astype(np.float32), st["applied"].numpy().astype(np.float32),
                  st["reset"].numpy(), st["obs"], st["priv"])


def export_onboard(actor, guide, out_dir: Path) -> Path:
    export_c(actor, out_dir, source="the actor under test")
    export_c(guide, out_dir, source="the guide under test")
    return out_dir


def write_input(path: Path, flight: Flight) -> None:
    steps, drones = flight.reset.shape
    rec = np.zeros((steps, drones), np.dtype([("state", np.float32, 13), ("target", np.float32, 3),
                                              ("fill", np.float32, 4), ("applied", np.float32, 4),
                                              ("reset", np.uint8), ("pad", np.uint8, 3)]))
    rec["state"], rec["target"], rec["fill"] = flight.state, flight.target, flight.fill
    rec["applied"], rec["reset"] = flight.applied, flight.reset
    with open(path, "wb") as f:
        np.array([steps, drones], np.int32).tofile(f)
        rec.tofile(f)


def read_output(path: Path, steps: int, drones: int, neurons: int):
    """(calibration ticks, calibration instructions, records [T, B])."""
    rec = np.dtype([("obs", np.float32, layout.OBS_DIM), ("membrane", np.float32, neurons),
                    ("spikes", np.uint8, neurons), ("action", np.float32, 4), ("guide", np.float32, 4),
                    ("ticks", np.uint32, 3)])
    raw = Path(path).read_bytes()
    cal = np.frombuffer(raw[:8], np.uint32)
    body = np.frombuffer(raw[8:], rec)
    if body.size != steps * drones:
        raise RuntimeError(f"{path}: {body.size} records, expected {steps * drones}")
    return int(cal[0]), int(cal[1]), body.reshape(steps, drones)


def run_host(export_dir: Path, flight: Flight, neurons: int, flags=("-std=c99", "-O2"), name="onboard_host"):
    """Build the harness for the host (once per folder and name) and run it on ``flight``: records [T, B]."""
    exe = export_dir / name
    if not exe.exists():
        _build_host(export_dir, exe, flags)
    inp, out = export_dir / "host_in.bin", export_dir / "host_out.bin"
    write_input(inp, flight)
    subprocess.run([str(exe), str(inp), str(out)], check=True)
    return read_output(out, *flight.reset.shape, neurons)[2]


def _build_host(export_dir: Path, exe: Path, flags) -> None:
    srcs = [export_dir / n for n in ("snn_actor.c", "snn_guide.c", "snn_observation.c")]
    subprocess.run(["gcc", *flags, "-Wall", "-Wextra", "-Werror", "-I", str(export_dir), *map(str, srcs),
                    str(HARNESS), "-lm", "-o", str(exe)], check=True, capture_output=True, text=True)


# ---- Cortex-M4F on QEMU ----------------------------------------------------------------------------
def arm_tools_missing() -> str | None:
    """None when the cross tools and QEMU are there (installing them with apt-get as root if
    needed), else why not."""
    if all(shutil.which(t) for t in TOOLS):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"needs {', '.join(TOOLS)} (apt-get install {' '.join(APT_PACKAGES)}; not root or no apt-get here)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0 or not all(shutil.which(t) for t in TOOLS):
        return f"apt-get install {' '.join(APT_PACKAGES)} failed: {r.stderr.strip()[-300:]}"
    return None


def build_m4(export_dir: Path, extra_flags=(), name: str = "onboard_m4.elf") -> Path:
    elf = export_dir / name
    srcs = [export_dir / n for n in ("snn_actor.c", "snn_guide.c", "snn_observation.c")]
    cmd = ["arm-none-eabi-gcc", *M4_FLAGS, *extra_flags, "-std=c99", "-Wall", "-Wextra", "-Werror",
           "-DONBOARD_M4", "-ffunction-sections", "-fdata-sections", "-I", str(export_dir),
           *map(str, srcs), str(HARNESS), str(M4_DIR / "startup.c"),
           "-T", str(M4_DIR / "mps2_an386.ld"), "-nostartfiles", "--specs=rdimon.specs",
           "-Wl,--gc-sections", "-lm", "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return elf


def run_m4(elf: Path, flight: Flight, neurons: int, timeout_s: float = 300.0):
    """Run the harness on qemu-system-arm -M mps2-an386 with -icount shift=0 (1 ns of virtual
    time per instruction): (instructions per SysTick tick, records [T, B])."""
    write_input(elf.parent / "onboard_in.bin", flight)
    ticks, instructions, rec = read_output(run_qemu(elf, timeout_s), *flight.reset.shape, neurons)
    return instructions / ticks, rec


def run_qemu(elf: Path, timeout_s: float = 300.0) -> Path:
    """Run a semihosting harness on qemu-system-arm -M mps2-an386 -icount shift=0 in its folder,
    which holds its input onboard_in.bin; returns the onboard_out.bin it wrote."""
    work = elf.parent
    out = work / "onboard_out.bin"
    out.unlink(missing_ok=True)
    r = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                        "-serial", "none", "-semihosting-config", "enable=on,target=native",
                        "-icount", "shift=0", "-kernel", str(elf)],
                       cwd=work, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise RuntimeError(f"qemu exited {r.returncode}: {r.stdout[-500:]} {r.stderr[-500:]}")
    return out


def section_sizes(elf: Path, objects: dict[str, Path] | None = None) -> dict[str, int]:
    """arm-none-eabi-size (Berkeley) of an ELF or object: text, data, bss."""
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def compile_objects_m4(export_dir: Path, extra_flags=()) -> dict[str, dict[str, int]]:
    """Sizes of each exported part alone, compiled for the M4 (flash = text + data, RAM of its
    own = data + bss; the state structs are the caller's)."""
    sizes = {}
    for name in ("snn_observation", "snn_guide", "snn_actor"):
        obj = export_dir / f"{name}.o"
        subprocess.run(["arm-none-eabi-gcc", *M4_FLAGS, *extra_flags, "-std=c99", "-c", "-I", str(export_dir),
                        str(export_dir / f"{name}.c"), "-o", str(obj)], check=True, capture_output=True, text=True)
        sizes[name] = section_sizes(obj)
    return sizes
