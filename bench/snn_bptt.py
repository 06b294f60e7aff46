"""Time one BPTT training step of the spiking actor against a plain snntorch step loop.

One step = forward over T steps + MSE loss on all actions + backward + Adam, batch B, the paper's
18 -> LIF(256) -> LIF(128) -> 4 actor, same weights for both. Both are timed in the same run, in
alternation, so a busy shared CPU slows both alike. Also times single-step inference latency at
batch 1 (``SpikingActor.step`` under ``torch.inference_mode``, with and without input validation).

Last line: ``compile_s=... latency_us=... latency_validated_us=... speedup_median_pair=... ours_ms=...
snntorch_ms=... speedup=...``: ours_ms/snntorch_ms are the fastest of the repeats (the CPU is shared),
speedup their ratio, speedup_median_pair the median ratio of back-to-back pairs. No torch.compile is
used; compile_s is the time this process spent building (first run on a machine, ~1 s) or loading
(cached) the native LIF loops of snn_drone/core/snn/lif_kernels.py, before any timing. Both networks
run with glibc told to keep freed memory (snn_drone/core/learning/malloc_tuning.py; --no-malloc-tuning to
compare).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snn_drone.core.snn import lif_kernels  # noqa: E402
from snn_drone.core.learning.malloc_tuning import retain_freed_memory  # noqa: E402
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig  # noqa: E402


def snntorch_net(actor: SpikingActor, slope: float):
    """The same network as plain snntorch modules with the actor's weights (the reference loop)."""
    import snntorch
    from snntorch import surrogate
    fcs = torch.nn.ModuleList(torch.nn.Linear(l.in_features, l.out_features) for l in actor.fc)
    lifs = torch.nn.ModuleList(
        snntorch.Leaky(beta=l.beta.detach().clone(), threshold=l.threshold.detach().clone(),
                       learn_beta=True, learn_threshold=True, reset_mechanism="subtract",
                       spike_grad=surrogate.fast_sigmoid(slope=slope)) for l in actor.lif)
    readout = torch.nn.Linear(actor.readout.in_features, actor.readout.out_features)
    with torch.no_grad():
        for f, l in zip(fcs, actor.fc):
            f.weight.copy_(l.weight)
            f.bias.copy_(l.bias)
        readout.weight.copy_(actor.readout.weight)
        readout.bias.copy_(actor.readout.bias)
    net = torch.nn.ModuleDict({"fc": fcs, "lif": lifs, "readout": readout})

    def forward(obs):
        mems = [torch.zeros(obs.shape[1], l.beta.shape[0]) for l in lifs]
        out = []
        for t in range(obs.shape[0]):
            x = obs[t]
            for i, (fc, lif) in enumerate(zip(fcs, lifs)):
                x, mems[i] = lif(fc(x), mems[i])
            out.append(torch.tanh(readout(x)))
        return torch.stack(out)
    return net, forward


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--batch", type=int, default=256, help="sequences per batch")
    p.add_argument("--repeats", type=int, default=7, help="timed training steps per implementation")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--torch-lif", action="store_true", help="time the fused LIF's torch loops, not the C loops")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="leave glibc's defaults (freed large blocks go back to the kernel every step)")
    args = p.parse_args(argv)
    malloc_tuned = False if args.no_malloc_tuning else retain_freed_memory()  # for both nets alike
    t0 = time.perf_counter()
    lif_kernels.usable(torch.zeros(1))  # builds (first run on this machine) or loads the C loops
    compile_s = time.perf_counter() - t0
    if args.torch_lif:
        lif_kernels.set_enabled(False)
    native = lif_kernels.usable(torch.zeros(1))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = SpikingActorConfig(seed=0, slope=2.0)
    actor = SpikingActor(cfg)
    net, ref_forward = snntorch_net(actor, cfg.slope)
    obs = torch.randn(args.steps, args.batch, cfg.obs_dim)
    target = torch.rand(args.steps, args.batch, cfg.action_dim) * 2 - 1
    opt_ours = torch.optim.Adam(actor.parameters(), lr=1e-3)
    opt_ref = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        actions, _ = actor.forward_sequence(obs, validate=False)
        loss = torch.nn.functional.mse_loss(actions, target)
        loss.backward()
        opt_ours.step()

    def step_ref():
        opt_ref.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(ref_forward(obs), target)
        loss.backward()
        opt_ref.step()

    cpu = {"ours": [], "ref": []}

    def timed(fn, name) -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1 = time.perf_counter()
        cpu[name].append((time.process_time() - c0) * 1e3)
        return (t1 - t0) * 1e3

    step_ours()
    step_ref()  # warm-up (allocator, thread pool)
    ours, ref = [], []
    for _ in range(args.repeats):
        ours.append(timed(step_ours, "ours"))
        ref.append(timed(step_ref, "ref"))

    # Single-step control latency at batch 1.
    x = torch.randn(1, cfg.obs_dim)
    lat = {}
    with torch.inference_mode():
        for validate in (False, True):
            state = actor.init_state(1)
            for _ in range(200):
                _, state = actor.step(x, state, validate=validate)
            n, best = 2000, float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(n):
                    _, state = actor.step(x, state, validate=validate)
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            lat[validate] = best

    # The CPU is shared: the fastest of the repeats is the least-disturbed estimate of each cost;
    # the median of the per-pair ratios (each pair run back to back) is given beside it.
    o, r = min(ours), min(ref)
    paired = statistics.median(b / a for a, b in zip(ours, ref))
    print(f"T={args.steps} B={args.batch} threads={torch.get_num_threads()} native_lif={native} malloc_tuned={malloc_tuned} "
          f"ours_runs_ms={[round(v, 1) for v in ours]} snntorch_runs_ms={[round(v, 1) for v in ref]} "
          f"ours_cpu_ms={min(cpu['ours']):.1f} snntorch_cpu_ms={min(cpu['ref']):.1f}")
    print(f"compile_s={compile_s:.2f} latency_us={lat[False]:.1f} latency_validated_us={lat[True]:.1f} "
          f"speedup_median_pair={paired:.2f} ours_ms={o:.1f} snntorch_ms={r:.1f} speedup={r / o:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
