"""Surrogate-gradient slope schedules (PAPER.md "Slope schedules"): fixed, interval and adaptive.

The slope k of the fast-sigmoid surrogate (Eq. 5, dS/dx = 1 / (1 + k|x|)^2) sets how wide the
spike gradient is: small k = shallow = wide. A schedule is told the evaluation return after each
evaluation and answers with the slope to train with until the next one:

    schedule = make_slope_schedule(parse_slope_spec("adaptive"))
    actor.set_slope(schedule.k)                   # before the first evaluation
    ...
    actor.set_slope(schedule.update(eval_return))  # after every evaluation

The only clock is the number of `update` calls (evaluations), so a schedule is independent of how
often the trainer evaluates. `state_dict()` / `load_state_dict()` hold everything the schedule
remembers, so a resumed training continues it exactly.

Kinds:
- fixed: k never changes.
- interval: k climbs geometrically from `k_start` to `k_end` in `interval_steps` equal ratio steps,
  one step every `interval_every` evaluations (defaults: 1 -> 100 in 5 steps of x2.512 every 100
  evaluations, so 1, 2.51, 6.31, 15.8, 39.8, 100, held from evaluation 500 on: shallow while the
  policy learns to fly, steep for the second half of a 1000-epoch run). An explicit
  `interval_timetable` of (evaluation count, k) pairs replaces the geometric steps.
- adaptive: Eq. 7 as the paper writes it,
      k_t = (1/10) sum_{i=0..9} [0.5 r_{t-i} + 0.5 r'_{t-i}],  clamped to [k_min, k_max] = [1, 100],
  r_t the low-passed normalised evaluation return, r'_t = r_t - r_{t-1} its first difference per
  evaluation (r'_0 = 0). See `SlopeScheduleConfig` for the normalisation and filter constants.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

SLOPE_SPEC_HELP = "fixed:K (a number K > 0, e.g. fixed:2), interval or adaptive"


@dataclass
class SlopeScheduleConfig:
    """Which slope schedule trains the spiking actor, and its constants."""

    kind: Literal["fixed", "interval", "adaptive"] = "adaptive"
    """fixed: k stays `k`; interval: k_start -> k_end on a timetable; adaptive: Eq. 7 on the
    evaluation returns (the paper's method)."""

    k: float = 2.0
    """Slope of the fixed schedule (paper's best fixed slope: 2)."""

    k_min: float = 1.0
    """Smallest slope any schedule gives (paper: 1). Adaptive clamps to it."""

    k_max: float = 100.0
    """Largest slope any schedule gives (paper: 100). Adaptive clamps to it."""

    k_start: float = 1.0
    """Interval: slope before the first step of the timetable (paper: 1)."""

    k_end: float = 100.0
    """Interval: slope after the last step of the timetable (paper: 100)."""

    interval_every: int = 100
    """Interval: evaluations between two geometric steps."""

    interval_steps: int = 5
    """Interval: number of equal-ratio steps from k_start to k_end (ratio (k_end/k_start)^(1/steps))."""

    interval_timetable: tuple[tuple[int, float], ...] = ()
    """Interval: explicit timetable replacing the geometric steps: (evaluation count n, k) pairs,
    n strictly increasing; after n evaluations the slope is that k (k_start before the first n)."""

    k_init: float = 2.0
    """Adaptive: slope before the first evaluation (paper: start k = 2). The 10-term window of
    Eq. 7 starts filled with this value, so k moves smoothly away from it as evaluations come in."""

    window: int = 10
    """Adaptive: number of evaluations Eq. 7 averages over (paper: 10)."""

    return_offset: float = 0.0
    """Adaptive: normalised score r = (return - return_offset) / return_scale."""

    return_scale: float = 2.5
    """Adaptive: normalised score r = (return - return_offset) / return_scale.

    The paper does not say how r is normalised (its code divides by 400 and then never uses
    Eq. 7; with /400, 0.5 r stays below 0.63 for returns up to 500 and the clamp pins k at 1 for
    ever). On a reward plateau r' = 0 and Eq. 7 gives k = 0.5 r, so a slope range [1, 100] needs r
    to span [2, 200]. A 500-step episode scores at most 500 (C_rs = 1 per step, every penalty >= 0),
    so r = return / 2.5 maps a perfect episode to k = 100 and returns in [5, 500] linearly onto
    [1, 100] (k = return / 5 on a plateau: ~80 for the paper's ~400). Returns at or below 5
    (crashing, negative-reward policies, down to about -500) give k = 1, the shallowest slope, which
    is where the paper finds RL learns fastest; rising returns add 0.5 r' and steepen k sooner,
    a collapse makes r' negative and flattens it."""

    lowpass_alpha: float = 0.8
    """Adaptive: first-order low-pass of the normalised score, r_t = a r_{t-1} + (1 - a) x_t
    (r_0 = x_0); time constant ~1/(1 - a) = 5 evaluations. 0 disables filtering."""

    def __post_init__(self):
        def finite(name):
            v = getattr(self, name)
            if not math.isfinite(v):
                raise ValueError(f"slope schedule {name}={v!r} must be finite")
        for name in ("k", "k_min", "k_max", "k_start", "k_end", "k_init", "return_offset",
                     "return_scale", "lowpass_alpha"):
            finite(name)
        if self.kind not in ("fixed", "interval", "adaptive"):
            raise ValueError(f"slope schedule kind={self.kind!r}, expected fixed, interval or adaptive")
        if not 0 < self.k_min <= self.k_max:
            raise ValueError(f"slope bounds k_min={self.k_min}, k_max={self.k_max}: "
                             f"expected 0 < k_min <= k_max")
        for name in ("k", "k_start", "k_end", "k_init"):
            v = getattr(self, name)
            if not self.k_min <= v <= self.k_max:
                raise ValueError(f"slope schedule {name}={v} outside [k_min, k_max] = "
                                 f"[{self.k_min}, {self.k_max}]")
        if self.interval_every < 1 or self.interval_steps < 1:
            raise ValueError(f"interval_every={self.interval_every} and interval_steps="
                             f"{self.interval_steps} must both be >= 1")
        prev = 0
        for i, entry in enumerate(self.interval_timetable):
            if len(entry) != 2:
                raise ValueError(f"interval_timetable[{i}]={entry!r}: expected (evaluation count, k)")
            n, k = entry
            if int(n) != n or n <= prev:
                raise ValueError(f"interval_timetable[{i}] evaluation count {n!r} must be an integer "
                                 f"greater than the previous one ({prev})")
            if not (math.isfinite(k) and self.k_min <= k <= self.k_max):
                raise ValueError(f"interval_timetable[{i}] slope {k!r} outside [k_min, k_max] = "
                                 f"[{self.k_min}, {self.k_max}]")
            prev = n
        if self.window < 1:
            raise ValueError(f"adaptive window={self.window} must be >= 1")
        if self.return_scale <= 0:
            raise ValueError(f"adaptive return_scale={self.return_scale} must be > 0")
        if not 0 <= self.lowpass_alpha < 1:
            raise ValueError(f"adaptive lowpass_alpha={self.lowpass_alpha} must be in [0, 1)")


class SlopeSchedule:
    """Base: the current slope `k`, `update(eval_return) -> k`, and its state for checkpoints."""

    kind: str = ""

    def __init__(self, cfg: SlopeScheduleConfig):
        self.cfg = cfg
        self.n_updates = 0
        self._k = self._initial_k()

    @property
    def k(self) -> float:
        """The slope to train with now."""
        return self._k

    def update(self, eval_return: float) -> float:
        """Record the return of the evaluation just finished; return the slope to use from now on."""
        eval_return = float(eval_return)
        if not math.isfinite(eval_return):
            raise ValueError(f"slope schedule update: evaluation return {eval_return!r} is not finite")
        self.n_updates += 1
        self._k = float(self._next_k(eval_return))
        return self._k

    def state_dict(self) -> dict:
        return {"kind": self.kind, "n_updates": self.n_updates, "k": self._k, **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"slope schedule state is for kind {state.get('kind')!r}, "
                             f"this schedule is {self.kind!r}")
        self.n_updates = int(state["n_updates"])
        self._k = float(state["k"])
        self._load_extra_state(state)

    # subclass hooks
    def _initial_k(self) -> float:
        raise NotImplementedError

    def _next_k(self, eval_return: float) -> float:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


class FixedSlope(SlopeSchedule):
    kind = "fixed"

    def _initial_k(self):
        return self.cfg.k

    def _next_k(self, eval_return):
        return self.cfg.k


class IntervalSlope(SlopeSchedule):
    """Steeper on a fixed timetable of evaluation counts, independent of the returns."""

    kind = "interval"

    def slope_after(self, n_evaluations: int) -> float:
        """The slope after `n_evaluations` updates."""
        c = self.cfg
        if c.interval_timetable:
            k = c.k_start
            for n, k_n in c.interval_timetable:
                if n_evaluations >= n:
                    k = k_n
            return float(k)
        step = min(n_evaluations // c.interval_every, c.interval_steps)
        if step == c.interval_steps:
            return float(c.k_end)   # exact end value, no rounding from the power
        return c.k_start * (c.k_end / c.k_start) ** (step / c.interval_steps)

    def _initial_k(self):
        return self.slope_after(0)

    def _next_k(self, eval_return):
        return self.slope_after(self.n_updates)


class AdaptiveSlope(SlopeSchedule):
    """Eq. 7: mean over the last `window` evaluations of 0.5 r + 0.5 r', clamped to [k_min, k_max]."""

    kind = "adaptive"

    def _initial_k(self):
        self.filtered: float | None = None          # r_{t-1}, None before the first evaluation
        self.terms = [self.cfg.k_init] * self.cfg.window   # last `window` values of 0.5 r + 0.5 r'
        return self.cfg.k_init

    def _next_k(self, eval_return):
        c = self.cfg
        x = (eval_return - c.return_offset) / c.return_scale
        if self.filtered is None:
            r, dr = x, 0.0
        else:
            r = c.lowpass_alpha * self.filtered + (1.0 - c.lowpass_alpha) * x
            dr = r - self.filtered
        self.filtered = r
        self.terms = self.terms[1:] + [0.5 * r + 0.5 * dr]
        return min(max(sum(self.terms) / len(self.terms), c.k_min), c.k_max)

    def _extra_state(self):
        return {"filtered": self.filtered, "terms": list(self.terms)}

    def _load_extra_state(self, state):
        terms = [float(t) for t in state["terms"]]
        if len(terms) != self.cfg.window:
            raise ValueError(f"adaptive slope state holds {len(terms)} window terms, "
                             f"config window is {self.cfg.window}")
        self.terms = terms
        self.filtered = None if state["filtered"] is None else float(state["filtered"])


_KINDS = {cls.kind: cls for cls in (FixedSlope, IntervalSlope, AdaptiveSlope)}


def make_slope_schedule(cfg: SlopeScheduleConfig) -> SlopeSchedule:
    """The schedule named by `cfg.kind`."""
    return _KINDS[cfg.kind](cfg)


def parse_slope_spec(spec: str, base: SlopeScheduleConfig | None = None) -> SlopeScheduleConfig:
    """CLI spelling -> config: 'fixed:K', 'interval' or 'adaptive'. Other fields come from `base`
    (for example a YAML-loaded config), or the defaults. A fixed K outside [k_min, k_max] widens
    those bounds to include it (a fixed slope is an experiment's explicit choice)."""
    base = base or SlopeScheduleConfig()
    text = spec.strip().lower() if isinstance(spec, str) else spec
    if text in ("interval", "adaptive"):
        return dataclasses.replace(base, kind=text)
    if isinstance(text, str) and text.startswith("fixed:"):
        value = text[len("fixed:"):]
        try:
            k = float(value)
        except ValueError:
            raise ValueError(f"slope spec {spec!r}: {value!r} is not a number; expected "
                             f"{SLOPE_SPEC_HELP}") from None
        if not math.isfinite(k) or k <= 0:
            raise ValueError(f"slope spec {spec!r}: slope {value} must be a finite number > 0")
        bounds = dict(k_min=min(base.k_min, k), k_max=max(base.k_max, k))
        return dataclasses.replace(base, kind="fixed", k=k, **bounds)
    raise ValueError(f"slope spec {spec!r} not understood; expected {SLOPE_SPEC_HELP}")
