"""A pybullet world of n Crazyflies with the same parameters as the batched model.

Each drone is one multibody built in code (no URDF): the preset's mass and diagonal inertia, a
small box as collision shape, no damping. Every control step (``params.dt_s``) the world

1. turns the actions into rotor-speed setpoints and integrates the motor lag with the batched
   model's own motor functions (``rotor_speed_setpoint``, ``rotor_speed_rk4`` in dynamics.py);
2. applies each rotor's thrust (0, 0, T_i) at the rotor position in the drone's LINK_FRAME and the
   yaw reaction torque (0, 0, sum dir_i * torque_constant * T_i), T_i the RK4-weighted mean of
   the thrusts at the motor's four RK4 stage speeds (the thrust the batched RK4 integrates);
3. lets pybullet integrate the rigid body (gravity, contacts) with its own integrator.

``substeps`` (default 1) splits the control step into that many pybullet steps, with forces
recomputed each time from the motor lag integrated over the shorter interval: the error against
the batched RK4 model shrinks about in proportion, and so does the speed.

Positions: pybullet integrates positions with semi-implicit Euler (x += h * v_new), so its
positions run ahead of the trapezoid-rule integral of its own velocities by (h / 2)(v - v_reset),
an O(h) offset that does not grow with time. The world reports the trapezoid-rule position
(second order), ``x_pybullet - h / 2 * (v - v_at_reset)``; the body in pybullet (GUI, contacts)
keeps its own position, which differs by at most a few millimetres.
Measured over 1 s of commands hover_action + 0.01 N(0, 1) from hover at 1 m, 4 drones, float64
batched model as reference (test_pybullet_world.py): position error 0.15 mm (cf21_paper) and
0.03 mm (cf21_l2f2) with substeps=1, ten times less with substeps=10. Without the trapezoid
correction the raw pybullet positions are off by 18 / 10 mm (1 substep), 1.8 / 1.0 mm (10) and
0.37 / 0.20 mm (50): sub-millimetre raw agreement would cost ~50x the run time.

Drones do not collide with each other (collision filter groups), only with the ground plane: the
world is a batch of independent simulations like the batched model.
"""
from __future__ import annotations

import numpy as np
import pybullet as p

from .dynamics import ACTION_FIELDS, rotor_speed_rk4, rotor_speed_setpoint, rotor_thrust_n
from ..common.layout import ACTION_DIM, ANGVEL, POS, QUAT, ROTOR, STATE_DIM, STATE_FIELDS, VEL
from .params import QuadrotorParams
from ..common.validation import check_array

_DRONE_GROUP, _GROUND_GROUP = 2, 1
_BOX_HALF_EXTENTS_M = (0.046, 0.046, 0.015)  # motor-to-motor ~92 mm, ~30 mm tall


def _rotate(q_xyzw, v) -> tuple:
    """R(q) v for one quaternion (x, y, z, w) and one 3-vector, in plain floats (per drone, this is
    faster than numpy on tiny arrays): v + 2 w (u x v) + 2 u x (u x v), u = (x, y, z)."""
    x, y, z, w = q_xyzw
    vx, vy, vz = v
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    return (vx + w * tx + y * tz - z * ty,
            vy + w * ty + z * tx - x * tz,
            vz + w * tz + x * ty - y * tx)


class PybulletWorld:
    """n drones in one pybullet physics client (DIRECT, or GUI with ``gui=True``)."""

    def __init__(self, params: QuadrotorParams, n_drones: int, gui: bool = False,
                 ground: bool = True, substeps: int = 1):
        if int(n_drones) < 1:
            raise ValueError(f"n_drones must be >= 1, got {n_drones}")
        if int(substeps) < 1:
            raise ValueError(f"substeps must be >= 1, got {substeps}")
        self.params = params
        self.n_drones = int(n_drones)
        self.substeps = int(substeps)
        self.dt_s = float(params.dt_s)
        self._h_s = self.dt_s / self.substeps
        self._inv_tau = (1.0 / params.motor_time_constant_rising_s,
                         1.0 / params.motor_time_constant_falling_s)
        self._coeffs = tuple(float(c) for c in params.thrust_coefficients)
        self._rotor_pos = [list(map(float, r)) for r in params.rotor_positions_m]
        self._yaw_per_thrust = np.asarray(params.rotor_torque_directions) * params.torque_constant_m
        self._cid = p.connect(p.GUI if gui else p.DIRECT)
        if self._cid < 0:
            raise RuntimeError("pybullet could not connect (GUI needs a display)")
        cid = self._cid
        p.resetSimulation(physicsClientId=cid)
        p.setGravity(0.0, 0.0, -params.gravity_mps2, physicsClientId=cid)
        p.setPhysicsEngineParameter(fixedTimeStep=self._h_s, numSubSteps=1, physicsClientId=cid)
        self.ground_id = None
        if ground:
            plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=cid)
            self.ground_id = p.createMultiBody(0.0, plane, physicsClientId=cid)
            p.setCollisionFilterGroupMask(self.ground_id, -1, _GROUND_GROUP,
                                          _GROUND_GROUP | _DRONE_GROUP, physicsClientId=cid)
        box = p.createCollisionShape(p.GEOM_BOX, halfExtents=_BOX_HALF_EXTENTS_M, physicsClientId=cid)
        visual = -1
        if gui:
            visual = p.createVisualShape(p.GEOM_BOX, halfExtents=_BOX_HALF_EXTENTS_M,
                                         rgbaColor=[0.2, 0.4, 0.9, 1.0], physicsClientId=cid)
        self.body_ids = []
        for i in range(self.n_drones):
            b = p.createMultiBody(params.mass_kg, box, visual, basePosition=[0.0, 0.0, 1.0],
                                  physicsClientId=cid)
            p.changeDynamics(b, -1, localInertiaDiagonal=list(params.inertia_kgm2),
                             linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
            p.setCollisionFilterGroupMask(b, -1, _DRONE_GROUP, _GROUND_GROUP, physicsClientId=cid)
            self.body_ids.append(b)
        self._speed = np.zeros((self.n_drones, ACTION_DIM))
        self._vel_at_reset = np.zeros((self.n_drones, 3))

    # ---- state in and out ---------------------------------------------------------------------
    def reset(self, state: np.ndarray) -> None:
        """Place every drone at its state [n, 17] (position, orientation, world velocity, body
        rates, rotor speeds). The quaternion is normalised."""
        check_array("state", state, (self.n_drones, STATE_DIM), STATE_FIELDS)
        s = np.asarray(state, dtype=np.float64)
        q = s[:, QUAT] / np.linalg.norm(s[:, QUAT], axis=1, keepdims=True)
        for i, b in enumerate(self.body_ids):
            q_xyzw = (q[i, 1], q[i, 2], q[i, 3], q[i, 0])
            p.resetBasePositionAndOrientation(b, s[i, POS].tolist(), q_xyzw, physicsClientId=self._cid)
            p.resetBaseVelocity(b, s[i, VEL].tolist(), _rotate(q_xyzw, s[i, ANGVEL].tolist()),
                                physicsClientId=self._cid)
        self._speed = s[:, ROTOR].clip(self.params.rotor_speed_min, self.params.rotor_speed_max)
        self._vel_at_reset = s[:, VEL].copy()

    def get_state(self) -> np.ndarray:
        """The drones' states [n, 17] (float64) in the layout of layout.py."""
        out = np.empty((self.n_drones, STATE_DIM))
        for i, b in enumerate(self.body_ids):
            pos, q = p.getBasePositionAndOrientation(b, physicsClientId=self._cid)
            vel, omega = p.getBaseVelocity(b, physicsClientId=self._cid)
            out[i, 0:3] = pos
            out[i, 3] = q[3]
            out[i, 4:7] = q[0:3]
            out[i, 7:10] = vel
            out[i, 10:13] = _rotate((-q[0], -q[1], -q[2], q[3]), omega)  # world -> body rates
        out[:, POS] -= 0.5 * self._h_s * (out[:, VEL] - self._vel_at_reset)  # see module docstring
        out[:, ROTOR] = self._speed
        return out

    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply actions [n, 4] in [-1, 1] (clipped) for one control step; return the states."""
        check_array("action", action, (self.n_drones, ACTION_DIM), ACTION_FIELDS)
        prm = self.params
        setpoint = rotor_speed_setpoint(np.asarray(action, dtype=np.float64),
                                        prm.rotor_speed_min, prm.rotor_speed_max)
        cid, pos = self._cid, self._rotor_pos
        speed = self._speed
        for _ in range(self.substeps):
            speed_next, stages = rotor_speed_rk4(speed, setpoint, self._h_s, *self._inv_tau)
            t1, t2, t3, t4 = (rotor_thrust_n(s, self._coeffs) for s in stages)
            thrust = (t1 + 2.0 * (t2 + t3) + t4) * (1.0 / 6.0)
            yaw = thrust @ self._yaw_per_thrust
            thrust_l = thrust.tolist()
            for i, b in enumerate(self.body_ids):
                ti = thrust_l[i]
                for r in range(4):
                    p.applyExternalForce(b, -1, (0.0, 0.0, ti[r]), pos[r], p.LINK_FRAME,
                                         physicsClientId=cid)
                p.applyExternalTorque(b, -1, (0.0, 0.0, float(yaw[i])), p.LINK_FRAME,
                                      physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)
            speed = speed_next
        self._speed = speed.clip(prm.rotor_speed_min, prm.rotor_speed_max)
        return self.get_state()

    # ---- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._cid is not None and self._cid >= 0:
            try:
                p.disconnect(physicsClientId=self._cid)
            except p.error:
                pass
        self._cid = None

    def __enter__(self) -> "PybulletWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
