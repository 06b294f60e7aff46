"""A simulated Crazyflie flight: on the ground, take-off, policy, landing and stop (the sim backend
of fly_real).

On hardware the Crazyflie's high-level commander flies take-off and landing with the stock
controller and the policy gets the motors in between (snn_drone/nodes/crazyflie_bridge.py). Here
the geometric controller (core/sim/controller.py) stands in for the stock controller and flies the same
smooth set-point ramps, on the same dynamics model as training (core/sim/dynamics.py). Phases:

- ``ground``: at rest on the ground, motors off (action -1);
- ``takeoff``: the controller follows a ramp from the ground to the target in ``takeoff_duration_s``
  (from wherever the drone sits, e.g. after a stop), holds it for ``settle_s``, then the policy
  takes over at the target;
  then the policy takes over (``policy_after_takeoff``) or the controller holds the target;
- ``policy``: the newest policy command flies; ``episode_step`` counts from 0 at the hand-over
  (the jump-start node's guide warm-up and the actor's reset key on it, as on hardware; it is 0
  in every other phase);
- ``landing``: the controller follows a ramp down to the ground below the drone; below
  ``landed_height_m`` the motors stop and the phase is ``ground``;
- ``stopped``: emergency stop, motors off until the drone rests on the ground (then ``ground``).

The ground is a plane at z = 0 with full friction: a drone at or below it is put on it at rest,
level (a crude contact model, enough to sit, take off and land).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common import layout
from ..env import task
from ..sim.controller import GeometricController
from ..sim.dynamics import QuadrotorDynamics
from ..sim.params import QuadrotorParams

PHASES = ("ground", "takeoff", "policy", "landing", "stopped")
AIRBORNE = ("takeoff", "policy", "landing")


@dataclass
class FlightConfig:
    """Take-off and landing of the simulated Crazyflie."""

    takeoff_duration_s: float = 2.5
    """Time of the take-off ramp from the ground to the target (the bridge's default) [s]."""
    land_duration_s: float = 3.0
    """Time of the landing ramp from the current position to the ground [s]."""
    landed_height_m: float = 0.03
    """Below this height (world z) a landing ends: motors off [m]."""
    settle_s: float = 1.0
    """The controller holds the target this long after the take-off ramp (the drone lags the ramp) [s]."""
    policy_after_takeoff: bool = True
    """Hand the motors to the policy after the ramp and the settling time (else the controller holds)."""

    def __post_init__(self):
        for name in ("takeoff_duration_s", "land_duration_s", "landed_height_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)}, expected > 0")
        if not self.settle_s >= 0:
            raise ValueError(f"settle_s = {self.settle_s}, expected >= 0")


def smooth_ramp(start: torch.Tensor, end: torch.Tensor, elapsed_s: float, duration_s: float) -> torch.Tensor:
    """Point between ``start`` and ``end`` with a smoothstep profile (zero speed at both ends)."""
    u = min(1.0, max(0.0, elapsed_s / duration_s))
    return start + (end - start) * (3 * u * u - 2 * u * u * u)


class FlightSim:
    """B drones flown together through the phases of the module docstring (B = 1 for fly_real)."""

    def __init__(self, num_drones: int, params: QuadrotorParams, task_cfg: task.TaskConfig,
                 cfg: FlightConfig | None = None, start_position_m=None):
        self.params, self.task_cfg, self.cfg = params, task_cfg, cfg or FlightConfig()
        self.b = num_drones
        self.dynamics = QuadrotorDynamics(params)
        self.controller = GeometricController(params).requires_grad_(False)
        self.target = torch.tensor(task_cfg.target_position_m, dtype=torch.float32)
        start = self.target.clone() if start_position_m is None else torch.as_tensor(start_position_m, dtype=torch.float32)
        start = start.expand(num_drones, 3).clone()
        start[:, 2] = 0.0
        self.state = self.dynamics.hover_state(num_drones, start)
        self.state[:, layout.ROTOR] = params.rotor_speed_min
        self.history = task.initial_action_history(self.state, params, task_cfg)
        self.phase = "ground"
        self.episode_step = 0
        self.time_s = 0.0
        self._phase_start_s = 0.0
        self._ramp: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self.events: list[tuple[float, str]] = []
        """(sim time, text) of every phase change."""

    # ---- commands ---------------------------------------------------------------------------
    def _enter(self, phase: str, why: str) -> None:
        self.phase, self._phase_start_s = phase, self.time_s
        if phase != "policy":
            self.episode_step = 0  # counts policy steps only
        self.events.append((self.time_s, f"{phase} ({why})"))

    def takeoff(self) -> str:
        """Start the take-off ramp (only from the ground); returns what happened."""
        if self.phase != "ground":
            return f"take-off refused: the drone is in phase {self.phase}, expected ground"
        pos = self.state[:, layout.POS].clone()
        self._ramp = (pos, self.target.expand(self.b, 3).clone(), self.cfg.takeoff_duration_s)
        self._enter("takeoff", "take-off")
        return f"take-off to {float(self.target[2]):.2f} m in {self.cfg.takeoff_duration_s} s"

    def start_policy(self, why: str = "start_policy") -> str:
        if self.phase not in ("takeoff", "policy"):
            return f"policy refused: the drone is in phase {self.phase}, expected airborne"
        self.episode_step = 0
        self._enter("policy", why)
        return "policy flies (episode restarts)"

    def land(self, why: str = "land") -> str:
        if self.phase not in ("takeoff", "policy"):
            return f"landing ignored: the drone is in phase {self.phase}"
        pos = self.state[:, layout.POS].clone()
        ground = torch.cat([pos[:, :2], torch.full((self.b, 1), -0.1)], dim=1)
        self._ramp = (pos, ground, self.cfg.land_duration_s)
        self._enter("landing", why)
        return f"landing in {self.cfg.land_duration_s} s"

    def stop(self, why: str = "emergency_stop") -> str:
        if self.phase in ("ground", "stopped"):
            return f"stop ignored: the drone is in phase {self.phase}"
        self._enter("stopped", why)
        return "motors stopped"

    # ---- the step ---------------------------------------------------------------------------
    def setpoint(self) -> torch.Tensor:
        """The controller's set-point now [B, 3] (world m)."""
        if self._ramp is None:
            return self.target.expand(self.b, 3)
        start, end, duration = self._ramp
        return smooth_ramp(start, end, self.time_s - self._phase_start_s, duration)

    @torch.no_grad()
    def controller_action(self) -> torch.Tensor:
        obs = task.observation(self.state, self.setpoint())
        return self.controller(task.privileged_observation(obs, self.history))

    def step(self, policy_action: torch.Tensor | None) -> torch.Tensor:
        """One control step; ``policy_action`` [B, 4] (the newest motor_cmd) flies in phase policy
        (None: motors off). Returns the applied action [B, 4]."""
        off = torch.full((self.b, layout.ACTION_DIM), -1.0)
        if self.phase == "policy":
            action = off if policy_action is None else policy_action.float().clamp(-1.0, 1.0)
        elif self.phase in ("takeoff", "landing"):
            action = self.controller_action()
        else:
            action = off
        if self.phase == "ground" and bool((self.state[:, 2] <= 0.0).all()):
            nxt = self.state.clone()  # resting: rotors spin down, nothing moves
            nxt[:, layout.ROTOR] = self.params.rotor_speed_min
        else:
            nxt = self.dynamics.step(self.state, action)
        self._ground_contact(nxt)
        self.state = nxt
        self.history = torch.cat([self.history[:, 1:], action[:, None]], dim=1)
        self.time_s += self.params.dt_s
        if self.phase == "policy":
            self.episode_step += 1
        self._advance()
        return action

    def _ground_contact(self, s: torch.Tensor) -> None:
        below = s[:, 2] <= 0.0
        if not bool(below.any()):
            return
        s[below, 2] = 0.0
        s[below, layout.VEL.start:layout.ANGVEL.stop] = 0.0
        level = torch.zeros(int(below.sum()), 4)
        level[:, 0] = 1.0
        s[below, layout.QUAT] = level

    def _advance(self) -> None:
        elapsed = self.time_s - self._phase_start_s
        z = self.state[:, 2]
        if self.phase == "takeoff" and elapsed >= self.cfg.takeoff_duration_s:
            if self.cfg.policy_after_takeoff and elapsed >= self.cfg.takeoff_duration_s + self.cfg.settle_s:
                self.start_policy("take-off done")
            else:
                self._ramp = None
        elif self.phase == "landing" and bool((z < self.cfg.landed_height_m).all()):
            self._enter("ground", "landed")
            self._ramp = None
        elif self.phase == "stopped" and bool((z <= 0.0).all()):
            self._enter("ground", "came to rest after the stop")
            self._ramp = None

    def disturb(self, linear_mps=None, angular_radps=None) -> None:
        """Add a velocity kick (world m/s) and a body-rate kick (rad/s): a gust or a collision."""
        if linear_mps is not None:
            self.state[:, layout.VEL] += torch.as_tensor(linear_mps, dtype=torch.float32)
        if angular_radps is not None:
            self.state[:, layout.ANGVEL] += torch.as_tensor(angular_radps, dtype=torch.float32)
