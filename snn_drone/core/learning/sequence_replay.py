"""Sequence replay: episodes sliced into fixed-length sequences, stored compactly, sampled time-major.

A stored sequence holds what was flown, not what is derived from it:

- ``state``        [T+1, 17]  states s_0 .. s_T (s_T is the state after the last action; for the
                              last step of an episode it is the final state before any reset),
- ``action``       [T, 4]     the executed actions (guide or SNN + noise),
- ``guide_action`` [T, 4]     what the guide commanded at each step (the BC target),
- ``history0``     [32, 4]    the 32 actions executed before s_0 (the privileged history at step 0),
- ``target``       [3]        the position target of the episode (world, m),
- ``terminated``   [T]        the episode ended at this step by a crash (no bootstrap),
- ``valid``        [T]        the step exists (an episode may end inside a sequence; the rest is padding),
- ``start_step``   []         the episode step of s_0.

Observations, privileged observations and rewards are recomputed at sampling time with the task's
one definition of each (``snn_drone.core.env.task``), so the curriculum's current coefficients score
old data too, and a recorded flight is training data exactly like a simulated rollout.

Sizes: with T = 100, one sequence takes ~10.8 kB in float32 (states dominate); with stride 50 each
transition sits in two sequences, so 2M unique transitions = 40,000 sequences = ~0.43 GB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..common import layout
from ..common.validation import check_array


@dataclass
class SequenceConfig:
    """How episodes are cut into training sequences (PAPER.md: 100 steps, stride 50, warm-up 50)."""

    length: int = 100
    """Steps per sequence (T)."""
    stride: int = 50
    """Steps between the starts of consecutive sequences of one episode."""
    warmup: int = 50
    """Leading steps of each sequence that only warm the SNN's hidden state (no actor loss)."""
    min_valid_after_warmup: int = 1
    """A later fragment (cut short by the episode's end, not starting at step 0) whose every step is
    already in the sequence before it is kept only if it has at least this many steps after the
    warm-up. Fragments are never dropped when that would lose a step: an episode's first sequence
    is always kept (an episode of 50 steps or fewer, an early crash, is one fragment from step 0 with
    its terminal transition), and so is any fragment holding a step no earlier sequence holds. The
    critic trains on every valid step; only the actor loss needs the warm-up."""
    capacity_transitions: int = 2_000_000
    """Replay capacity in unique transitions (= stored sequences x stride)."""

    def __post_init__(self):
        if not 0 < self.stride <= self.length:
            raise ValueError(f"sequence stride must be in (0, length={self.length}], got {self.stride}")
        if not 0 <= self.warmup < self.length:
            raise ValueError(f"warm-up must be in [0, length={self.length}), got {self.warmup}")

    @property
    def capacity_sequences(self) -> int:
        return max(1, self.capacity_transitions // self.stride)


class Sequences(NamedTuple):
    """A batch of stored sequences, batch-major (see the module docstring for the fields)."""

    state: torch.Tensor         # [N, T+1, 17]
    action: torch.Tensor        # [N, T, 4]
    guide_action: torch.Tensor  # [N, T, 4]
    history0: torch.Tensor      # [N, H, 4]
    target: torch.Tensor        # [N, 3]
    terminated: torch.Tensor    # [N, T] bool
    valid: torch.Tensor         # [N, T] bool
    start_step: torch.Tensor    # [N] long

    @property
    def n(self) -> int:
        return self.state.shape[0]

    def to(self, device) -> "Sequences":
        return Sequences(*(x.to(device) for x in self))

    def index(self, idx) -> "Sequences":
        return Sequences(*(x[idx] for x in self))

    @staticmethod
    def cat(parts: list["Sequences"]) -> "Sequences":
        return Sequences(*(torch.cat(xs) for xs in zip(*parts)))

    def validate(self, length: int) -> None:
        n = self.n
        check_array("sequences.state", self.state, (n, length + 1, layout.STATE_DIM), layout.STATE_FIELDS)
        check_array("sequences.action", self.action, (n, length, layout.ACTION_DIM))
        check_array("sequences.guide_action", self.guide_action, (n, length, layout.ACTION_DIM))
        check_array("sequences.history0", self.history0, (n, layout.ACTION_HISTORY, layout.ACTION_DIM))
        check_array("sequences.target", self.target, (n, 3))
        check_array("sequences.terminated", self.terminated, (n, length), finite=False)
        check_array("sequences.valid", self.valid, (n, length), finite=False)


def privileged_history(history0: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Action histories for every state of a sequence: [N, T+1, H, 4], oldest action first.

    The history at step t is the H actions executed before s_t: for t = 0 it is ``history0``; the
    action executed at step t enters the history of step t + 1.
    """
    h = history0.shape[1]
    all_actions = torch.cat([history0, action], dim=1)          # [N, H+T, 4]
    return all_actions.unfold(1, h, 1).transpose(-1, -2)       # [N, T+1, H, 4]


class SequenceReplay:
    """Ring buffer of sequences on one device, sampled uniformly."""

    def __init__(self, cfg: SequenceConfig | None = None, device="cpu"):
        self.cfg = cfg or SequenceConfig()
        self.device = torch.device(device)
        c, t = self.cfg.capacity_sequences, self.cfg.length
        h, a, s = layout.ACTION_HISTORY, layout.ACTION_DIM, layout.STATE_DIM
        kw = dict(device=self.device)
        self._data = Sequences(
            state=torch.zeros(c, t + 1, s, **kw),
            action=torch.zeros(c, t, a, **kw),
            guide_action=torch.zeros(c, t, a, **kw),
            history0=torch.zeros(c, h, a, **kw),
            target=torch.zeros(c, 3, **kw),
            terminated=torch.zeros(c, t, dtype=torch.bool, **kw),
            valid=torch.zeros(c, t, dtype=torch.bool, **kw),
            start_step=torch.zeros(c, dtype=torch.long, **kw),
        )
        self._next = 0
        self._size = 0
        self.total_added = 0

    def __len__(self) -> int:
        return self._size

    @property
    def transitions(self) -> int:
        """Valid steps currently stored (each counted once per sequence holding it)."""
        return int(self._data.valid[: self._size].sum())

    def nbytes(self) -> int:
        return sum(x.element_size() * x.nelement() for x in self._data)

    def add(self, seqs: Sequences) -> None:
        seqs.validate(self.cfg.length)
        n = seqs.n
        if n == 0:
            return
        cap = self.cfg.capacity_sequences
        if n > cap:  # keep the newest
            seqs, n = seqs.index(slice(n - cap, n)), cap
        idx = (torch.arange(n) + self._next) % cap
        idx = idx.to(self.device)
        for store, new in zip(self._data, seqs):
            store[idx] = new.to(self.device, store.dtype)
        self._next = (self._next + n) % cap
        self._size = min(self._size + n, cap)
        self.total_added += n

    def all(self) -> Sequences:
        return self._data.index(slice(0, self._size))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sequences:
        if self._size == 0:
            raise RuntimeError("cannot sample from an empty replay")
        idx = torch.randint(0, self._size, (n,), generator=generator, device="cpu").to(self.device)
        return self._data.index(idx)

    def state_dict(self) -> dict:
        return {"data": self.all()._asdict(), "next": self._next, "total_added": self.total_added}

    def load_state_dict(self, sd: dict) -> None:
        data = Sequences(**sd["data"])
        self._next, self._size = 0, 0
        self.add(data)
        self._next = sd["next"] % self.cfg.capacity_sequences
        self.total_added = sd["total_added"]


class EpisodeSlicer:
    """Cuts B concurrently flown episodes into sequences as they are flown.

    Call :meth:`record` once per control step with the batch of all B drones. A sequence is
    emitted as soon as it is complete (its last step recorded), and an episode's unfinished
    sequences are emitted, padded and masked, when the episode ends. Drones end and restart
    their episodes independently.
    """

    def __init__(self, num_drones: int, max_episode_steps: int, cfg: SequenceConfig | None = None,
                 device="cpu"):
        self.cfg = cfg or SequenceConfig()
        self.b, self.max_steps = num_drones, max_episode_steps
        dev = self.device = torch.device(device)
        b, L = num_drones, max_episode_steps
        n_starts = (L + self.cfg.stride - 1) // self.cfg.stride
        self._state = torch.zeros(b, L + 1, layout.STATE_DIM, device=dev)
        self._action = torch.zeros(b, L, layout.ACTION_DIM, device=dev)
        self._guide = torch.zeros(b, L, layout.ACTION_DIM, device=dev)
        self._hist = torch.zeros(b, n_starts, layout.ACTION_HISTORY, layout.ACTION_DIM, device=dev)
        self._target = torch.zeros(b, 3, device=dev)
        self._steps = torch.zeros(b, dtype=torch.long, device=dev)
        self._arange_b = torch.arange(b, device=dev)

    def record(self, state: torch.Tensor, action: torch.Tensor, guide_action: torch.Tensor,
               next_state: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
               action_history: torch.Tensor, target: torch.Tensor) -> Sequences | None:
        """Record step t of every drone; return the sequences this step completed (or None).

        ``state`` is s_t, ``next_state`` is s_{t+1} (for a finished drone: its final state, not
        the reset state), ``action_history`` is the privileged history at s_t [B, 32, 4],
        ``terminated``/``truncated`` say whether the drone's episode ended with this step.
        """
        T, S = self.cfg.length, self.cfg.stride
        t = self._steps
        b = self._arange_b
        if (t >= self.max_steps).any():
            raise RuntimeError(f"an episode ran past max_episode_steps={self.max_steps} without being ended")
        self._state[b, t] = state
        self._state[b, t + 1] = next_state
        self._action[b, t] = action
        self._guide[b, t] = guide_action
        at_start = t % S == 0
        if at_start.any():
            rows = b[at_start]
            self._hist[rows, t[at_start] // S] = action_history[at_start]
        self._target.copy_(target)
        t = self._steps = t + 1
        done = terminated | truncated

        out: list[Sequences] = []
        full = (t >= T) & ((t - T) % S == 0)
        if full.any():
            rows = b[full]
            out.append(self._cut(rows, t[full] - T, t[full], terminated[full]))
        if done.any():
            for row in b[done].tolist():
                L = int(t[row])
                # starts whose sequence was not complete before the end; complete ones were emitted above
                first = max(0, (L - T) // S + 1) * S if L >= T else 0
                for s in range(first, L, S):
                    if self._keep_fragment(s, L):
                        r = torch.tensor([row], device=self.device)
                        out.append(self._cut(r, torch.tensor([s], device=self.device),
                                             torch.tensor([L], device=self.device), terminated[row:row + 1]))
            self._steps = torch.where(done, torch.zeros_like(t), t)
        return Sequences.cat(out) if out else None

    def _keep_fragment(self, start: int, end: int) -> bool:
        """Keep the fragment [start, end) of an ended episode? Always when it starts the episode or
        holds a step the sequence before it ([start - stride, start - stride + length)) lacks;
        otherwise only if it has ``min_valid_after_warmup`` steps after the warm-up for the actor."""
        cfg = self.cfg
        if start == 0 or end > start - cfg.stride + cfg.length:
            return True
        return cfg.min_valid_after_warmup > 0 and end - start - cfg.warmup >= cfg.min_valid_after_warmup

    def _cut(self, rows: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
             ended_by_crash: torch.Tensor) -> Sequences:
        """Sequences [start, start+T) of ``rows`` whose episodes have ``end`` recorded steps."""
        T, S = self.cfg.length, self.cfg.stride
        n = rows.numel()
        steps = start[:, None] + torch.arange(T + 1, device=self.device)[None]        # [n, T+1]
        state_idx = torch.minimum(steps, end[:, None])                                # pad with the last state
        act_idx = torch.minimum(steps[:, :T], (end - 1)[:, None])
        valid = steps[:, :T] < end[:, None]
        terminated = (steps[:, :T] == (end - 1)[:, None]) & ended_by_crash[:, None]
        r = rows[:, None]
        action = torch.where(valid[..., None], self._action[r, act_idx], 0.0)
        guide = torch.where(valid[..., None], self._guide[r, act_idx], 0.0)
        return Sequences(
            state=self._state[r, state_idx].clone(),
            action=action,
            guide_action=guide,
            history0=self._hist[rows, start // S].clone(),
            target=self._target[rows].clone(),
            terminated=terminated,
            valid=valid,
            start_step=start.clone(),
        )
