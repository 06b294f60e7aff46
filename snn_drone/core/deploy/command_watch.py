"""Did the drone do what the ground asked: go up after a take-off, come down after a landing or an
emergency stop?

Those commands are single packets: cflib's radio link retries a packet a few times, its UDP link
(the SITL firmware) never, and the SITL firmware's 5-packet receive queue drops packets while its
FreeRTOS side stalls. Seen in SITL: a lost land left the drone hovering where the geofence sent it
home (30 s, at 1 m), a lost take-off left it on the floor. The bridge therefore watches the height
after each such command and sends it again while the drone has not moved its way: ``move_m`` from
its extreme point the other way since the command (a landing: below its highest point; a take-off:
above its lowest), or, coming down, on the floor. A drone still moving the other way when the
command came (a geofence trip during the take-off climbs on for ~0.7 s, 0.3 m) gets its confirm
time from where it turned, up to ``max_wait_s`` after the command. A repeated take-off or landing
re-plans from where the drone is; a repeated emergency stop is idempotent. Pure bookkeeping: the
bridge does the sending."""
from __future__ import annotations

from dataclasses import dataclass

FLOOR_M = 0.05
"""A drone this low has come down, whatever it did before."""
TURN_M = 0.01
"""A new extreme this far past the last one: the drone still moves the other way (not height noise)."""
UP, DOWN = ("takeoff",), ("land", "stop")


@dataclass(frozen=True)
class CommandWatchConfig:
    takeoff_confirm_s: float = 1.5
    """How long after a take-off (or its last repeat) the drone may take to rise: the planner's smooth
    2.5 s take-off to 1 m is 6 cm up after 0.5 s."""
    land_confirm_s: float = 1.5
    """The same for a landing: the smooth 3 s landing from 1 m is 2 cm down after 0.5 s, 20 cm after
    1 s; a firmware that stalled starts it late."""
    stop_confirm_s: float = 0.5
    """The same after an emergency stop (motors off: 5 cm of free fall take 0.1 s)."""
    move_m: float = 0.05
    """How far from its extreme point the other way counts as moving as asked."""
    max_wait_s: float = 3.0
    """The longest wait after a command, however long the drone moves the other way."""
    max_repeats: int = 3
    """Repeats before the watch gives up (and says so)."""

    def __post_init__(self):
        confirm = (self.takeoff_confirm_s, self.land_confirm_s, self.stop_confirm_s)
        if min(*confirm, self.move_m) <= 0 or self.max_repeats < 0 or self.max_wait_s < max(confirm):
            raise ValueError(f"command watch: the confirm times {confirm} and move_m {self.move_m} must be > 0, "
                             f"max_wait_s {self.max_wait_s} >= each confirm time and max_repeats "
                             f"{self.max_repeats} >= 0")

    def confirm_s(self, action: str) -> float:
        return {"takeoff": self.takeoff_confirm_s, "land": self.land_confirm_s}.get(action, self.stop_confirm_s)


class CommandWatch:
    def __init__(self, cfg: CommandWatchConfig | None = None):
        self.cfg = cfg or CommandWatchConfig()
        self.action: str | None = None
        """The command watched ('takeoff', 'land' or 'stop'); None: nothing watched."""
        self.repeats = 0

    def commanded(self, action: str, t_s: float, z_m: float | None) -> None:
        """The ground sent ``action`` at ``t_s``, the drone then at height ``z_m`` (None: unknown)."""
        if action not in UP + DOWN:
            raise ValueError(f"command watch: action {action!r}, expected one of {UP + DOWN}")
        self.action, self.repeats = action, 0
        self._restart(t_s, z_m)

    def _restart(self, t_s: float, z_m: float | None) -> None:
        self._sent_at = t_s
        self._due = t_s + self.cfg.confirm_s(self.action)
        # progress: height along the asked direction; the least since the command, and the last turn
        self._least = self._turn = None if z_m is None else self._progress(float(z_m))

    def _progress(self, z: float) -> float:
        return z if self.action in UP else -z

    def cancel(self) -> None:
        self.action = None

    def check(self, t_s: float, z_m: float | None) -> str | None:
        """The command to send again now, 'gave_up' once, or None."""
        if self.action is None or z_m is None:
            return None
        z = float(z_m)
        p = self._progress(z)
        if self._least is None:
            self._least = self._turn = p
        elif p < self._turn - TURN_M:  # still moving the other way: its time starts where it turns
            self._turn = p
            self._due = min(t_s + self.cfg.confirm_s(self.action), self._sent_at + self.cfg.max_wait_s)
        self._least = min(self._least, p)
        if p > self._least + self.cfg.move_m or (self.action in DOWN and z < FLOOR_M):
            self.action = None  # moving as asked: the firmware has it
            return None
        if t_s < self._due:
            return None
        if self.repeats >= self.cfg.max_repeats:
            self.action = None
            return "gave_up"
        self.repeats += 1
        self._restart(t_s, z)
        return self.action
