"""The onboard mode's control step (firmware/src/snn_onboard.c + the networks from `snn-drone export
--format c`) against the Python deploy path: flights flown by the ground-station path (the bridge's
log conversion, the jump-start mux with the guide's warm-up, action_to_ratio), replayed to the C
code in the firmware's units; host gcc or Cortex-M4F on QEMU mps2-an386. Shared by
test/test_onboard_mode.py and bench/onboard_m4.py."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import onboard_support as onboard
from snn_drone.core.common import layout
from snn_drone.core.deploy.crazyflie_state import PlausibleRanges, state_from_log
from snn_drone.core.deploy.export_c import export_c
from snn_drone.core.deploy.export_c_onboard import ACTION_CODES, MAPPING_CODES, OnboardDefaults
from snn_drone.core.deploy.motor_mapping import MotorMappingConfig, action_to_ratio
from snn_drone.core.deploy.motor_packet import heartbeat_packet
from snn_drone.core.deploy.safety import SafetyConfig
from snn_drone.core.env import task
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.learning.jsrl import jump_start_action
from snn_drone.core.sim.params import load_preset
from snn_drone.nodes.action_history import LiveActionHistory

FIRMWARE_SRC = onboard.C_DIR.parents[1] / "firmware" / "src"
HARNESS = onboard.C_DIR / "onboard_mode_harness.c"
SOURCES = ("snn_actor.c", "snn_guide.c", "snn_observation.c")
# crazyflie-firmware's own flags for app sources (tools/kbuild/Makefile.kbuild, Makefile): -Os -Werror
FIRMWARE_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-fno-math-errno",
                  "-Os", "-std=gnu11", "-Wall", "-Wmissing-braces", "-Wdouble-promotion", "-fno-strict-aliasing",
                  "-ffunction-sections", "-fdata-sections", "-Werror")
CMD_HEARTBEAT, CMD_START, CMD_STOP, CMD_STEP = 1, 2, 4, 8
OUT_STOCK, OUT_MOTORS, OUT_OFF = range(3)
PHASE_OFF, PHASE_GUIDE, PHASE_SNN, PHASE_TRIPPED = range(4)
TRIP_NONE, TRIP_LINK, TRIP_GEOFENCE, TRIP_TILT, TRIP_NONFINITE = range(5)
CFG_VALUES = 24
ANY = PlausibleRanges(1e9, 1e9, 1e9)  # a crashing simulated drone spins past the plausible range


@dataclass
class ModeConfig:
    """so_config_t, in the harness's order (onboard_mode_harness.c get_config)."""
    warmup_steps: int = 50
    target: tuple = (0.0, 0.0, 1.0)
    fill: tuple = (0.0,) * 4
    mapping_mode: int = 0
    max_ratio_mapping: float = 1.0
    min_ratio: float = 0.0
    max_ratio: float = 1.0
    max_tilt_deg: float = 60.0
    geofence_min: tuple = (-1.5, -1.5, -0.1)
    geofence_max: tuple = (1.5, 1.5, 2.0)
    actions: tuple = (1, 2, 2, 2)  # geofence, tilt, nonfinite, link (0 warn, 1 land, 2 stop)
    link_timeout_ms: int = 250

    def values(self) -> np.ndarray:
        v = [self.warmup_steps, *self.target, *self.fill, self.mapping_mode, self.max_ratio_mapping,
             self.min_ratio, self.max_ratio, self.max_tilt_deg, *self.geofence_min, *self.geofence_max,
             *self.actions, self.link_timeout_ms]
        return np.array(v, np.float32)

    @classmethod
    def of_safety(cls, s: SafetyConfig, **kw) -> "ModeConfig":
        return cls(max_tilt_deg=s.max_tilt_deg, geofence_min=s.geofence_min_m, geofence_max=s.geofence_max_m,
                   actions=tuple(ACTION_CODES[a] for a in (s.geofence_action, s.tilt_action, s.nonfinite_action,
                                                           s.link_action)),
                   link_timeout_ms=int(round(s.link_timeout_s * 1000)), **kw)


def defaults(**overrides) -> OnboardDefaults:
    params = load_preset()
    kw = dict(params=params, task_cfg=task.TaskConfig(), warmup_steps=50, mapping=MotorMappingConfig(),
              safety=SafetyConfig())
    kw.update(overrides)
    return OnboardDefaults(**kw)


def export_mode(actor, guide, out_dir: Path, onboard_defaults: OnboardDefaults | None = None) -> Path:
    export_c(actor, out_dir, source="the actor under test", onboard=onboard_defaults or defaults())
    export_c(guide, out_dir, source="the guide under test")
    return out_dir


# ---- the firmware's view of a state ----------------------------------------------------------------
def firmware_units(state13: np.ndarray) -> dict[str, np.ndarray]:
    """[..., 13] package state (float32) -> what state_t / sensorData_t hold (float32): position,
    attitudeQuaternion x y z w, velocity, gyro [deg/s]."""
    s = np.asarray(state13, np.float32)
    q = s[..., layout.QUAT]
    return {"position": s[..., 0:3], "quaternion": np.concatenate([q[..., 1:4], q[..., 0:1]], -1),
            "velocity": s[..., 7:10], "gyro": np.degrees(s[..., 10:13].astype(np.float64)).astype(np.float32)}


def log_values(fw: dict[str, np.ndarray], b: int) -> dict[str, float]:
    """The cflib log values (float variant) the bridge would receive for drone b."""
    p, q, v, g = (fw[k][b] for k in ("position", "quaternion", "velocity", "gyro"))
    out = {f"stateEstimate.{a}": float(p[i]) for i, a in enumerate("xyz")}
    out.update({f"stateEstimate.v{a}": float(v[i]) for i, a in enumerate("xyz")})
    out.update({f"stateEstimate.q{a}": float(q[i]) for i, a in enumerate("xyzw")})
    out.update({f"gyro.{a}": float(g[i]) for i, a in enumerate("xyz")})
    out["pm.vbat"] = 4.0
    return out


@dataclass
class DeployFlight:
    """A flight of the ground-station deploy path, [T, B, ...] per field."""
    fw: dict                 # firmware units per field [T, B, n]
    flags: np.ndarray        # [T, B] uint8 commands for the harness
    time_us: np.ndarray      # [T, B] uint32
    episode_step: np.ndarray  # [T, B]
    obs: np.ndarray          # [T, B, 18] the observation the bridge path computes
    guide: np.ndarray        # [T, B, 4] the guide's action (NaN where it did not run)
    actor: np.ndarray        # [T, B, 4] actor.step
    flown: np.ndarray        # [T, B, 4] jump_start_action, clipped
    ratio: np.ndarray        # [T, B, 4] action_to_ratio
    fill: np.ndarray         # [4] the guide history's fill at a start (LiveActionHistory)
    target: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0], np.float32))


@torch.no_grad()
def record_deploy_flight(actor, guide, drones: int, steps: int, seed: int, warmup: int = 50,
                         mapping: MotorMappingConfig | None = None) -> DeployFlight:
    """B drones flown in BatchedHoverEnv (episodes restart when they end) by the deploy path as the
    ROS graph runs it on the bridge's state: state_from_log on the logged values (rotor field: the
    hover estimate after a stock take-off), task.observation, the guide on LiveActionHistory's
    privileged observation, actor.step, jump_start_action(warm-up), action_to_ratio."""
    params, mapping = load_preset(), mapping or MotorMappingConfig()
    task_cfg = task.TaskConfig()
    env = BatchedHoverEnv(drones, seed=seed)
    env.reset()
    target = env.target.float()
    hist = LiveActionHistory(drones, params, task_cfg)
    hidden = actor.init_state(drones)
    last = torch.zeros(drones, 4)
    hover = np.full(4, params.hover_rotor_speed)
    rec = {k: [] for k in ("fw", "ep", "obs", "guide", "actor", "flown", "ratio")}
    fill = None
    for t in range(steps):
        fw = firmware_units(env.state[:, :13].numpy())
        st = torch.tensor(np.stack([state_from_log(log_values(fw, b), hover, ranges=ANY)[0] for b in range(drones)]),
                          dtype=torch.float32)  # the state topic carries float32
        ep = env.steps.clone()
        new = ep == 0
        hidden = actor.reset_state(hidden, new)
        obs = task.observation(st, target)
        h = hist.update(t, st, ep, last)
        if fill is None:
            fill = h[0, 0].numpy().copy()
        a_guide = guide(task.privileged_observation(obs, h))
        a_actor, hidden = actor.step(obs, hidden)
        a = jump_start_action(ep, warmup, a_guide, a_actor).clamp(-1.0, 1.0)
        rec["fw"].append(fw)
        rec["ep"].append(ep.numpy())
        rec["obs"].append(obs.numpy())
        rec["guide"].append(np.where((ep < warmup).numpy()[:, None], a_guide.numpy(), np.nan))
        rec["actor"].append(a_actor.numpy())
        rec["flown"].append(a.numpy())
        rec["ratio"].append(action_to_ratio(a.numpy(), params, mapping))
        env.step(a)
        last = a
    ep = np.stack(rec["ep"])
    flags = np.full(ep.shape, CMD_STEP | CMD_HEARTBEAT, np.uint8)
    flags[ep == 0] |= CMD_START
    time_us = (np.arange(steps, dtype=np.uint32) * 10_000)[:, None].repeat(drones, 1)
    fw = {k: np.stack([f[k] for f in rec["fw"]]) for k in rec["fw"][0]}
    return DeployFlight(fw, flags, time_us, ep, np.stack(rec["obs"]), np.stack(rec["guide"]),
                        np.stack(rec["actor"]), np.stack(rec["flown"]), np.stack(rec["ratio"]).astype(np.float32),
                        fill, target.numpy())


# ---- harness files ---------------------------------------------------------------------------------
RECORD = np.dtype([("position", np.float32, 3), ("quaternion", np.float32, 4), ("velocity", np.float32, 3),
                   ("gyro", np.float32, 3), ("time_us", np.uint32), ("flags", np.uint8), ("packet_len", np.uint8),
                   ("pad", np.uint8, 2), ("packet", np.uint8, 16)])


def packets_for(flags: np.ndarray, packet: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bytes [T, B, 16], lengths [T, B]) for the records with CMD_HEARTBEAT: the ground's heartbeats
    (motor_packet.heartbeat_packet, sequence = record index) or the given packet."""
    steps, drones = flags.shape
    data = np.zeros((steps, drones, 16), np.uint8)
    lengths = np.zeros((steps, drones), np.uint8)
    for t, b in zip(*np.nonzero(flags & CMD_HEARTBEAT)):
        p = heartbeat_packet(int(t) % 65536) if packet is None else packet
        data[t, b, :len(p)] = np.frombuffer(p, np.uint8)
        lengths[t, b] = len(p)
    return data, lengths


def write_input(path: Path, fw: dict, flags: np.ndarray, time_us: np.ndarray, cfg: ModeConfig | None,
                packet: bytes | None = None) -> None:
    steps, drones = flags.shape
    rec = np.zeros((steps, drones), RECORD)
    for k in ("position", "quaternion", "velocity", "gyro"):
        rec[k] = fw[k]
    rec["time_us"], rec["flags"] = time_us, flags
    rec["packet"], rec["packet_len"] = packets_for(flags, packet)
    with open(path, "wb") as f:
        np.array([steps, drones, 1 if cfg is None else 0], np.int32).tofile(f)
        (ModeConfig() if cfg is None else cfg).values().tofile(f)
        rec.tofile(f)


def output_dtype(neurons: int, layers: int) -> np.dtype:
    return np.dtype([("out", np.uint8), ("phase", np.uint8), ("trip", np.uint8), ("taken", np.uint8),
                     ("step", np.uint32), ("obs", np.float32, layout.OBS_DIM), ("action", np.float32, 4),
                     ("ratio", np.float32, 4), ("spikes", np.uint8, neurons), ("counts", np.uint16, layers),
                     ("ticks", np.uint32)])


def read_output(path: Path, steps: int, drones: int, neurons: int = 384, layers: int = 2):
    """(config in use [24], calibration ticks, calibration instructions, records [T, B])."""
    raw = Path(path).read_bytes()
    head = 4 * CFG_VALUES
    cfg = np.frombuffer(raw[:head], np.float32)
    cal = np.frombuffer(raw[head:head + 8], np.uint32)
    body = np.frombuffer(raw[head + 8:], output_dtype(neurons, layers))
    if body.size != steps * drones:
        raise RuntimeError(f"{path}: {body.size} records, expected {steps * drones}")
    return cfg, int(cal[0]), int(cal[1]), body.reshape(steps, drones)


def build_host(export_dir: Path, name: str = "mode_host", flags=("-std=c99", "-O2")) -> Path:
    exe = export_dir / name
    if not exe.exists():
        srcs = [export_dir / n for n in SOURCES] + [FIRMWARE_SRC / "snn_onboard.c", HARNESS]
        r = subprocess.run(["gcc", *flags, "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion",
                            "-Wdouble-promotion", "-I", str(export_dir), "-I", str(FIRMWARE_SRC),
                            *map(str, srcs), "-lm", "-o", str(exe)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"host build failed:\n{r.stderr[-3000:]}")
    return exe


def run_host(exe: Path, fw, flags, time_us, cfg: ModeConfig | None, tag: str = "run", packet: bytes | None = None):
    work = exe.parent
    inp, out = work / f"{tag}_in.bin", work / f"{tag}_out.bin"
    write_input(inp, fw, flags, time_us, cfg, packet)
    subprocess.run([str(exe), str(inp), str(out)], check=True)
    return read_output(out, *flags.shape)


def build_m4(export_dir: Path, name: str = "mode_m4.elf") -> Path:
    """The harness and snn_onboard.c for the Crazyflie's Cortex-M4F at the firmware's own flags."""
    elf = export_dir / name
    srcs = [export_dir / n for n in SOURCES] + [FIRMWARE_SRC / "snn_onboard.c", HARNESS, onboard.M4_DIR / "startup.c"]
    cmd = ["arm-none-eabi-gcc", *FIRMWARE_FLAGS, "-DONBOARD_M4", "-I", str(export_dir), "-I", str(FIRMWARE_SRC),
           *map(str, srcs), "-T", str(onboard.M4_DIR / "mps2_an386.ld"), "-nostartfiles", "--specs=rdimon.specs",
           "-Wl,--gc-sections", "-lm", "-o", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"M4 build failed:\n{r.stderr[-3000:]}")
    return elf


def run_m4(elf: Path, fw, flags, time_us, cfg: ModeConfig | None, timeout_s: float = 300.0):
    """On qemu-system-arm -M mps2-an386 -icount shift=0: (instructions per SysTick tick, records)."""
    write_input(elf.parent / "onboard_in.bin", fw, flags, time_us, cfg)
    _, ticks, instructions, rec = read_output(onboard.run_qemu(elf, timeout_s), *flags.shape)
    return instructions / ticks, rec


def ulps(a, b) -> np.ndarray:
    """|a - b| in float32 units in the last place of the larger (0 where equal)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    scale = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32))
    return np.where(a == b, 0.0, np.abs(a.astype(np.float64) - b) / scale)

