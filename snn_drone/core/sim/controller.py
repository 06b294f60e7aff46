"""A hand-written geometric hover controller on the privileged observation (the guide's teacher).

The paper's guide is a privileged ANN trained with TD3 until it hovers through the warm-up. From
scratch, TD3 on this task needs far more updates than a 2-core CPU gives in minutes (the l2f
authors use ~300k); so the guide is trained with the package's own TD3BC + JSRL learner, and this
controller is *its* jump-start guide and BC teacher. It reads only what the guide reads (the 146
privileged values: position error, rotation matrix, velocity, body rates, last 32 actions).

Control law (Lee et al. 2010, geometric tracking on SE(3), hover case):
- desired acceleration a = -k_p e_p - k_v v + g e_z, horizontal part limited (max tilt),
- desired attitude R_d: body z along a, heading x towards world x; collective thrust m a . R e_z,
- attitude e_R = vee(R_d^T R - R^T R_d) / 2; the motor lag T makes each attitude axis third order
  (angle, rate, angular acceleration a); the commanded angular acceleration
  v = -k1 e_R - k2 omega - k3 a places a triple pole at -p: k1 = p^3 T, k2 = 3 p^2 T, k3 = 3 p T - 1,
  with a estimated from the rotor speeds, which the first-order motor model run over the action
  history gives (l2f fills the history with the initial rotor speeds' actions, so it is exact),
- per-rotor thrusts from the preset's allocation matrix, rotor-speed setpoints from the thrust curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..common import layout
from .params import QuadrotorParams


@dataclass
class ControllerConfig:
    """Gains of the geometric hover controller."""

    k_position: float = 6.0
    """Position gain [1/s^2]."""
    k_velocity: float = 5.0
    """Velocity gain [1/s]."""
    attitude_pole_radps: float = 15.0
    """Triple closed-loop pole of the roll/pitch loop (angle, rate, motor lag) near hover [rad/s]."""
    attitude_pole_max_radps: float = 25.0
    """The roll/pitch pole far from hover (large tilt error or body rate): faster, saturating
    recovery; near hover the slower pole avoids the limit cycle the fast one shows at 100 Hz."""
    schedule_rate_radps: float = 3.0
    """Body rate at which the fast pole is fully used."""
    schedule_tilt_rad: float = 0.3
    """Tilt error at which the fast pole is fully used."""
    yaw_pole_radps: float = 8.0
    """Triple closed-loop pole of the yaw loop [rad/s]."""
    altitude_pole_radps: float = 4.0
    """Triple closed-loop pole of the altitude loop (height, climb rate, thrust lag) [rad/s]."""
    max_horizontal_accel_mps2: float = 8.0
    """Limit of the horizontal part of the desired acceleration (limits the commanded tilt)."""


class GeometricController(nn.Module):
    """Privileged hover controller with the policies' interface (``inputs = "privileged"``)."""

    inputs = "privileged"

    def __init__(self, params: QuadrotorParams, cfg: ControllerConfig | None = None):
        super().__init__()
        self.params, self.cfg = params, cfg or ControllerConfig()
        p = params
        alloc = torch.zeros(4, 4, dtype=torch.float64)
        for i, ((x, y, _), d) in enumerate(zip(p.rotor_positions_m, p.rotor_torque_directions)):
            alloc[:, i] = torch.tensor([1.0, y, -x, d * p.torque_constant_m], dtype=torch.float64)
        self.register_buffer("alloc", alloc.float())
        self.register_buffer("alloc_inv", torch.linalg.inv(alloc).float())
        self.motor_tau_s = p.motor_time_constant_rising_s
        self.register_buffer("inertia", torch.tensor(p.inertia_kgm2, dtype=torch.float32))
        self.register_buffer("e_x", torch.tensor([1.0, 0.0, 0.0]))

    # ---- the policies' interface ------------------------------------------------------------
    def init_state(self, batch: int, device=None):
        return None

    def reset_state(self, state, mask):
        return None

    def step(self, priv: torch.Tensor, state=None, validate: bool = True):
        return self.forward(priv), None

    def forward_sequence(self, priv: torch.Tensor, state=None):
        shape = priv.shape
        return self.forward(priv.reshape(-1, shape[-1])).reshape(*shape[:-1], layout.ACTION_DIM), None

    # ---- control law -------------------------------------------------------------------------
    def _speed_estimate(self, history: torch.Tensor) -> torch.Tensor:
        """Rotor speeds now, from the action history [B, L, 4] through the motor model."""
        p = self.params
        lo, hi = p.rotor_speed_min, p.rotor_speed_max
        setp = lo + (history.clamp(-1, 1) + 1.0) * 0.5 * (hi - lo)
        w = setp[:, 0]
        for t in range(1, history.shape[1]):
            s = setp[:, t]
            tau = torch.where(s >= w, p.motor_time_constant_rising_s, p.motor_time_constant_falling_s)
            w = s + (w - s) * torch.exp(-p.dt_s / tau)
        return w

    def forward(self, priv: torch.Tensor) -> torch.Tensor:
        c, p = self.cfg, self.params
        e_p = priv[:, layout.OBS_POS_ERR]
        R = priv[:, layout.OBS_ROT].reshape(-1, 3, 3)           # body -> world
        v = priv[:, layout.OBS_VEL]
        w = priv[:, layout.OBS_ANGVEL]
        hist = priv[:, layout.PRIV_OBS_ACTIONS].reshape(-1, layout.ACTION_HISTORY, layout.ACTION_DIM)
        g = p.gravity_mps2
        c0, c1, c2 = p.thrust_coefficients
        speed_now = self._speed_estimate(hist)
        f_now = c0 + c1 * speed_now + c2 * speed_now ** 2
        wrench_now = f_now @ self.alloc.T                          # [B, 4]: thrust [N], torques [N m]
        # translational loop -> desired acceleration, attitude and collective thrust; the altitude
        # axis is third order through the motor lag (like the attitude axes below)
        a = -c.k_position * e_p - c.k_velocity * v
        az_now = wrench_now[:, 0] * R[:, 2, 2] / p.mass_kg - g
        pz = c.altitude_pole_radps
        T = p.motor_time_constant_rising_s
        a[:, 2] = -(pz ** 3 * T) * e_p[:, 2] - (3 * pz ** 2 * T) * v[:, 2] - max(0.0, 3 * pz * T - 1) * az_now
        a_xy = a[:, :2]
        n = a_xy.norm(dim=1, keepdim=True).clamp_min(1e-9)
        a_xy = a_xy * (c.max_horizontal_accel_mps2 / n).clamp(max=1.0)
        a = torch.cat([a_xy, (a[:, 2:] + g).clamp_min(0.3 * g)], dim=1)
        z_d = a / a.norm(dim=1, keepdim=True)
        y_d = torch.cross(z_d, self.e_x.expand_as(z_d), dim=1)
        y_d = y_d / y_d.norm(dim=1, keepdim=True).clamp_min(1e-9)
        x_d = torch.cross(y_d, z_d, dim=1)
        R_d = torch.stack([x_d, y_d, z_d], dim=2)
        thrust = p.mass_kg * (a * R[:, :, 2]).sum(1).clamp_min(0.0)
        # tilt first: roll/pitch error from the reduced attitude (body z towards z_d), yaw from Lee's
        # e_R; yaw only gets the rotor authority that thrust, roll and pitch leave (below)
        z_b = R[:, :, 2]
        e_tilt = -(R.transpose(1, 2) @ torch.cross(z_b, z_d, dim=1)[:, :, None])[:, :, 0]
        E = R_d.transpose(1, 2) @ R - R.transpose(1, 2) @ R_d
        e_R = torch.cat([e_tilt[:, :2], 0.5 * E[:, 1, 0][:, None]], dim=1)
        acc_now = wrench_now[:, 1:] / self.inertia                # current angular acceleration
        urgency = torch.maximum(w[:, :2].norm(dim=1) / c.schedule_rate_radps,
                                e_R[:, :2].norm(dim=1) / c.schedule_tilt_rad).clamp(0.0, 1.0)
        pole = c.attitude_pole_radps + (c.attitude_pole_max_radps - c.attitude_pole_radps) * urgency
        pole = torch.stack([pole, pole, torch.full_like(pole, c.yaw_pole_radps)], dim=1)
        T = self.motor_tau_s
        acc_cmd = -(pole ** 3 * T) * e_R - (3 * pole ** 2 * T) * w - (3 * pole * T - 1).clamp_min(0.0) * acc_now
        wrench = torch.cat([thrust[:, None], self.inertia * acc_cmd], dim=1)
        f_max = c0 + c1 * p.rotor_speed_max + c2 * p.rotor_speed_max ** 2
        f0 = (wrench[:, :3] @ self.alloc_inv[:, :3].T).clamp(0.0, f_max)    # thrust, roll, pitch
        fy = wrench[:, 3:] * self.alloc_inv[:, 3]                          # yaw's share per rotor
        room = torch.where(fy > 0, (f_max - f0) / fy.clamp_min(1e-12), f0 / (-fy).clamp_min(1e-12))
        scale = room.min(dim=1, keepdim=True).values.clamp(0.0, 1.0)
        f = (f0 + scale * fy).clamp(0.0, f_max)
        if c2 > 0:
            speed = (-c1 + torch.sqrt((c1 * c1 - 4 * c2 * (c0 - f)).clamp_min(0.0))) / (2 * c2)
        else:
            speed = (f - c0) / c1
        lo, hi = p.rotor_speed_min, p.rotor_speed_max
        return ((speed - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)
