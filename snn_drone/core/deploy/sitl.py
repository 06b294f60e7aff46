"""The physics side of CrazySim's software-in-the-loop (SITL) Crazyflie firmware, with the
project's dynamics: packet formats, the simulated sensors and the pacing bookkeeping. The sockets
live in the ``sitl-peer`` command (snn_drone/commands/sitl_peer.py); everything here is pure.

Protocol of the SITL ``cf2`` (llanesc/crazyflie-firmware, branch sitl-release, read from its
socket link, SITL sensors and SITL power distribution), one CRTP packet per UDP datagram, byte 0
the CRTP header ``port << 4 | channel``:

- ``cf2 PORT ADDRESS`` is a UDP *client*: it sends the single byte 0xF3 to ADDRESS:PORT until the
  peer answers 0xF3; from then on it sends to, and receives from, that address.
- Peer -> firmware on port 9 (``CRTP_PORT_SETPOINT_SIM``) channel 0, first data byte the sensor
  type: 0 accelerometer + gyro (3 int16 accel at 32 g / 65536 per LSB, then 3 int16 gyro at
  4000 deg/s / 65536 per LSB, body frame), 2 barometer (3 float32: pressure mbar, temperature deg C,
  altitude m). Every accel + gyro packet runs one stabilizer iteration: the packets are the
  firmware's 1 kHz clock. Its receive queue holds 5 packets; more in a burst are lost.
- Peer -> firmware on port 6 channel 1, type 8: external pose (7 float32: x, y, z, qx, qy, qz, qw),
  the motion capture of a real flight, read by the Kalman estimator.
- Firmware -> peer on port 9: 8 data bytes are the 4 motor PWMs (uint16, M1..M4, 0..65535, sent
  at most once per ms; the SITL build has no battery compensation, so the PWM is the mixer's
  output); 1 data byte (value 1) says that the gyro bias was found (calibration done).
- Everything else is CRTP for the ground (cflib): the peer relays it both ways.

Motors: the peer reads a PWM p as the firmware's normalised thrust r = p / 65535 (what
``controlModeForce`` with battery compensation asks a real Crazyflie for) and turns it into the
rotor-speed set-point of the action ``motor_mapping.ratio_to_action(r)``, the inverse of the map
the bridge applies to the SNN's actions. The rotors then follow the preset's motor lag.

Physics: :class:`SitlPhysics` steps the project's RK4 model (core/sim/dynamics.py) at the IMU
rate (1 kHz by default: a fresh accel + gyro sample every firmware tick, not one held per 10 ms
step) with a flat ground at z = 0 (the drone rests there before take-off and after landing).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..common import layout
from ..env.task import rotation_matrix
from ..sim.dynamics import QuadrotorDynamics
from ..sim.params import QuadrotorParams
from .motor_mapping import MotorMappingConfig, ratio_to_action
from .udp_probe import PROBE  # noqa: F401  (cflib's null packet; the peer answers it once the firmware is ready)

HANDSHAKE = b"\xf3"
PORT_SIM = 9
PORT_LOCALIZATION = 6
LOCALIZATION_GENERIC = 1
EXT_POSE = 8
SENSOR_ACC_GYRO = 0
SENSOR_BARO = 2
G_PER_LSB = 32.0 / 65536.0
DEG_PER_LSB = 4000.0 / 65536.0
PWM_FULL_SCALE = 65535
_INT16 = (-32768, 32767)


def crtp_header(port: int, channel: int) -> int:
    return ((port & 0x0F) << 4) | (channel & 0x03)


def header_port(header: int) -> int:
    return (header >> 4) & 0x0F


def _int16(values, scale: float) -> tuple[list[int], bool]:
    raw = [int(round(v / scale)) for v in values]
    clipped = [min(max(r, _INT16[0]), _INT16[1]) for r in raw]
    return clipped, clipped != raw


def encode_imu(accel_mps2, gyro_radps, gravity_mps2: float = 9.81) -> tuple[bytes, bool]:
    """Accel + gyro packet (body frame: specific force m/s^2, rates rad/s) and whether a value
    saturated the int16 range (+-16 g, +-2000 deg/s)."""
    acc, sat_a = _int16([a / gravity_mps2 for a in accel_mps2], G_PER_LSB)
    gyr, sat_g = _int16([math.degrees(w) for w in gyro_radps], DEG_PER_LSB)
    return struct.pack("<BB6h", crtp_header(PORT_SIM, 0), SENSOR_ACC_GYRO, *acc, *gyr), sat_a or sat_g


def decode_imu(packet: bytes, gravity_mps2: float = 9.81) -> tuple[np.ndarray, np.ndarray]:
    """(specific force m/s^2 [3], body rates rad/s [3]) of an accel + gyro packet."""
    if len(packet) != 14 or packet[0] != crtp_header(PORT_SIM, 0) or packet[1] != SENSOR_ACC_GYRO:
        raise ValueError(f"not an accel + gyro packet: {packet.hex()}")
    v = struct.unpack_from("<6h", packet, 2)
    return (np.array(v[:3]) * G_PER_LSB * gravity_mps2, np.radians(np.array(v[3:]) * DEG_PER_LSB))


def pressure_mbar(altitude_m: float) -> float:
    """International standard atmosphere pressure at an altitude above sea level."""
    return 1013.25 * (1.0 - 2.25577e-5 * altitude_m) ** 5.25588


def encode_baro(altitude_m: float, temperature_c: float = 25.0) -> bytes:
    return struct.pack("<BB3f", crtp_header(PORT_SIM, 0), SENSOR_BARO, pressure_mbar(altitude_m),
                       temperature_c, altitude_m)


def decode_baro(packet: bytes) -> tuple[float, float, float]:
    """(pressure mbar, temperature deg C, altitude m)."""
    if len(packet) != 14 or packet[0] != crtp_header(PORT_SIM, 0) or packet[1] != SENSOR_BARO:
        raise ValueError(f"not a barometer packet: {packet.hex()}")
    return struct.unpack_from("<3f", packet, 2)


def encode_ext_pose(position_m, quaternion_wxyz) -> bytes:
    """External pose (world position, body-to-world quaternion given w, x, y, z)."""
    w, x, y, z = (float(q) for q in quaternion_wxyz)
    return struct.pack("<BB7f", crtp_header(PORT_LOCALIZATION, LOCALIZATION_GENERIC), EXT_POSE,
                       *(float(p) for p in position_m), x, y, z, w)


def decode_ext_pose(packet: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(position [3], quaternion w, x, y, z [4]) of an external-pose packet."""
    if len(packet) != 30 or packet[0] != crtp_header(PORT_LOCALIZATION, LOCALIZATION_GENERIC) \
            or packet[1] != EXT_POSE:
        raise ValueError(f"not an external-pose packet: {packet.hex()}")
    x, y, z, qx, qy, qz, qw = struct.unpack_from("<7f", packet, 2)
    return np.array([x, y, z]), np.array([qw, qx, qy, qz])


def encode_motors(pwm) -> bytes:
    """The firmware's motor packet (port 9, 4 x uint16 PWM M1..M4), for tests and stand-ins."""
    return struct.pack("<B4H", crtp_header(PORT_SIM, 0), *(int(p) for p in pwm))


def classify(datagram: bytes) -> str:
    """What a datagram from the firmware is: 'handshake', 'motors', 'calibrated', 'sim' (another
    port-9 packet, dropped) or 'ground' (CRTP for cflib, relayed)."""
    if datagram == HANDSHAKE:
        return "handshake"
    if datagram and header_port(datagram[0]) == PORT_SIM:
        if len(datagram) == 9:
            return "motors"
        if len(datagram) == 2 and datagram[1] == 1:
            return "calibrated"
        return "sim"
    return "ground"


def decode_motors(datagram: bytes) -> tuple[int, int, int, int]:
    if classify(datagram) != "motors":
        raise ValueError(f"not a motor packet ({len(datagram)} bytes): {datagram.hex()}")
    return struct.unpack_from("<4H", datagram, 1)


def pwm_to_action(pwm, params: QuadrotorParams, mapping: MotorMappingConfig | None = None) -> np.ndarray:
    """Firmware PWMs [4] -> the actions [4] whose rotor-speed set-points the peer applies."""
    return ratio_to_action(np.asarray(pwm, dtype=np.float64) / PWM_FULL_SCALE, params, mapping)


@dataclass
class SitlConfig:
    imu_rate_hz: float = 1000.0
    """Accel + gyro packets per second (the firmware's stabilizer runs once per packet)."""
    pose_rate_hz: float = 100.0
    """External-pose packets per second (motion capture)."""
    baro_rate_hz: float = 100.0
    physics_every: int = 1
    """IMU periods per dynamics step: 1 (a fresh sample every period) or N (held N periods)."""
    start_position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Where the drone rests at the start (z = 0: on the ground)."""
    gyro_noise_radps: float = 0.0
    accel_noise_mps2: float = 0.0
    pose_noise_m: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for k in ("imu_rate_hz", "pose_rate_hz", "baro_rate_hz"):
            if not getattr(self, k) > 0:
                raise ValueError(f"{k} = {getattr(self, k)!r}, expected > 0")
        if not (isinstance(self.physics_every, int) and self.physics_every >= 1):
            raise ValueError(f"physics_every = {self.physics_every!r}, expected an integer >= 1")
        for k in ("pose_rate_hz", "baro_rate_hz"):
            ratio = self.imu_rate_hz / getattr(self, k)
            if abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"{k} = {getattr(self, k)} must divide imu_rate_hz = {self.imu_rate_hz}")


class SitlPhysics:
    """One simulated Crazyflie for the SITL firmware: :meth:`set_pwm` on each motor packet,
    :meth:`tick` once per IMU period (returns the packets to send).

    ``cfg.physics_every`` = 1 steps the dynamics every IMU period (a fresh sample at 1 kHz);
    N > 1 steps it every N periods with dt = N / imu_rate_hz and holds the IMU sample in between
    (N = 10: the training model's 10 ms step, a tenth of the CPU). A step flies the mean rotor-speed
    set-point of the motor packets received since the last one (the motors' lag filters them
    alike, to first order in the step over the motor time constant): the newest
    alone would alias a stabilizer that runs faster than the physics, and the stock PID's
    derivative term, which changes the PWM only in the period after each held IMU sample changes,
    would never reach the motors (that PID then rang and fell in SITL)."""

    def __init__(self, params: QuadrotorParams, mapping: MotorMappingConfig | None = None,
                 cfg: SitlConfig | None = None):
        self.cfg = cfg = cfg or SitlConfig()
        self.params = params
        self.mapping = mapping or MotorMappingConfig()
        self.dt_s = 1.0 / cfg.imu_rate_hz
        self.physics_dt_s = cfg.physics_every * self.dt_s
        self.dynamics = QuadrotorDynamics(replace(params, dt_s=self.physics_dt_s), dtype=torch.float64)
        self.state = self.dynamics.hover_state(1, position=list(cfg.start_position_m))
        self.state[:, layout.ROTOR] = params.rotor_speed_min
        self.action = torch.full((1, layout.ACTION_DIM), -1.0, dtype=torch.float64)
        self.pwm = (0, 0, 0, 0)
        """The newest motor packet."""
        self.applied_pwm = (0.0, 0.0, 0.0, 0.0)
        """The PWM the last dynamics step flew (the mean of the packets since the step before)."""
        self._pwm_sum, self._action_sum = np.zeros(4), np.zeros(4)
        self._pwm_count = 0
        self.ticks = 0
        self.saturated = 0
        self._imu = None
        self._pose_every = int(round(cfg.imu_rate_hz / cfg.pose_rate_hz))
        self._baro_every = int(round(cfg.imu_rate_hz / cfg.baro_rate_hz))
        self._rng = np.random.default_rng(cfg.seed)

    @property
    def time_s(self) -> float:
        return self.ticks * self.dt_s

    def set_pwm(self, pwm) -> None:
        self.pwm = tuple(int(p) for p in pwm)
        self._pwm_sum += self.pwm
        self._action_sum += pwm_to_action(self.pwm, self.params, self.mapping)
        self._pwm_count += 1

    def _take_pwm(self) -> None:
        """The next step's motor command: the mean set-point since the last step (none came: the last one's)."""
        if self._pwm_count:
            self.applied_pwm = tuple(float(v) for v in self._pwm_sum / self._pwm_count)
            self.action = torch.as_tensor((self._action_sum / self._pwm_count)[None])
            self._pwm_sum[:], self._action_sum[:] = 0.0, 0.0
            self._pwm_count = 0

    def true_state(self) -> np.ndarray:
        return self.state[0].numpy().copy()

    def _step(self) -> None:
        """One dynamics step, the ground contact, and the IMU sample it gives."""
        v0 = self.state[0, layout.VEL].numpy().copy()
        self._take_pwm()
        self.state = self.dynamics.step(self.state, self.action, validate=False)
        s = self.state[0].numpy()  # a view: writes below change the state
        grounded = s[layout.POS][2] <= 0.0 and s[layout.VEL][2] <= 0.0
        if grounded:  # resting contact: on the ground, level (yaw kept), no velocity, no body rates
            w, x, y, z = s[layout.QUAT]
            yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
            s[layout.POS.start + 2] = 0.0
            s[layout.QUAT] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
            s[layout.VEL] = 0.0
            s[layout.ANGVEL] = 0.0
        lin_acc = np.zeros(3) if grounded else (s[layout.VEL] - v0) / self.physics_dt_s
        rot = rotation_matrix(torch.from_numpy(s[layout.QUAT].copy())).numpy().reshape(3, 3)
        acc = rot.T @ (lin_acc + np.array([0.0, 0.0, self.params.gravity_mps2]))
        gyro = s[layout.ANGVEL].copy()
        if self.cfg.accel_noise_mps2:
            acc = acc + self._rng.normal(0.0, self.cfg.accel_noise_mps2, 3)
        if self.cfg.gyro_noise_radps:
            gyro = gyro + self._rng.normal(0.0, self.cfg.gyro_noise_radps, 3)
        self._imu, sat = encode_imu(acc, gyro, self.params.gravity_mps2)
        self.saturated += sat

    def tick(self) -> list[bytes]:
        """Advance one IMU period; return the accel + gyro packet and, when due, the barometer and
        external-pose packets."""
        if self.ticks % self.cfg.physics_every == 0:
            self._step()
        self.ticks += 1
        s = self.state[0].numpy()
        out = [self._imu]
        if self.ticks % self._baro_every == 0:
            out.append(encode_baro(float(s[layout.POS][2])))
        if self.ticks % self._pose_every == 0:
            pos = s[layout.POS]
            if self.cfg.pose_noise_m:
                pos = pos + self._rng.normal(0.0, self.cfg.pose_noise_m, 3)
            out.append(encode_ext_pose(pos, s[layout.QUAT]))
        return out


@dataclass
class PacingStats:
    """Real-time bookkeeping of the IMU clock: a tick is *late* when its packet leaves more than
    ``late_after_s`` after its due time, and *dropped* (physics stepped, packet not sent) when the
    peer is more than ``drop_after_s`` behind, so that the firmware never gets a burst its
    5-packet receive queue would lose."""
    period_s: float
    late_after_s: float = 0.0005
    drop_after_s: float = 0.002
    sent: int = 0
    late: int = 0
    dropped: int = 0
    max_lag_s: float = 0.0

    def due(self, tick_index: int, start_s: float) -> float:
        return start_s + tick_index * self.period_s

    def decide(self, lag_s: float) -> bool:
        """Record a tick ``lag_s`` after its due time; True: send its packets, False: drop them."""
        self.max_lag_s = max(self.max_lag_s, lag_s)
        if lag_s > self.drop_after_s:
            self.dropped += 1
            return False
        self.sent += 1
        if lag_s > self.late_after_s:
            self.late += 1
        return True

    def summary(self) -> dict:
        return {"imu_sent": self.sent, "imu_late": self.late, "imu_dropped": self.dropped,
                "late_after_ms": self.late_after_s * 1e3, "drop_after_ms": self.drop_after_s * 1e3,
                "max_lag_ms": round(self.max_lag_s * 1e3, 3)}
