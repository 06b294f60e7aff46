"""The motor-command packet the ground streams to the snn_motor Crazyflie app (firmware/) on the
app channel: the Python side of firmware/src/motor_link.h, the one other definition of it.

Version 1, 14 bytes, little-endian (fits the app channel's 30-byte payload):

    offset size field
    0      1    version    = 1
    1      1    flags      bit0 ENABLE: 1 apply motor[]; 0 stop streaming (the app hands control
                                back to the stock controller)
                           bit1 RESUME: (re)start of a stream: the app accepts any sequence number
                                and clears a latched watchdog trip
    2      2    sequence   uint16, +1 per packet, wraps; the app drops packets not newer than the
                           last one (duplicates, reordering)
    4      8    motor[4]   uint16 normalised thrust of M1..M4, value / 65535 in [0, 1]: the
                           firmware's controlModeForce ``normalizedForces`` (x the firmware's
                           per-motor maximum thrust with battery compensation on)
    12     2    crc16      CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final
                           xor) of bytes 0..11 (``binascii.crc_hqx(data, 0xFFFF)``)

Motor order: M1..M4 is the l2f / training rotor order (M1 front right (+x, -y), M2 back right,
M3 back left, M4 front left; reaction-torque signs -, +, -, +), read from the signs of the
firmware's force-torque mixer (power_distribution_quadrotor.c), so action[i] drives Mi+1.
"""
from __future__ import annotations

import binascii
import math
import struct
from dataclasses import dataclass

VERSION = 1
SIZE = 14
NUM_MOTORS = 4
FLAG_ENABLE = 0x01
FLAG_RESUME = 0x02
FULL_SCALE = 65535
_LAYOUT = struct.Struct("<BBH4H")  # bytes 0..11; the crc follows as <H


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789": 0x29B1)."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


@dataclass(frozen=True)
class MotorPacket:
    """One decoded packet. ``motors`` are raw uint16 commands; ``ratios`` gives them in [0, 1]."""
    sequence: int
    motors: tuple[int, int, int, int]
    enable: bool = True
    resume: bool = False

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(m / FULL_SCALE for m in self.motors)


def ratio_to_command(ratio: float) -> int:
    """A normalised thrust in [0, 1] -> the nearest uint16 command."""
    r = float(ratio)
    if not (math.isfinite(r) and 0.0 <= r <= 1.0):
        raise ValueError(f"motor ratio {ratio!r} is outside [0, 1] (normalised thrust per motor)")
    return int(round(r * FULL_SCALE))


def encode_motor_packet(sequence: int, ratios=(0.0, 0.0, 0.0, 0.0), enable: bool = True,
                        resume: bool = False) -> bytes:
    """Bytes of one packet: ``ratios`` are the four normalised thrusts of M1..M4 in [0, 1]."""
    if len(ratios) != NUM_MOTORS:
        raise ValueError(f"motor packet needs {NUM_MOTORS} ratios (M1..M4), got {len(ratios)}")
    flags = (FLAG_ENABLE if enable else 0) | (FLAG_RESUME if resume else 0)
    body = _LAYOUT.pack(VERSION, flags, int(sequence) & 0xFFFF, *(ratio_to_command(r) for r in ratios))
    return body + struct.pack("<H", crc16_ccitt_false(body))


def decode_motor_packet(data: bytes) -> MotorPacket:
    """Parse a packet with the app's checks, in its order (length, version, crc, flags)."""
    data = bytes(data)
    if len(data) != SIZE:
        raise ValueError(f"motor packet has {len(data)} bytes, expected {SIZE}")
    if data[0] != VERSION:
        raise ValueError(f"motor packet version {data[0]}, expected {VERSION}")
    crc = struct.unpack_from("<H", data, SIZE - 2)[0]
    if crc != crc16_ccitt_false(data[:SIZE - 2]):
        raise ValueError(f"motor packet crc 0x{crc:04x} does not match its bytes "
                         f"(0x{crc16_ccitt_false(data[:SIZE - 2]):04x})")
    _, flags, seq, *motors = _LAYOUT.unpack_from(data)
    if flags & ~(FLAG_ENABLE | FLAG_RESUME):
        raise ValueError(f"motor packet flags 0x{flags:02x} set unknown bits (known: ENABLE 0x01, RESUME 0x02)")
    return MotorPacket(seq, tuple(motors), bool(flags & FLAG_ENABLE), bool(flags & FLAG_RESUME))


class MotorPacketStream:
    """Sequence numbering for one stream of packets: the first packet (and the first after
    :meth:`restart`) carries RESUME; :meth:`stop` sends ENABLE = 0 (hand back to the stock
    controller)."""

    def __init__(self, first_sequence: int = 0):
        self.sequence = int(first_sequence) & 0xFFFF
        self._resume = True

    def restart(self) -> None:
        """The next packet starts a new stream (clears a latched watchdog trip in the app)."""
        self._resume = True

    def _next(self, ratios, enable: bool) -> bytes:
        pkt = encode_motor_packet(self.sequence, ratios, enable=enable, resume=self._resume)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self._resume = False
        return pkt

    def packet(self, ratios) -> bytes:
        """The next motor-command packet for normalised thrusts ``ratios`` (M1..M4)."""
        return self._next(ratios, enable=True)

    def stop(self) -> bytes:
        """The next packet, asking the app to stop applying motor commands."""
        return self._next((0.0,) * NUM_MOTORS, enable=False)


# ---- the onboard mode's heartbeat ---------------------------------------------------------------
HEARTBEAT_MAGIC = 0xB7
HEARTBEAT_VERSION = 1
HEARTBEAT_SIZE = 4
"""In the onboard mode (firmware/src/snn_onboard.h) the ground sends only heartbeats on the app
channel: magic 0xB7, version 1, uint16 sequence (little-endian, +1 per packet; the drone does not
check it, a bag does). The drone's link watchdog trips when none arrived for ``snnonb.linkMs``.
The firmware takes these constants from snn_onboard_config.h, written by the export from here."""


def heartbeat_packet(sequence: int) -> bytes:
    if not 0 <= int(sequence) < 65536:
        raise ValueError(f"heartbeat sequence {sequence} outside 0..65535")
    return struct.pack("<BBH", HEARTBEAT_MAGIC, HEARTBEAT_VERSION, int(sequence))
