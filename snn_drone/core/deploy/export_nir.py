"""The spiking actor as a Neuromorphic Intermediate Representation graph (the ``nir`` package, an
HDF5 file that neuromorphic toolchains read: Lava/Loihi, SpiNNaker2, Xylo, snnTorch, Norse, ...).

Mapping (exact, with the subtract reset kept):

    input [obs_dim]
      -> fc{l}            nir.Affine(W [out, in], b)
      -> lif{l}_membrane  nir.LI(tau, r, v_leak = 0)          leaky integrator, no reset of its own
      -> lif{l}_spike     nir.Threshold(U_thr)                 spike = 1 if v > U_thr
      -> lif{l}_reset     nir.Scale(-U_thr)  -> lif{l}_membrane  soft reset as a feedback current
      -> ... -> readout   nir.Affine -> output [action_dim]    (tanh not included: see below)

Why not ``nir.LIF``: NIR's LIF resets the membrane *to* ``v_reset`` in the step it fires (a hard
reset). The actor's neuron (paper Eq. 4, snntorch ``Leaky(reset_mechanism="subtract")``) subtracts
the threshold one step later: ``U[t+1] = beta U[t] + I[t+1] - U_thr s[t]``. snntorch's own exporter
writes its subtract-reset Leaky as ``nir.LIF`` with ``v_reset = 0`` and its importer reads that
back as a reset-to-zero neuron, so that route changes the network. Here the leaky integration is
an ``LI`` node, the spike a ``Threshold`` node, and the reset a ``Scale(-U_thr)`` edge from the
spikes back into the membrane: the cycle carries last step's spikes, which is exactly the delayed
subtract reset (a discrete-time NIR simulator evaluates a cycle with a one-step delay, as for
snntorch's RLeaky export).

Time constants (forward-Euler convention of snntorch's NIR import/export, with the real control
period ``dt`` = 0.01 s instead of snntorch's placeholder 1e-4): ``tau = dt / (1 - beta)`` [s] and
``r = tau / dt = 1 / (1 - beta)``, so one Euler step ``v += dt/tau (v_leak - v + r I)`` is
``v = beta v + I``. beta is clamped to [0, 1] first (as in the forward pass); beta = 1 gives
tau = r = inf (a pure integrator). Each LI node's metadata also carries the discrete ``beta``, for
consumers that discretise exactly (exp(-dt/tau)) and would otherwise get another decay.

The readout's tanh has no NIR primitive: the graph outputs the readout's pre-activation and the
graph metadata says ``output_activation: tanh``; apply it on the host (the motor commands are
``tanh(output)`` in [-1, 1]).
"""
from __future__ import annotations

import os
from pathlib import Path

import nir
import numpy as np

from ..common import layout
from ..snn.spiking_actor import SpikingActor


def _f32(t) -> np.ndarray:
    return t.detach().to("cpu").float().numpy().copy()


def actor_to_nir(actor: SpikingActor, dt_s: float = 0.01, source: str = "a SpikingActor") -> nir.NIRGraph:
    """The NIR graph of ``actor`` (see the module docstring for the mapping)."""
    if not isinstance(actor, SpikingActor):
        raise TypeError(f"NIR export needs a spiking actor (snn_drone.SpikingActor), got {type(actor).__name__}")
    dt_s = float(dt_s)
    if not (np.isfinite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s = {dt_s!r}: the control period must be a finite number of seconds > 0")
    cfg = actor.cfg
    nodes = {"input": nir.Input(input_type={"input": np.array([cfg.obs_dim])})}
    edges = [("input", "fc0")]
    for l, (fc, lif) in enumerate(zip(actor.fc, actor.lif)):
        beta = _f32(lif.beta.clamp(0, 1))
        thr = _f32(lif.threshold)
        for name, a in (("weight", _f32(fc.weight)), ("bias", _f32(fc.bias)), ("beta", beta), ("threshold", thr)):
            if not np.isfinite(a).all():
                raise ValueError(f"cannot export layer {l} {name}: it holds non-finite values")
        with np.errstate(divide="ignore"):
            leak = 1.0 - beta.astype(np.float64)
            tau = dt_s / leak
            r = 1.0 / leak
        mem, spk, rst = f"lif{l}_membrane", f"lif{l}_spike", f"lif{l}_reset"
        nodes[f"fc{l}"] = nir.Affine(weight=_f32(fc.weight), bias=_f32(fc.bias))
        nodes[mem] = nir.LI(tau=tau, r=r, v_leak=np.zeros_like(tau),
                            metadata={"beta": beta, "dt": dt_s,
                                      "discretisation": "v = beta v + I (forward Euler, beta = 1 - dt/tau)"})
        nodes[spk] = nir.Threshold(threshold=thr)
        nodes[rst] = nir.Scale(scale=-thr, metadata={"role": "subtract reset: feeds last step's spikes "
                                                             "times -U_thr back into the membrane"})
        nxt = f"fc{l + 1}" if l + 1 < len(actor.lif) else "readout"
        edges += [(f"fc{l}", mem), (mem, spk), (spk, rst), (rst, mem), (spk, nxt)]
    nodes["readout"] = nir.Affine(weight=_f32(actor.readout.weight), bias=_f32(actor.readout.bias))
    nodes["output"] = nir.Output(output_type={"output": np.array([cfg.action_dim])})
    edges.append(("readout", "output"))
    obs = " ".join(f"{f.name}{f.size}[{f.unit}, {f.frame}]" for f in layout.OBS_FIELDS)
    metadata = {
        "source": source,
        "model": "snn_drone.SpikingActor",
        "dt": dt_s,
        "reset": "subtract, one step delayed (lif*_reset Scale(-threshold) feedback)",
        "output_activation": "tanh",
        "observation_layout": obs if cfg.obs_dim == layout.OBS_DIM else f"{cfg.obs_dim} values",
        "action": "motor commands tanh(output) in [-1, 1]; rpm_des = (a + 1) / 2 * max_rpm",
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def export_nir(actor: SpikingActor, path: str | os.PathLike, dt_s: float = 0.01,
               source: str = "a SpikingActor") -> Path:
    """Write ``actor`` as a NIR file (HDF5) at ``path``, atomically; returns the path."""
    graph = actor_to_nir(actor, dt_s, source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    nir.write(tmp, graph)
    os.replace(tmp, path)
    return path


__all__ = ["actor_to_nir", "export_nir"]
