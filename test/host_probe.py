"""A probe node in its own process (for tests whose graph runs on network-namespace hosts):

    python test/host_probe.py OUT.json --workers 0,1

listens to /train/metrics, the latched /jumpstart/horizon and /actor/weights, each worker k's
/w<k>/actor/cmd and /w<k>/motor_cmd and (``--rollouts``) /rollout, and rewrites OUT.json
(atomically) every 0.2 s with what it heard: the metrics rows, per worker the weights versions its
actor flew and the horizons its jump-start mux used (each as [value, messages] runs in arrival
order) and the rollout messages from it, the latched values seen.
Ends on SIGINT/SIGTERM. Uses the caller's DDS environment (ROS_AUTOMATIC_DISCOVERY_RANGE, ROS_DOMAIN_ID).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ros_helpers import Probe  # noqa: E402


def _runs(values: list) -> list[list]:
    out: list[list] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--workers", default="0", help="comma-separated worker indices whose commands to hear ('': none)")
    ap.add_argument("--rollouts", action="store_true", help="count the /rollout messages from each worker")
    args = ap.parse_args()
    from std_msgs.msg import Float32MultiArray, Int32, String, UInt8MultiArray
    from snn_drone.nodes import arrays

    stop = []
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.append(1))
    probe = Probe(int(os.environ.get("ROS_DOMAIN_ID", "0")))
    metrics = probe.listen("/train/metrics", String)
    horizon = probe.listen("/jumpstart/horizon", Int32, latched=True)
    weights = probe.listen("/actor/weights", UInt8MultiArray, latched=True)
    workers = [int(k) for k in args.workers.split(",") if k.strip()]
    actor = {k: probe.listen(f"/w{k}/actor/cmd", Float32MultiArray) for k in workers}
    motor = {k: probe.listen(f"/w{k}/motor_cmd", Float32MultiArray) for k in workers}
    rollouts = probe.listen("/rollout", Float32MultiArray) if args.rollouts else []
    rollout_count: dict[str, int] = {}
    versions: dict[int, list] = {k: [] for k in workers}
    horizons: dict[int, list] = {k: [] for k in workers}
    out, tmp = Path(args.out), Path(args.out + ".tmp")
    try:
        while not stop:
            probe.spin_for(0.2)
            for k in workers:  # decode and drop: the probe keeps only the headers
                versions[k] += [int(arrays.unpack(arrays.ACTOR_CMD, m).header["weights_version"]) for m in actor[k]]
                actor[k].clear()
                heads = [arrays.unpack(arrays.MOTOR_CMD, m).header for m in motor[k]]
                horizons[k] += [int(h["guide_steps"]) for h in heads if not h.get("safe")]
                motor[k].clear()
            for m in rollouts:
                k = str(arrays.unpack_sequences(m)[1]["worker"])
                rollout_count[k] = rollout_count.get(k, 0) + 1
            rollouts.clear()
            state = {"metrics": [json.loads(m.data) for m in metrics],
                     "horizon": [m.data for m in horizon],
                     "weights": [int.from_bytes(bytes(m.data[:8]), "little") for m in weights],
                     "weights_bytes": [len(m.data) for m in weights],
                     "actor_versions": {str(k): _runs(v) for k, v in versions.items()},
                     "horizons": {str(k): _runs(v) for k, v in horizons.items()},
                     "rollouts": rollout_count}
            tmp.write_text(json.dumps(state))
            tmp.replace(out)
    finally:
        probe.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
