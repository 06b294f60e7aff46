"""The snn_motor Crazyflie app's pure logic (firmware/src/motor_link.c), compiled with the real gcc
(address and undefined-behaviour sanitizers on) and driven line by line from here: packets encoded
by snn_drone.core.deploy.motor_packet decode in C and back, corrupt packets are rejected and counted,
sequence checks, clamping, the 50 ms watchdog and its fallbacks. Plus the action -> motor ratio
mapping the bridge uses."""
from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from snn_drone.core.deploy.motor_mapping import MotorMappingConfig, action_to_ratio
from snn_drone.core.deploy.motor_packet import (FULL_SCALE, SIZE, MotorPacketStream, crc16_ccitt_false,
                                         decode_motor_packet, encode_motor_packet)
from snn_drone.core.sim.params import load_preset

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
OK, ERR_LENGTH, ERR_VERSION, ERR_CRC, ERR_FLAGS, ERR_SEQUENCE = range(6)
IDLE, ACTIVE, STOPPED, TRIPPED = range(4)
OUT_STOCK, OUT_MOTORS, OUT_OFF = range(3)

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    exe = tmp_path_factory.mktemp("fw") / "motor_link_driver"
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"]
    probe = subprocess.run(["gcc", "-fsanitize=address,undefined", "-x", "c", "-", "-o", str(exe)],
                           input="int main(void){return 0;}", text=True, capture_output=True)
    if probe.returncode == 0:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run(["gcc", *flags, "-I", str(FIRMWARE / "src"), str(FIRMWARE / "src" / "motor_link.c"),
                    str(FIRMWARE / "test" / "motor_link_driver.c"), "-o", str(exe)], check=True)

    def run(lines: list[str]) -> list[list[str]]:
        res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", text=True, capture_output=True, check=True)
        out = [l.split() for l in res.stdout.splitlines()]
        assert len(out) == len(lines), res.stderr
        return out
    return run


def rx(t_us: int, packet: bytes) -> str:
    return f"rx {t_us} {packet.hex() or '-'}"


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16_ccitt_false(body))


def test_python_encoded_packets_decode_in_c_and_c_encodes_the_same_bytes(driver):
    rng = random.Random(6)
    packets = []
    for _ in range(300):
        seq = rng.randrange(65536)
        motors = [rng.randrange(65536) for _ in range(4)]
        enable, resume = rng.random() < 0.8, rng.random() < 0.3
        packets.append((seq, motors, enable, resume,
                        encode_motor_packet(seq, [m / FULL_SCALE for m in motors], enable, resume)))
    lines = [f"decode {p.hex()}" for *_, p in packets]
    lines += [f"encode {(1 if e else 0) | (2 if r else 0)} {s} {' '.join(map(str, m))}" for s, m, e, r, _ in packets]
    out = driver(lines)
    for (seq, motors, enable, resume, p), dec, enc in zip(packets, out[:300], out[300:]):
        assert len(p) == SIZE == 14
        assert dec == ["decode", str(OK), "1", str((1 if enable else 0) | (2 if resume else 0)), str(seq),
                       *map(str, motors)]
        assert bytes.fromhex(enc[1]) == p
        back = decode_motor_packet(p)
        assert (back.sequence, back.motors, back.enable, back.resume) == (seq, tuple(motors), enable, resume)


def test_crc_check_value_and_every_single_bit_flip_is_rejected_in_c_and_python(driver):
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    good = encode_motor_packet(1234, (0.1, 0.5, 0.9, 1.0))
    flipped = []
    for bit in range(8 * SIZE):
        b = bytearray(good)
        b[bit // 8] ^= 1 << (bit % 8)
        flipped.append(bytes(b))
    out = driver([f"decode {p.hex()}" for p in flipped])
    for bit, (p, line) in enumerate(zip(flipped, out)):
        expected = ERR_VERSION if bit < 8 else ERR_CRC
        assert int(line[1]) == expected, f"bit {bit}"
        with pytest.raises(ValueError):
            decode_motor_packet(p)


def test_wrong_length_version_and_unknown_flags_are_rejected_and_counted(driver):
    good = encode_motor_packet(5, (0.5,) * 4)
    v2 = with_crc(bytes([2]) + good[1:12])
    bad_flags = with_crc(bytes([1, 0x05]) + good[2:12])
    out = driver([rx(0, b""), rx(0, good[:13]), rx(0, good + b"\x00"), rx(0, v2), rx(0, bad_flags),
                  "stats", rx(10, good), "stats"])
    assert [int(l[1]) for l in out[:5]] == [ERR_LENGTH, ERR_LENGTH, ERR_LENGTH, ERR_VERSION, ERR_FLAGS]
    assert all(int(l[2]) == IDLE for l in out[:5])  # nothing changed the state
    assert out[5] == ["stats", "0", "3", "1", "0", "1", "0", "0"]
    assert out[6] == ["rx", str(OK), str(ACTIVE)]
    assert out[7][1] == "1"
    with pytest.raises(ValueError, match="13 bytes, expected 14"):
        decode_motor_packet(good[:13])
    with pytest.raises(ValueError, match="version 2"):
        decode_motor_packet(v2)
    with pytest.raises(ValueError, match="unknown bits"):
        decode_motor_packet(bad_flags)


def test_duplicate_and_reordered_packets_are_dropped_and_the_sequence_wraps(driver):
    pkt = lambda s, **kw: encode_motor_packet(s, (0.25,) * 4, **kw)  # noqa: E731
    out = driver([rx(0, pkt(65534, resume=True)), rx(1000, pkt(65535)), rx(2000, pkt(0)), rx(3000, pkt(1)),
                  rx(4000, pkt(1)), rx(5000, pkt(0)), rx(6000, pkt(40000)), rx(7000, pkt(3)),
                  rx(8000, pkt(3, resume=True)), "stats"])
    assert [int(l[1]) for l in out[:9]] == [OK, OK, OK, OK, ERR_SEQUENCE, ERR_SEQUENCE, ERR_SEQUENCE,
                                           OK, OK]
    # 40000 is 39999 behind 1 modulo 2^16 (int16 difference < 0): old; RESUME accepts any number
    assert out[9] == ["stats", "6", "0", "0", "0", "0", "3", "0"]


def test_watchdog_trips_after_50_ms_without_a_packet_and_turns_motors_off(driver):
    p = encode_motor_packet(0, (0.5, 0.0, 1.0, 0.25), resume=True)
    out = driver(["cfg 50 0 1 0 1", rx(1_000_000, p), "tick 1_000_000".replace("_", ""),
                  "tick 1050000", "tick 1050001", "tick 1060000", "tick 5000000"])
    assert out[0] == ["cfg", "50", "0", "1", "0", "1"]
    ratios = [float(v) for v in out[2][2:6]]
    assert out[2][1] == str(OUT_MOTORS)
    assert ratios == [np.float32(32768 / 65535), 0.0, 1.0, np.float32(16384 / 65535)]
    assert out[3][1] == str(OUT_MOTORS) and out[3][6:] == [str(ACTIVE), "0"]  # exactly 50 ms: still fresh
    assert out[4][1:] == [str(OUT_OFF), "0", "0", "0", "0", str(TRIPPED), "1"]  # 50.001 ms: trip, once
    assert out[5][1:] == [str(OUT_OFF), "0", "0", "0", "0", str(TRIPPED), "0"]
    assert out[6][1] == str(OUT_OFF)


def test_stock_fallback_hands_back_and_a_latched_trip_needs_resume(driver):
    stream = MotorPacketStream(first_sequence=100)
    ratios = (0.55, 0.55, 0.55, 0.55)
    first, second, late = stream.packet(ratios), stream.packet(ratios), stream.packet(ratios)
    stream.restart()
    resumed = stream.packet(ratios)
    out = driver(["cfg 20 1 1 0 1", rx(0, first), rx(10_000, second), "tick 30001", rx(40_000, late),
                  "tick 41000", rx(50_000, resumed), "tick 51000"])
    assert out[3][1:2] + out[3][6:] == [str(OUT_STOCK), str(TRIPPED), "1"]  # 20.001 ms after the last packet
    assert out[4] == ["rx", str(OK), str(TRIPPED)]  # accepted but the trip holds (latch)
    assert out[5][1] == str(OUT_STOCK)
    assert out[6] == ["rx", str(OK), str(ACTIVE)]  # RESUME clears it
    assert out[7][1] == str(OUT_MOTORS) and float(out[7][2]) == np.float32(round(0.55 * 65535) / 65535)
    # without the latch any newer valid packet resumes
    stream2 = MotorPacketStream()
    a, b = stream2.packet(ratios), stream2.packet(ratios)
    out = driver(["cfg 20 1 0 0 1", rx(0, a), "tick 25000", rx(26_000, b), "tick 26001"])
    assert out[2][6] == str(TRIPPED) and out[3] == ["rx", str(OK), str(ACTIVE)]


def test_stop_packet_hands_back_to_the_stock_controller_without_a_trip(driver):
    stream = MotorPacketStream()
    out = driver([rx(0, stream.packet((0.6,) * 4)), rx(10_000, stream.stop()), "tick 20000", "tick 900000",
                  "stats"])
    assert out[1] == ["rx", str(OK), str(STOPPED)]
    assert out[2][1:] == [str(OUT_STOCK), "0", "0", "0", "0", str(STOPPED), "0"]
    assert out[3][1] == str(OUT_STOCK) and out[3][7] == "0"
    assert out[4][7] == "0"  # no trips counted


def test_ratios_are_clamped_to_the_configured_limits_and_bad_configs_are_sanitised(driver):
    p = encode_motor_packet(0, (0.0, 0.05, 0.5, 1.0), resume=True)
    out = driver(["cfg 50 0 1 0.1 0.8", rx(0, p), "tick 1000", "cfg 0 7 3 nan 2", "cfg 5000 1 0 0.9 0.2"])
    assert [float(v) for v in out[2][2:6]] == [np.float32(0.1), np.float32(0.1), np.float32(32768 / 65535),
                                               np.float32(0.8)]
    assert out[3] == ["cfg", "1", "0", "1", "0", "1"]
    assert out[4] == ["cfg", "1000", "1", "0", "0.899999976", "0.899999976"]


def test_a_100_hz_stream_with_jitter_never_trips_and_a_60_ms_gap_does(driver):
    """The bridge's cadence: packets every 10 ms +- 4 ms, the controller polling at 1 kHz."""
    rng = random.Random(1)
    stream = MotorPacketStream()
    lines, t = [], 0
    arrivals = []
    for _ in range(200):
        t += 10_000 + rng.randrange(-4000, 4001)
        arrivals.append(t)
    events = [(a, rx(a, stream.packet((0.5,) * 4))) for a in arrivals]
    gap_start = arrivals[-1]
    events += [(ms * 1000, f"tick {ms * 1000}") for ms in range(1, gap_start // 1000 + 61)]
    events.sort(key=lambda e: e[0])
    lines = [e[1] for e in events]
    out = driver(lines)
    ticks = [(int(line.split()[1]), o) for line, o in zip(lines, out) if o[0] == "out"]
    assert all(o[1] == str(OUT_STOCK) for tt, o in ticks if tt < arrivals[0])  # IDLE: stock controller
    before = [o for tt, o in ticks if arrivals[0] <= tt <= gap_start + 50_000]
    assert len(before) > 1900
    after = [(tt, o) for tt, o in ticks if tt > gap_start + 50_000]
    assert all(o[1] == str(OUT_MOTORS) for o in before)
    assert after[0][1][1:2] + after[0][1][6:] == [str(OUT_OFF), str(TRIPPED), "1"]
    assert after[0][0] - gap_start <= 51_000


def test_action_to_ratio_asks_for_the_thrust_the_trained_model_expects():
    params = load_preset("cf21_paper")
    cfg = MotorMappingConfig()
    hover = action_to_ratio(np.full(4, params.hover_action), params, cfg)
    # four rotors at hover carry the weight: r = m g / 4 / T_max
    np.testing.assert_allclose(hover, params.mass_kg * params.gravity_mps2 / 4 / 0.12, rtol=1e-12)
    assert abs(hover[0] - 0.5518125) < 1e-6
    r = action_to_ratio(np.array([[-1.0, 0.0, 1.0, 2.0]]), params, cfg)
    assert r.shape == (1, 4) and r[0, 0] == 0.0 and r[0, 2] == 1.0 and r[0, 3] == 1.0  # clipped
    np.testing.assert_allclose(r[0, 1], 3.16e-10 * (21702 / 2) ** 2 / 0.12, rtol=1e-12)
    lin = action_to_ratio(np.array([-1.0, 0.0, 0.5, 1.0]), params, MotorMappingConfig(mode="rpm_linear", max_ratio=0.9))
    np.testing.assert_allclose(lin, [0.0, 0.5, 0.75, 0.9])
    with pytest.raises(ValueError, match="action holds a non-finite value nan"):
        action_to_ratio(np.array([0.0, np.nan, 0.0, 0.0]), params)
    with pytest.raises(ValueError, match="max_thrust_per_motor_n"):
        MotorMappingConfig(max_thrust_per_motor_n=0.0)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        encode_motor_packet(0, (0.5, 1.2, 0.0, 0.0))


CRAZYFLIE_FIRMWARE = "CRAZYFLIE_FIRMWARE"
"""Environment variable naming a crazyflie-firmware checkout (2026.08 or later, submodules initialised)."""


@pytest.mark.skipif(not __import__("os").environ.get(CRAZYFLIE_FIRMWARE),
                    reason=f"set {CRAZYFLIE_FIRMWARE} to a crazyflie-firmware checkout (2026.08 or later, "
                           "`git submodule update --init --recursive`) to build the app against it")
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc (Debian: gcc-arm-none-eabi)")
def test_the_app_builds_against_the_crazyflie_firmware_with_no_warning_and_selects_the_oot_controller(tmp_path):
    """firmware/README.md's build, at the firmware's own flags (-Wall -Werror); then the app's own
    sources again with -Wextra -Wshadow -Wconversion: no warning from them (the firmware's headers
    may warn)."""
    import os
    import re
    import sys
    base = Path(os.environ[CRAZYFLIE_FIRMWARE]).resolve()
    app = tmp_path / "firmware"
    # this worktree's app without its build and exported networks (net/ keeps only its Kbuild)
    shutil.copytree(FIRMWARE, app, ignore=lambda d, names: [n for n in names if n == "build" or (
        Path(d).name == "net" and n != "Kbuild")])
    missing = subprocess.run(["make", f"CRAZYFLIE_BASE={base}"], cwd=app, capture_output=True, text=True)
    assert missing.returncode != 0 and "export the networks first" in missing.stderr, missing.stderr[-2000:]
    for ckpt in ("snn_actor_bc_only.pt", "guide.pt"):  # README.md's steps: the networks first
        subprocess.run([sys.executable, "-m", "snn_drone.cli", "export", str(FIRMWARE.parent / "checkpoints" / ckpt),
                        "--format", "c", "--out", str(app / "net")], check=True, capture_output=True)
    out = subprocess.run(["make", f"CRAZYFLIE_BASE={base}", "V=1", f"-j{os.cpu_count() or 2}"], cwd=app,
                         capture_output=True, text=True, timeout=1800)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert (app / "build" / "cf2.bin").stat().st_size > 100_000
    assert not re.search(r"warning:", log), [line for line in log.splitlines() if "warning:" in line][:10]
    config = (app / "build" / ".config").read_text()
    assert "CONFIG_CONTROLLER_OOT=y" in config and not re.search(r"^CONFIG_CONTROLLER_(PID|INDI|MELLINGER|BRESCIANINI|LEE)=y",
                                                                  config, re.M)  # auto-select picks OutOfTree
    for name in ("snn_motor_app", "snn_onboard", "snn_actor", "snn_guide", "snn_observation"):
        assert any(f"{name}.o" in line and "arm-none-eabi-gcc" in line for line in log.splitlines()), name
    cc = next(line for line in log.splitlines() if "arm-none-eabi-gcc" in line and "snn_motor_app.c" in line)
    for src in ("snn_motor_app.c", "motor_link.c", "snn_onboard.c"):
        cmd = cc.split(";")[-1].strip().replace("snn_motor_app.c", src)
        strict = subprocess.run(cmd + " -Wextra -Wshadow -Wconversion -Wno-error -fsyntax-only", shell=True,
                                cwd=app / "build", capture_output=True, text=True)
        ours = [line for line in strict.stderr.splitlines() if "warning:" in line and "/firmware/src/" in line]
        assert strict.returncode == 0 and not ours, (src, ours[:10], strict.stderr[-2000:])
