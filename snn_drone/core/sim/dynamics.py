"""Batched Crazyflie rigid-body dynamics of the Learning-to-Fly (l2f) model, in torch.

One call of :meth:`QuadrotorDynamics.step` advances B drones by ``params.dt_s`` with one classic
RK4 step over the whole 17-value state (layout.py: position, quaternion, velocity, body rates,
rotor speeds), the motor lag included in the integrated state as l2f does. After the step the
quaternion is normalised and the rotor speeds are clamped to [rotor_speed_min, rotor_speed_max]
(l2f's post-integration). Every operation is per drone (elementwise ops, row gathers, sums over
the short state and rotor axes; no matrix product, no reduction over the batch), so a NaN in one
drone never changes another drone.

Model (verified against rl-tools ``l2f/operations_generic.h`` ``multirotor_dynamics`` and
``parameters/dynamics/crazy_flie.h``):

* action a in [-1, 1] (clipped) -> rotor-speed setpoint ``min + (a + 1) / 2 * (max - min)``;
* motor lag ``d(speed)/dt = (setpoint - speed) / tau``, ``tau`` the rising constant where
  ``setpoint >= speed`` and the falling one otherwise, chosen anew in every RK4 stage;
* per-rotor thrust ``T_i = c0 + c1 w_i + c2 w_i^2`` along body +z;
* torque ``sum_i r_i x (0, 0, T_i) + (0, 0, dir_i * torque_constant * T_i)``;
* ``d(omega)/dt = J^-1 (torque - omega x J omega)`` (body frame, J diagonal);
* ``d(v)/dt = R(q) (0, 0, sum T_i) / m - g e_z`` (world frame);
* ``d(q)/dt = 0.5 q (x) (0, omega)`` (q = w, x, y, z, body to world).

Sign conventions (body x forward, y left, z up; l2f rotor order: 0 front-right, 1 rear-right,
2 rear-left, 3 front-left; torque directions -1, +1, -1, +1):

* Yaw: raising rotors 1 and 3 (direction +1) and lowering 0 and 2 gives a positive z torque,
  so the drone yaws counter-clockwise seen from above (angular_velocity z > 0).
* Roll: raising the left rotors (2, 3; y > 0) gives a positive x torque: the drone rolls right
  side down, its thrust tilts towards world -y, and it accelerates towards -y.
* Pitch: raising the rear rotors (1, 2; x < 0) gives a positive y torque: the nose goes down,
  the thrust tilts towards world +x, and it accelerates towards +x.

Input checks: with ``validate=True`` (the default) ``state`` and ``action`` go through
``check_array``: wrong shapes and NaN/inf raise ValueError naming the array and the field.
Out-of-range actions are not errors: they are clipped to [-1, 1] (a policy's exploration noise
may step outside the box), as l2f clamps them.
"""
from __future__ import annotations

import torch

from ..common.layout import ACTION_DIM, ANGVEL, POS, QUAT, ROTOR, STATE_DIM, STATE_FIELDS, VEL, Field
from .params import QuadrotorParams
from ..common.validation import check_array

# Layout of the action for error messages (4 motor commands in [-1, 1], l2f rotor order).
ACTION_FIELDS: tuple[Field, ...] = (Field("motor_command", ACTION_DIM, "1, [-1, 1]", "rotor"),)


def rotor_speed_rate(speed, setpoint, inv_tau_rising: float, inv_tau_falling: float):
    """Motor lag d(speed)/dt = (setpoint - speed) / tau, tau by the sign of setpoint - speed.

    The one definition of the motor model; it works on torch tensors and numpy arrays alike
    (the pybullet world integrates rotor speeds with it too). The inverse time constants are
    floats, or tensors that broadcast against ``speed`` (per-drone constants, [1, B] rows).
    """
    diff = setpoint - speed
    if isinstance(inv_tau_rising, float) and inv_tau_rising == inv_tau_falling:
        return diff * inv_tau_rising
    # (diff * mask) keeps diff's dtype in torch and numpy (float * bool mask would give float32)
    return diff * inv_tau_falling + (diff * (diff >= 0)) * (inv_tau_rising - inv_tau_falling)


def rotor_speed_setpoint(action, speed_min: float, speed_max: float):
    """Rotor-speed setpoint of actions: min + (clip(a, -1, 1) + 1) / 2 * (max - min).
    Works on torch tensors and numpy arrays (both have ``.clip``)."""
    half = 0.5 * (speed_max - speed_min)
    return action.clip(-1.0, 1.0) * half + (speed_min + half)


def rotor_thrust_n(speed, coefficients):
    """Per-rotor thrust c0 + c1 w + c2 w^2 [N] (zero terms skipped); torch or numpy."""
    c0, c1, c2 = coefficients
    t = speed * c2
    if c1 != 0.0:
        t = t + c1
    t = t * speed
    if c0 != 0.0:
        t = t + c0
    return t


def rotor_speed_rk4(speed, setpoint, dt_s: float, inv_tau_rising: float, inv_tau_falling: float):
    """One RK4 step of the motor lag alone. The motor ODE does not depend on the rest of the
    state, so this gives the rotor speeds of the full-state RK4 of :class:`QuadrotorDynamics`
    (before clamping), and the four stage speeds, whose thrusts RK4 weights 1, 2, 2, 1."""
    k1 = rotor_speed_rate(speed, setpoint, inv_tau_rising, inv_tau_falling)
    s2 = speed + 0.5 * dt_s * k1
    k2 = rotor_speed_rate(s2, setpoint, inv_tau_rising, inv_tau_falling)
    s3 = speed + 0.5 * dt_s * k2
    k3 = rotor_speed_rate(s3, setpoint, inv_tau_rising, inv_tau_falling)
    s4 = speed + dt_s * k3
    k4 = rotor_speed_rate(s4, setpoint, inv_tau_rising, inv_tau_falling)
    return speed + dt_s / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), (speed, s2, s3, s4)


# State rows used by the bilinear terms (the state held transposed, [17, B]).
_QW, _QX, _QY, _QZ = range(QUAT.start, QUAT.stop)
_WX, _WY, _WZ = range(ANGVEL.start, ANGVEL.stop)


def _bilinear_terms(inertia_kgm2) -> tuple:
    """Rows (i, k, coefficient) of every product x_i * x_k in the derivative, per output:
    d(q)/dt = 0.5 q (x) (0, omega) (4 outputs, l2f's quaternion_derivative), R(q) e_z - e_z
    (3 outputs; R e_z is the body z axis in the world, as l2f's rotate_vector_by_quaternion
    gives it), and the gyroscopic acceleration -(omega x J omega) / J for diagonal J (3 outputs:
    (Jy - Jz) / Jx * wy wz, and cyclic)."""
    jx, jy, jz = (float(j) for j in inertia_kgm2)
    h = 0.5
    return (
        ((_QX, _WX, -h), (_QY, _WY, -h), (_QZ, _WZ, -h)),
        ((_QW, _WX, +h), (_QY, _WZ, +h), (_QZ, _WY, -h)),
        ((_QW, _WY, +h), (_QZ, _WX, +h), (_QX, _WZ, -h)),
        ((_QW, _WZ, +h), (_QX, _WY, +h), (_QY, _WX, -h)),
        ((_QX, _QZ, 2.0), (_QW, _QY, 2.0)),
        ((_QY, _QZ, 2.0), (_QW, _QX, -2.0)),
        ((_QX, _QX, -2.0), (_QY, _QY, -2.0)),
        ((_WY, _WZ, (jy - jz) / jx),),
        ((_WZ, _WX, (jz - jx) / jy),),
        ((_WX, _WY, (jx - jy) / jz),),
    )


class QuadrotorDynamics:
    """B Crazyflies stepped together with RK4 (see the module docstring for the model)."""

    def __init__(self, params: QuadrotorParams, device="cpu", dtype=torch.float32,
                 compile: bool = False):
        """``compile=True`` runs the RK4 step through ``torch.compile``, compiled lazily on the
        first step (~10 s on this 2-core CPU, again for a new batch size); measured on CPU with
        one thread: ~3x faster at B = 1 (20k vs 7k steps/s), ~2x at B = 4096 (5.1M vs 2.7M)."""
        self.params = params
        self.device = torch.device(device)
        self.dtype = dtype
        self.dt_s = float(params.dt_s)
        p = params
        self.inv_tau_rising = 1.0 / p.motor_time_constant_rising_s
        self.inv_tau_falling = 1.0 / p.motor_time_constant_falling_s
        self._thrust_coefficients = tuple(float(c) for c in p.thrust_coefficients)
        jx, jy, jz = (float(j) for j in p.inertia_kgm2)
        kw = dict(device=self.device, dtype=dtype)
        # Internally the state is held transposed, [17, B]: each component is a contiguous row.
        # Every operation is elementwise along B (row gathers, products, sums over short axes):
        # no matrix product, whose BLAS threading costs milliseconds per call on a busy machine,
        # and nothing mixes drones.
        # Per-rotor thrusts [4, B] -> (A[:, :, None] * T).sum(1) = (thrust / m along body z
        # [m/s^2], J^-1 torque [rad/s^2]); torque = r_i x (0, 0, T_i) + dir_i * k * T_i e_z.
        a = torch.zeros(4, 4, dtype=torch.float64)
        for i, ((rx, ry, _), d) in enumerate(zip(p.rotor_positions_m, p.rotor_torque_directions)):
            a[:, i] = torch.tensor([1.0 / p.mass_kg, ry / jx, -rx / jy, d * p.torque_constant_m / jz],
                                   dtype=torch.float64)
        self._thrust_to_accel = a.unsqueeze(2).to(**kw)  # [4, 4, 1]
        # Bilinear terms padded to 3 per output (padding: qw * qw * 0), stored term-major so
        # that products.view(3, 10, B).sum(0) gives the 10 outputs.
        terms = [list(t) + [(_QW, _QW, 0.0)] * (3 - len(t)) for t in _bilinear_terms(p.inertia_kgm2)]
        rows = [terms[o][r] for r in range(3) for o in range(len(terms))]
        self._bil_i = torch.tensor([i for i, _, _ in rows], device=self.device)
        self._bil_k = torch.tensor([k for _, k, _ in rows], device=self.device)
        self._bil_c = torch.tensor([[c] for _, _, c in rows], **kw)
        self._e_z = torch.tensor([[0.0], [0.0], [1.0]], **kw)
        self._gravity = torch.tensor([[0.0], [0.0], [-p.gravity_mps2]], **kw)
        self._speed_min = float(p.rotor_speed_min)
        self._speed_max = float(p.rotor_speed_max)
        self._nominal = (self._thrust_to_accel, self._bil_c, self.inv_tau_rising, self.inv_tau_falling)
        self.per_drone = False
        """Whether :meth:`set_drone_parameters` gave each drone its own constants."""
        self._rk4 = torch.compile(self._rk4_step) if compile else self._rk4_step

    def set_drone_parameters(self, mass_kg: torch.Tensor, inertia_kgm2: torch.Tensor,
                             thrust_scale: torch.Tensor, motor_time_constant_rising_s: torch.Tensor,
                             motor_time_constant_falling_s: torch.Tensor) -> None:
        """Give each of B drones its own mass [B], inertia diagonal [B, 3], thrust-curve factor
        [B] and motor time constants [B] (domain randomisation); every later step takes batches
        of exactly B drones. The rotor geometry, torque constant and speed range stay the preset's.
        :meth:`clear_drone_parameters` goes back to the preset's scalars."""
        p = self.params
        f64 = dict(dtype=torch.float64, device=self.device)
        m = torch.as_tensor(mass_kg, **f64)
        j = torch.as_tensor(inertia_kgm2, **f64)
        ts = torch.as_tensor(thrust_scale, **f64)
        b = m.shape[0]
        if j.shape != (b, 3) or ts.shape != (b,) or not bool((m > 0).all() and (j > 0).all()):
            raise ValueError(f"drone parameters: mass [B] > 0, inertia [B, 3] > 0 and thrust_scale [B] "
                             f"expected; got shapes {tuple(m.shape)}, {tuple(j.shape)}, {tuple(ts.shape)}")
        jx, jy, jz = j.unbind(1)
        a = torch.empty(4, 4, b, **f64)
        for i, ((rx, ry, _), d) in enumerate(zip(p.rotor_positions_m, p.rotor_torque_directions)):
            a[0, i], a[1, i] = ts / m, ry * ts / jx
            a[2, i], a[3, i] = -rx * ts / jy, d * p.torque_constant_m * ts / jz
        kw = dict(device=self.device, dtype=self.dtype)
        bil_c = self._nominal[1].expand(-1, b).clone()
        # the gyroscopic terms (outputs 7, 8, 9; rows 7, 8, 9 hold the first term of each output)
        # carry the inertia ratios, as _bilinear_terms writes them
        for o, c in zip((7, 8, 9), ((jy - jz) / jx, (jz - jx) / jy, (jx - jy) / jz)):
            bil_c[o] = c.to(**kw)
        self._thrust_to_accel, self._bil_c = a.to(**kw), bil_c
        self.inv_tau_rising = (1.0 / torch.as_tensor(motor_time_constant_rising_s, **f64)).to(**kw).unsqueeze(0)
        self.inv_tau_falling = (1.0 / torch.as_tensor(motor_time_constant_falling_s, **f64)).to(**kw).unsqueeze(0)
        self.per_drone = True

    def clear_drone_parameters(self) -> None:
        """Back to the preset's constants for every drone."""
        self._thrust_to_accel, self._bil_c, self.inv_tau_rising, self.inv_tau_falling = self._nominal
        self.per_drone = False

    # ---- public API ---------------------------------------------------------------------------
    def action_to_rotor_speed(self, action: torch.Tensor) -> torch.Tensor:
        """Rotor-speed setpoint [B, 4] of actions [B, 4]: min + (clip(a, -1, 1) + 1) / 2 * (max - min)."""
        return rotor_speed_setpoint(action, self._speed_min, self._speed_max)

    def hover_state(self, batch: int, position=None) -> torch.Tensor:
        """[batch, 17] states: level, at rest, rotors at the preset's hover speed, at ``position``
        (world m, [3] or [batch, 3]; default the origin)."""
        s = torch.zeros(batch, STATE_DIM, device=self.device, dtype=self.dtype)
        s[:, QUAT.start] = 1.0
        s[:, ROTOR] = self.params.hover_rotor_speed
        if position is not None:
            s[:, POS] = torch.as_tensor(position, device=self.device, dtype=self.dtype)
        return s

    def state_derivative(self, state: torch.Tensor, setpoint: torch.Tensor) -> torch.Tensor:
        """d(state)/dt [B, 17] for states [B, 17] and rotor-speed setpoints [B, 4]."""
        return self._derivative_t(state.T.contiguous(), setpoint.T.contiguous()).T.contiguous()

    def _derivative_t(self, xt: torch.Tensor, setpoint_t: torch.Tensor) -> torch.Tensor:
        """d(state)/dt [17, B] for transposed states [17, B] and setpoints [4, B]."""
        speed = xt[ROTOR]
        thrust = rotor_thrust_n(speed, self._thrust_coefficients)
        accel = (self._thrust_to_accel * thrust.unsqueeze(0)).sum(1)  # [4, B]
        products = xt.index_select(0, self._bil_i) * xt.index_select(0, self._bil_k) * self._bil_c
        bil = products.view(3, -1, xt.shape[1]).sum(0)  # dq/dt (4), R e_z - e_z (3), gyro (3)
        return torch.cat((
            xt[VEL],
            bil[0:4],
            torch.addcmul(self._gravity, bil[4:7] + self._e_z, accel[0:1]),  # R e_z T/m - g e_z
            accel[1:4] + bil[7:10],
            rotor_speed_rate(speed, setpoint_t, self.inv_tau_rising, self.inv_tau_falling)))

    def step(self, state: torch.Tensor, action: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """Next states [B, 17] after one dt of RK4 under actions [B, 4] in [-1, 1].

        ``validate=False`` skips the shape/finiteness checks and dtype/device conversion (the hot
        loop, where the caller guarantees tensors of this model's dtype and device)."""
        if validate:
            check_array("state", state, (None, STATE_DIM), STATE_FIELDS)
            check_array("action", action, (state.shape[0], ACTION_DIM), ACTION_FIELDS)
            state = torch.as_tensor(state, device=self.device, dtype=self.dtype)
            action = torch.as_tensor(action, device=self.device, dtype=self.dtype)
            if self.per_drone and state.shape[0] != self._bil_c.shape[1]:
                raise ValueError(f"state has {state.shape[0]} drones but set_drone_parameters gave "
                                 f"constants for {self._bil_c.shape[1]}")
        return self._rk4(state, action)

    def _rk4_step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = state.T.contiguous()
        setpoint = self.action_to_rotor_speed(action).T.contiguous()
        dt = self.dt_s
        f = self._derivative_t
        k1 = f(x, setpoint)
        k2 = f(torch.add(x, k1, alpha=0.5 * dt), setpoint)
        acc = torch.add(k1, k2, alpha=2.0)
        k3 = f(torch.add(x, k2, alpha=0.5 * dt), setpoint)
        acc.add_(k3, alpha=2.0)
        k4 = f(torch.add(x, k3, alpha=dt), setpoint)
        acc.add_(k4)
        nxt = torch.add(x, acc, alpha=dt / 6.0)
        q = nxt[QUAT]
        nxt[QUAT] = q / torch.linalg.vector_norm(q, dim=0, keepdim=True)
        nxt[ROTOR] = nxt[ROTOR].clamp(self._speed_min, self._speed_max)
        return nxt.T.contiguous()
