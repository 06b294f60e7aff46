"""Training throughput of the train_sim graph spread over hosts, against the same graph on one host.

Hosts are Linux network namespaces on a private bridge (test/netns_hosts.py; needs root): the
trainer on one, each sim worker (sim, actor, guide, jump-start) on its own, started as the README's
"Several machines" says (`snn-drone launch train_sim role:=trainer | role:=worker worker_index:=k`,
ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET). Three layouts, one after the other, each with the default
configuration (config/train.yaml: the (256, 128) spiking actor, 100-step sequences, 50 updates per
epoch) and ``--drones`` drones per worker:

- ``one host``: trainer and two workers on the loopback (the default: LOCALHOST, shared memory);
- ``1 worker host``: trainer host + one worker host;
- ``2 worker hosts``: trainer host + two worker hosts.

For each, after the trainer's first epoch and for ``--seconds``: drone steps/s received by the
trainer (its ``rollouts_by_worker`` counts), updates/s, and per worker host the bytes/s its
interface sent (veth counters) and bytes per drone step; the sizes of the weights and rollout
messages. All namespaces share this machine's cores, so the layouts compare the transport's cost,
not the speed-up of real machines. Last line: ``name=value`` pairs.

    sudo .venv/bin/python bench/hosts_throughput.py [--drones 32] [--seconds 90]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))

import netns_hosts  # noqa: E402

from snn_drone.nodes.dds import localhost_defaults  # noqa: E402


def _env(subnet: bool, domain: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                        "FASTRTPS_DEFAULT_PROFILES_FILE", "ROS_STATIC_PEERS")}
    env.update(ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    if subnet:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    else:
        env.update(localhost_defaults(env))
    return env


def _heard(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"metrics": [], "weights_bytes": []}


def measure(layout: str, workers: int, drones: int, seconds: float, folder: Path, domain: int) -> dict:
    folder.mkdir(parents=True)
    launch = [sys.executable, "-m", "snn_drone.cli", "launch", "train_sim", f"workers:={workers}",
              f"drones_per_worker:={drones}", "overrides:={epochs: 100000}", f"out:={folder / 'run'}"]
    probe = [sys.executable, str(ROOT / "test" / "host_probe.py"), str(folder / "probe.json"), "--workers", ""]
    net = None
    procs = []

    def start(label, cmd, host=None, subnet=True):
        log = open(folder / f"{label}.log", "w")
        env = _env(subnet, domain)
        p = (host.popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True) if host else
             subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
        procs.append(p)

    try:
        if layout == "one host":
            start("probe", probe, subnet=False)
            start("graph", launch, subnet=False)
        else:
            net = netns_hosts.network(["trainer"] + [f"w{k}" for k in range(workers)])
            start("probe", probe, net["trainer"])
            start("trainer", launch + ["role:=trainer"], net["trainer"])
            for k in range(workers):
                start(f"w{k}", launch + ["role:=worker", f"worker_index:={k}"], net[f"w{k}"])

        def sample():
            heard = _heard(folder / "probe.json")
            counters = {k: net[f"w{k}"].counters() for k in range(workers)} if net else {}
            return time.monotonic(), heard, counters

        deadline = time.monotonic() + 600
        while not _heard(folder / "probe.json")["metrics"]:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{layout}: no epoch within 600 s; logs in {folder}:\n"
                                   + "\n".join((f.name + ":\n" + f.read_text()[-1500:]) for f in folder.glob("*.log")))
            time.sleep(0.2)
        t0, h0, c0 = sample()
        n0 = len(h0["metrics"])
        t1, h1, c1 = t0, h0, c0
        while time.monotonic() < t0 + seconds or len(h1["metrics"]) < n0 + 2:
            time.sleep(0.2)
            now = sample()
            if len(now[1]["metrics"]) > len(h1["metrics"]):  # measure between epoch ends
                t1, h1, c1 = now
            if time.monotonic() > t0 + seconds + 600:
                raise RuntimeError(f"{layout}: fewer than two epochs in {seconds + 600} s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if net is not None:
            net.close()
    r0, r1 = h0["metrics"][-1], h1["metrics"][-1]
    dt = t1 - t0

    def steps(row, k):
        return row.get("rollouts_by_worker", {}).get(str(k), {}).get("drone_steps", 0)

    def payload(row, k):
        return row.get("rollouts_by_worker", {}).get(str(k), {}).get("bytes", 0)

    def messages(row, k):
        return row.get("rollouts_by_worker", {}).get(str(k), {}).get("messages", 0)

    out = {"layout": layout, "seconds": dt, "epochs": r1["epoch"] - r0["epoch"],
           "drone_steps_per_s": sum(steps(r1, k) - steps(r0, k) for k in range(workers)) / dt,
           "updates_per_s": (r1["updates"] - r0["updates"]) / dt,
           "weights_bytes": max(h1.get("weights_bytes") or [0]),
           "rollout_message_bytes": sum(payload(r1, k) for k in range(workers)) / max(1, sum(messages(r1, k) for k in range(workers)))}
    for k in range(workers):
        ds = steps(r1, k) - steps(r0, k)
        out[f"w{k}_drone_steps_per_s"] = ds / dt
        if net is not None:
            tx = c1[k]["tx_bytes"] - c0[k]["tx_bytes"]
            rx = c1[k]["rx_bytes"] - c0[k]["rx_bytes"]
            out[f"w{k}_tx_bytes_per_s"] = tx / dt
            out[f"w{k}_rx_bytes_per_s"] = rx / dt
            out[f"w{k}_tx_bytes_per_drone_step"] = tx / max(1, ds)
            out[f"w{k}_rollout_payload_bytes_per_s"] = (payload(r1, k) - payload(r0, k)) / dt
    return out


def ingest(drones: int, seconds: float = 5.0) -> dict:
    """The trainer's receiving side in this process, one thread: deserialize + unpack the rollout
    message a worker of ``drones`` drones sends every 10 steps (default config: 100-step sequences,
    stride 50); its bytes and how many drone steps per second one core takes in."""
    import torch
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Float32MultiArray

    from snn_drone.core.env.batched_env import BatchedHoverEnv
    from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig
    from snn_drone.core.learning.rollout import JumpStartRollout
    from snn_drone.core.learning.train_config import load_train_config, make_actor
    from snn_drone.nodes import arrays
    torch.set_num_threads(1)
    cfg = load_train_config()
    ro = JumpStartRollout(BatchedHoverEnv(drones, seed=0, progress=0.0), make_actor(cfg),
                          MLPPolicy(MLPPolicyConfig(inputs="privileged")), cfg.sequences, 0.1,
                          torch.Generator().manual_seed(0))
    seqs, _ = ro.collect(300, 100)
    n = min(seqs.n, max(1, round(drones * 10 / cfg.sequences.stride)))  # one message: 10 steps' sequences
    raw = serialize_message(arrays.pack_sequences(seqs.index(torch.arange(n)), 10 * drones))
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        arrays.unpack_sequences(deserialize_message(raw, Float32MultiArray), cfg.sequences.length)
        k += 1
    dt = time.perf_counter() - t0
    return {"message_bytes": len(raw), "sequences": n, "messages_per_s": k / dt, "bytes_per_s": k / dt * len(raw),
            "drone_steps_per_s": k / dt * 10 * drones}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drones", type=int, default=32, help="drones per worker")
    ap.add_argument("--seconds", type=float, default=90.0, help="measured time per layout, after the first epoch")
    args = ap.parse_args()
    why = netns_hosts.unavailable()
    if why is not None:
        print(f"hosts_throughput: skipped: {why}")
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="hosts_throughput_") as tmp:
        for i, (layout, workers) in enumerate((("one host", 2), ("1 worker host", 1), ("2 worker hosts", 2))):
            r = measure(layout, workers, args.drones, args.seconds, Path(tmp) / f"run{i}", 60 + os.getpid() % 30 + i)
            results.append(r)
            print(f"{layout:15s} ({workers} x {args.drones} drones): {r['drone_steps_per_s']:7.0f} drone steps/s, "
                  f"{r['updates_per_s']:5.2f} updates/s over {r['seconds']:.0f} s ({r['epochs']} epochs); weights "
                  f"{r['weights_bytes']} B, rollout messages {r['rollout_message_bytes']:.0f} B"
                  + "".join(f"; w{k} sends {r[f'w{k}_tx_bytes_per_s'] / 1e6:.2f} MB/s "
                            f"({r[f'w{k}_tx_bytes_per_drone_step']:.0f} B per drone step, rollout payload "
                            f"{r[f'w{k}_rollout_payload_bytes_per_s'] / 1e6:.2f} MB/s), receives "
                            f"{r[f'w{k}_rx_bytes_per_s'] / 1e3:.1f} kB/s"
                            for k in range(workers) if f"w{k}_tx_bytes_per_s" in r), flush=True)
    one, w1, w2 = results
    ing = ingest(args.drones)
    per_step = w2["w0_rollout_payload_bytes_per_s"] / max(1e-9, w2["w0_drone_steps_per_s"])
    print(f"trainer ingest, one thread: deserialize + unpack {ing['message_bytes']} B rollout messages "
          f"({ing['sequences']} sequences, 10 steps of {args.drones} drones) at {ing['bytes_per_s'] / 1e6:.1f} MB/s = "
          f"{ing['bytes_per_s'] / per_step:.0f} drone steps/s at the {per_step:.0f} B of rollout per drone step "
          f"measured above (the trainer trains in a second thread)")
    print(f"2 worker hosts / 1 worker host: drone steps/s x{w2['drone_steps_per_s'] / w1['drone_steps_per_s']:.2f}, "
          f"updates/s x{w2['updates_per_s'] / max(1e-9, w1['updates_per_s']):.2f}; 2 worker hosts / one host: "
          f"drone steps/s x{w2['drone_steps_per_s'] / one['drone_steps_per_s']:.2f}, "
          f"updates/s x{w2['updates_per_s'] / max(1e-9, one['updates_per_s']):.2f}; cpus={os.cpu_count()}")
    print(" ".join([f"one_host_steps_per_s={one['drone_steps_per_s']:.0f}",
                    f"one_host_updates_per_s={one['updates_per_s']:.2f}",
                    f"hosts1_steps_per_s={w1['drone_steps_per_s']:.0f}", f"hosts1_updates_per_s={w1['updates_per_s']:.2f}",
                    f"hosts2_steps_per_s={w2['drone_steps_per_s']:.0f}", f"hosts2_updates_per_s={w2['updates_per_s']:.2f}",
                    f"hosts2_w0_tx_bytes_per_s={w2['w0_tx_bytes_per_s']:.0f}",
                    f"hosts2_w1_tx_bytes_per_s={w2['w1_tx_bytes_per_s']:.0f}",
                    f"weights_bytes={w2['weights_bytes']}", f"rollout_message_bytes={w2['rollout_message_bytes']:.0f}",
                    f"ingest_bytes_per_s={ing['bytes_per_s']:.0f}",
                    f"ingest_drone_steps_per_s={ing['bytes_per_s'] / per_step:.0f}"]))


if __name__ == "__main__":
    main()
