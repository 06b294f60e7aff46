"""Checkpoint files: atomic writes, and policy files (spiking actor or MLP policy) by kind.

Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the target (``os.replace`` is atomic on POSIX): a kill -9 at any moment leaves either the old
file or the new one, never a torn one.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..common.config import find_file, from_dict, to_dict
from .networks import MLPPolicy, MLPPolicyConfig
from ..snn.spiking_actor import SpikingActor, SpikingActorConfig, load_actor, save_actor

MLP_KIND = "snn_drone.MLPPolicy"
SNN_KIND = "snn_drone.SpikingActor"


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save ``obj`` to ``path`` atomically (tmp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_policy(path: str | os.PathLike, policy: torch.nn.Module, extra: dict | None = None) -> Path:
    """Save a spiking actor or an MLP policy with its config, so ``load_policy`` rebuilds it."""
    if isinstance(policy, SpikingActor):
        return save_actor(path, policy)
    if isinstance(policy, MLPPolicy):
        payload = {"kind": MLP_KIND, "config": to_dict(policy.cfg),
                   "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
                   **(extra or {})}
        return atomic_torch_save(payload, path)
    raise TypeError(f"cannot save a policy of type {type(policy).__name__}")


def load_policy(path: str | os.PathLike, map_location="cpu") -> torch.nn.Module:
    """Load a file written by ``save_policy`` (or ``save_actor``)."""
    path = find_file(path, "policy checkpoint")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    kind = payload.get("kind") if isinstance(payload, dict) else None
    if kind == MLP_KIND:
        policy = MLPPolicy(from_dict(MLPPolicyConfig, payload["config"], source=str(path)))
        policy.load_state_dict(payload["state_dict"])
        return policy
    if kind == SNN_KIND:
        return load_actor(path, map_location=map_location)
    raise ValueError(f"{path} is not a policy checkpoint (kind {kind!r}; expected {SNN_KIND!r} or {MLP_KIND!r})")


__all__ = ["atomic_torch_save", "save_policy", "load_policy", "SpikingActorConfig"]
