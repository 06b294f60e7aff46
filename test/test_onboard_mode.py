"""The firmware app's onboard mode (firmware/src/snn_onboard.c: the deployed protocol run by the drone
itself) against the Python deploy path, on flights that the ground-station path flew in the
simulator: the estimate in the firmware's units (state_t / sensorData_t: quaternion x y z w, gyro in
deg/s) replayed to the C code, built with the host gcc and, at crazyflie-firmware's own flags
(-Os -Werror -Wdouble-promotion ...), for the Cortex-M4F on qemu-system-arm -M mps2-an386.

Tolerances: observations, phases, step counts and spikes bit-identical (the same float32 and double
operations in the same order as state_from_log + task.observation, and as the actor summed in the C
order); actions within 1e-6 of torch in the C order and 1e-5 of the torch networks (BLAS order,
tanhf); ratios within one float32 ulp of action_to_ratio (double) of the C action. Safety decisions
equal SafetySupervisor's on random states (tilts within 1e-3 deg of the limit left out)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import onboard_mode_support as om
import onboard_support as onboard
from snn_drone.core.deploy.export_c import sequential_sequence
from snn_drone.core.deploy.motor_mapping import MotorMappingConfig, action_to_ratio
from snn_drone.core.deploy.motor_packet import encode_motor_packet, heartbeat_packet
from snn_drone.core.deploy.safety import SafetyConfig, SafetySupervisor, tilt_deg
from snn_drone.core.learning.checkpoint import load_policy
from snn_drone.core.sim.params import load_preset

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

CKPT = onboard.C_DIR.parents[1] / "checkpoints"
DRONES, STEPS, WARMUP = 3, 300, 50
WIDE = dict(max_tilt_deg=180.0, geofence_min=(-50.0,) * 3, geofence_max=(50.0,) * 3)  # the sim's crashes fly far


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        actor = load_policy(CKPT / "snn_actor.pt").eval()
        guide = load_policy(CKPT / "guide.pt").eval()
        flight = om.record_deploy_flight(actor, guide, DRONES, STEPS, seed=11, warmup=WARMUP)
        d = om.export_mode(actor, guide, tmp_path_factory.mktemp("mode"))
        exe = om.build_host(d)
        cfg = om.ModeConfig(warmup_steps=WARMUP, fill=tuple(flight.fill), **WIDE)
        _, _, _, rec = om.run_host(exe, flight.fw, flight.flags, flight.time_us, cfg, "flight")
        yield actor, guide, flight, d, exe, cfg, rec
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def test_the_onboard_step_flies_the_deploy_path_on_simulated_flights(case):
    actor, _, flight, _, _, _, rec = case
    starts = flight.episode_step == 0
    assert int(starts[1:].sum()) >= 2 and (flight.episode_step >= WARMUP).sum() > 100  # restarts, and SNN steps
    # the firmware's estimate -> the 18 observations, as the bridge + task.observation compute them
    assert np.array_equal(rec["obs"], flight.obs)
    # the protocol: the guide flies the first 50 steps of each start, then the SNN
    assert np.array_equal(rec["phase"], np.where(flight.episode_step < WARMUP, om.PHASE_GUIDE, om.PHASE_SNN))
    assert (rec["out"] == om.OUT_MOTORS).all() and np.array_equal(rec["step"], flight.episode_step + 1)
    # the actor runs from step 0 on (warm-up): its spikes are torch's in the C order, bit for bit
    mem, spk, act = sequential_sequence(actor, torch.from_numpy(flight.obs), torch.from_numpy(starts))
    assert np.array_equal(rec["spikes"], spk.numpy().astype(np.uint8))
    assert 0.05 < rec["spikes"].mean() < 0.95
    counts = np.stack([rec["spikes"][..., :256].sum(-1), rec["spikes"][..., 256:].sum(-1)], -1)
    assert np.array_equal(rec["counts"], counts)
    snn = flight.episode_step >= WARMUP
    assert float(np.abs(rec["action"][snn] - act.numpy()[snn]).max()) <= 1e-6
    # the flown action = the deploy path's (guide in the warm-up, actor after), and its ratios
    assert float(np.abs(rec["action"] - flight.flown).max()) <= 1e-5
    guided = ~snn
    assert float(np.abs(rec["action"][guided] - flight.guide[guided]).max()) <= 1e-5
    expected = action_to_ratio(rec["action"].astype(np.float64), load_preset(), MotorMappingConfig())
    assert float(om.ulps(rec["ratio"], expected.astype(np.float32)).max()) <= 1.0
    assert float(np.abs(rec["ratio"] - flight.ratio).max()) <= 1e-5


def test_defaults_are_the_exported_configs(case):
    """use_defaults: so_config_default = snn_onboard_config.h = the Python configs."""
    _, _, flight, _, exe, _, _ = case
    cfg, *_ = om.run_host(exe, {k: v[:1, :1] for k, v in flight.fw.items()}, flight.flags[:1, :1],
                          flight.time_us[:1, :1], None, "defaults")
    d = om.defaults()
    expected = om.ModeConfig.of_safety(d.safety, warmup_steps=50, target=(0.0, 0.0, 1.0), fill=tuple(d.fill()))
    assert np.array_equal(cfg, expected.values())
    # the fill: what LiveActionHistory gives after a stock take-off (rotor estimate at hover)
    assert float(np.abs(d.fill() - flight.fill).max()) <= 1e-6
    assert abs(float(d.fill()[0]) - load_preset().hover_action) < 1e-6


def _single_steps(states: np.ndarray):
    """Each state [N, 13] as its own start: one record per drone column of length 1."""
    fw = {k: v[None] for k, v in om.firmware_units(states).items()}
    n = states.shape[0]
    flags = np.full((1, n), om.CMD_START | om.CMD_STEP | om.CMD_HEARTBEAT, np.uint8)
    return fw, flags, np.zeros((1, n), np.uint32)


def test_geofence_tilt_and_nonfinite_checks_decide_as_the_safety_supervisor(case):
    *_, exe, cfg, _ = case
    rng = np.random.default_rng(3)
    safety = SafetyConfig()
    n = 8 * 8  # the harness holds 8 drones: 8 runs
    decided = {"none": 0, "land": 0, "stop": 0}
    for run in range(8):
        s = np.zeros((n // 8, 13), np.float32)
        s[:, 0:3] = rng.uniform(-2.0, 2.4, (n // 8, 3))
        axis = rng.normal(size=(n // 8, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        angle = np.radians(rng.uniform(0, 90, n // 8))
        s[:, 3] = np.cos(angle / 2)
        s[:, 4:7] = axis * np.sin(angle / 2)[:, None]
        s[:, 7:13] = rng.normal(size=(n // 8, 6))
        s[0, 8] = np.nan
        s[1, 3:7] *= 1.01  # not unit: both sides normalise
        fw, flags, t = _single_steps(s)
        c = om.ModeConfig.of_safety(safety, warmup_steps=WARMUP, fill=cfg.fill)
        _, _, _, rec = om.run_host(exe, fw, flags, t, c, f"safety{run}")
        for b in range(s.shape[0]):
            state = np.concatenate([s[b].astype(np.float64), np.zeros(4)])
            if np.isfinite(state).all():
                state[3:7] /= np.linalg.norm(state[3:7])
                if abs(tilt_deg(state[3:7]) - safety.max_tilt_deg) < 1e-3:
                    continue
            verdict = SafetySupervisor(safety).check(0.0, state, 0.0, None, None)
            action = verdict.action if verdict.action in ("land", "stop") else "none"
            decided[action] += 1
            out = {"none": om.OUT_MOTORS, "land": om.OUT_STOCK, "stop": om.OUT_OFF}[action]
            assert rec["out"][0, b] == out, (b, s[b], verdict)
            kinds = {"geofence": om.TRIP_GEOFENCE, "tilt": om.TRIP_TILT, "nonfinite_state": om.TRIP_NONFINITE}
            if action == "none":
                assert rec["trip"][0, b] == om.TRIP_NONE and rec["phase"][0, b] == om.PHASE_GUIDE
            else:
                assert rec["trip"][0, b] in {kinds[v.kind] for v in verdict.violations if v.action == action}
                assert rec["phase"][0, b] == om.PHASE_TRIPPED and rec["taken"][0, b] == 1
                assert (rec["ratio"][0, b] == 0).all()
    assert min(decided.values()) >= 5, decided


def _ticks(flight, drone: int, ms: int, heartbeat_until_ms: int | None = None):
    """1 kHz controller calls for one drone: a so_step every 10 ms on the flight's states (start at
    0), so_hold between; heartbeats every 10 ms until heartbeat_until_ms."""
    idx = np.arange(ms) // 10
    fw = {k: v[idx, drone][:, None] for k, v in flight.fw.items()}
    flags = np.where(np.arange(ms) % 10 == 0, om.CMD_STEP, 0).astype(np.uint8)
    hb = (np.arange(ms) % 10 == 0) & (np.arange(ms) <= (ms if heartbeat_until_ms is None else heartbeat_until_ms))
    flags = (flags | np.where(hb, om.CMD_HEARTBEAT, 0)).astype(np.uint8)
    flags[0] |= om.CMD_START
    return fw, flags[:, None], (np.arange(ms, dtype=np.uint32) * 1000)[:, None]


def test_link_watchdog_trips_once_just_after_the_timeout_and_holds_the_ratios_between_steps(case):
    _, _, flight, _, exe, cfg, _ = case
    fw, flags, t = _ticks(flight, 0, 600, heartbeat_until_ms=200)
    c = om.ModeConfig(**{**cfg.__dict__, "link_timeout_ms": 250})
    _, _, _, rec = om.run_host(exe, fw, flags, t, c, "link")
    out, trip = rec["out"][:, 0], rec["trip"][:, 0]
    assert (out[:451] == om.OUT_MOTORS).all()  # the last heartbeat at 200 ms: fresh up to 450.000 ms
    assert out[451] == om.OUT_OFF and trip[451] == om.TRIP_LINK and rec["taken"][451, 0] == 1
    assert (out[451:] == om.OUT_OFF).all() and rec["taken"][452:, 0].sum() == 0 and (rec["ratio"][451:] == 0).all()
    held = np.arange(451) % 10 != 0
    steps = np.arange(451) - np.arange(451) % 10
    assert np.array_equal(rec["ratio"][:451, 0][held], rec["ratio"][steps[held], 0])  # so_hold repeats the step
    # the control steps equal the 100 Hz run's (until that drone's episode restarted)
    restart = int(np.argmax(flight.episode_step[1:, 0] == 0)) + 1 if (flight.episode_step[1:, 0] == 0).any() else STEPS
    n = min(46, restart)
    assert n >= 10 and np.array_equal(rec["spikes"][0:10 * n:10, 0], case[6]["spikes"][:n, 0])
    # link_timeout_ms 0: no watchdog (a start from cfclient without heartbeats)
    _, _, _, off = om.run_host(exe, fw, flags & ~np.uint8(om.CMD_HEARTBEAT), t,
                               om.ModeConfig(**{**cfg.__dict__, "link_timeout_ms": 0}), "nolink")
    assert (off["out"] == om.OUT_MOTORS).all()
    # with the watchdog on and no heartbeat ever, the first step trips
    _, _, _, never = om.run_host(exe, fw, flags & ~np.uint8(om.CMD_HEARTBEAT), t, c, "never")
    assert never["out"][0, 0] == om.OUT_OFF and never["trip"][0, 0] == om.TRIP_LINK
    # only the ground's heartbeat counts: a motor packet, a wrong magic or version or length does not
    good = heartbeat_packet(7)
    for bad in (encode_motor_packet(1, (0.5,) * 4), bytes([0xB6]) + good[1:], good[:1] + bytes([2]) + good[2:],
                good[:3], good + b"\0"):
        _, _, _, r = om.run_host(exe, fw, flags, t, c, "bad", packet=bad)
        assert r["out"][0, 0] == om.OUT_OFF and r["trip"][0, 0] == om.TRIP_LINK, bad.hex()
    _, _, _, r = om.run_host(exe, fw, flags, t, c, "good", packet=good)
    assert np.array_equal(r["out"], rec["out"])


def test_stop_hands_back_and_a_restart_starts_the_protocol_afresh(case):
    _, _, flight, _, exe, cfg, first = case
    fw = {k: v[:, :1] for k, v in flight.fw.items()}
    flags = flight.flags[:, :1].copy()
    flags[60, 0] |= om.CMD_STOP
    flags[60, 0] &= ~np.uint8(om.CMD_START)
    flags[61:70, 0] &= ~np.uint8(om.CMD_START)
    flags[70, 0] |= om.CMD_START
    _, _, _, rec = om.run_host(exe, fw, flags, flight.time_us[:, :1], cfg, "restart")
    assert (rec["out"][60:70, 0] == om.OUT_STOCK).all() and (rec["phase"][60:70, 0] == om.PHASE_OFF).all()
    assert rec["step"][70, 0] == 1 and rec["phase"][70, 0] == om.PHASE_GUIDE
    # from the restart on, the same as a fresh start on the same states
    fresh_flags = flags[70:].copy()
    fresh_flags[0, 0] = om.CMD_START | om.CMD_STEP | om.CMD_HEARTBEAT
    _, _, _, fresh = om.run_host(exe, {k: v[70:] for k, v in fw.items()}, fresh_flags,
                                 flight.time_us[70:, :1], cfg, "fresh")
    for k in ("obs", "action", "ratio", "spikes", "phase", "step"):
        assert np.array_equal(rec[k][70:], fresh[k]), k
    assert not np.array_equal(rec["spikes"][70:80], first["spikes"][70:80, :1])  # the membranes were reset


def test_mapping_mode_clamps_and_sanitised_parameters(case):
    _, _, flight, _, exe, cfg, _ = case
    sl = {k: v[:80] for k, v in flight.fw.items()}
    c = om.ModeConfig(**{**cfg.__dict__, "mapping_mode": 1, "max_ratio_mapping": 0.9, "min_ratio": 0.1, "max_ratio": 0.7})
    used, _, _, rec = om.run_host(exe, sl, flight.flags[:80], flight.time_us[:80], c, "linear")
    lin = action_to_ratio(rec["action"].astype(np.float64), load_preset(), MotorMappingConfig(mode="rpm_linear", max_ratio=0.9))
    assert float(om.ulps(rec["ratio"], np.clip(lin, 0.1, 0.7).astype(np.float32)).max()) <= 1.0
    assert (rec["ratio"] == np.float32(0.7)).any() and (rec["ratio"] == np.float32(0.1)).any()
    bad = om.ModeConfig(**{**cfg.__dict__, "fill": (np.nan, 2.0, -3.0, 0.5), "min_ratio": 0.8, "max_ratio": 0.3,
                           "max_tilt_deg": 0.0, "actions": (7, 0, 1, 2), "link_timeout_ms": 60000,
                           "geofence_min": (1.0, 0.0, 0.0), "geofence_max": (0.0, 1.0, 1.0)})
    used, *_ = om.run_host(exe, sl, flight.flags[:80], flight.time_us[:80], bad, "sanitised")
    d = om.defaults()
    assert list(used[4:8]) == [np.float32(d.fill()[0]), 1.0, -1.0, 0.5]
    assert used[10] == used[11] == np.float32(0.8)  # max below min: max = min
    assert used[12] == 60.0 and list(used[19:23]) == [2, 0, 1, 2] and used[23] == 10000
    assert list(used[13:19]) == [-1.5, 0.0, 0.0, 1.5, 1.0, 1.0]  # a bad axis gets the default


@pytest.fixture(scope="module")
def m4(case):
    why = onboard.arm_tools_missing()
    if why:
        pytest.skip(why)
    _, _, flight, d, _, cfg, _ = case
    elf = om.build_m4(d)
    per_tick, rec = om.run_m4(elf, flight.fw, flight.flags, flight.time_us, cfg)
    return per_tick, rec


def test_cortex_m4_build_at_the_firmware_flags_flies_like_the_host_build(case, m4):
    _, _, flight, _, _, _, host = case
    per_tick, rec = m4
    for k in ("obs", "phase", "out", "step", "spikes", "counts"):
        assert np.array_equal(rec[k], host[k]), k
    assert float(np.abs(rec["action"] - host["action"]).max()) <= 1e-6  # newlib's tanhf vs glibc's
    assert float(np.abs(rec["ratio"] - host["ratio"]).max()) <= 1e-6
    assert abs(per_tick - 40.0) < 0.1
    cost = rec["ticks"].astype(np.float64) * per_tick
    guided = flight.episode_step < WARMUP
    assert cost[guided].mean() > cost[~guided].mean() > 10_000  # the warm-up runs both networks
