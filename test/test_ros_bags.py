"""Bags with real node processes: what `snn-drone record` wrote is exactly what the graph published,
`snn-drone play` publishes exactly that again, `snn-drone train --from-bags` trains from it, and a
recording killed with SIGKILL is refused with a clear error but salvageable up to its last flush."""
import signal

import numpy as np
import pytest
import torch
from std_msgs.msg import Float32MultiArray

from ros_helpers import Probe, Processes, fresh_domain_id, fresh_guide, overrides
from snn_drone.core.learning.sequence_replay import Sequences
from snn_drone.nodes import arrays, bag_io

TOPICS = ["/rollout", "/state", "/motor_cmd", "/episodes", "/actor/weights"]


def _equal(a, b):
    return a.n == b.n and all(torch.equal(x, y) for x, y in zip(a, b))


def _states_by_step(msgs):
    out = {}
    for m in msgs:
        rows, head = arrays.unpack(arrays.STATE, m)
        out[int(head["step"])] = rows
    return out


def test_recorded_bag_played_back_or_trained_from_yields_exactly_the_recorded_transitions(tmp_path):
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    bag, killed = tmp_path / "bag", tmp_path / "killed_bag"
    ov = overrides(guide=str(fresh_guide(tmp_path / "guide.pt")))
    try:
        rollouts = probe.listen("/rollout", Float32MultiArray)
        states = probe.listen("/state", Float32MultiArray)
        procs.cli("record", "record", "-o", str(bag), "--topics", *TOPICS)
        procs.cli("killed", "record", "-o", str(killed), "--topics", "/rollout", "/state")
        for r in ("record", "killed"):
            procs.wait_log(r, r"recording /rollout", 60)
        procs.node("actor_node", overrides=ov)
        procs.node("guide_node", overrides=ov)
        procs.node("jumpstart_node", overrides=ov)
        # the sim starts once the actor, guide, jump-start, recorder, killed recorder and probe listen to its state
        sim = procs.node("sim_node", overrides=ov, max_steps=300, wait_for_subscribers=6, ack_first_state=True)
        probe.spin_until(lambda: sim.poll() is not None, 120, "300 sim steps")
        assert sim.wait() == 0, procs.log("sim_node")
        probe.spin_for(1.5)  # the last messages, and one more flush of the recorders
        procs.stop("killed", signal.SIGKILL)
        assert procs.stop("record", signal.SIGINT) == 0, procs.log("record")
        sent = Sequences.cat([arrays.unpack_sequences(m, 20)[0] for m in rollouts])
        sent_states = _states_by_step(states)
        assert sent.n > 20 and sorted(sent_states) == list(range(301))

        # the bag holds exactly what was published
        data = bag_io.load_rollouts([bag], 20)
        assert data.messages == len(rollouts) and _equal(data.sequences, sent)
        recorded_states = _states_by_step(
            bag_io.typestore().deserialize_cdr(m.rawdata, m.msgtype) for m in bag_io.read_bag(bag, {"/state"}))
        assert sorted(recorded_states) == sorted(sent_states)
        assert all(np.array_equal(recorded_states[s], sent_states[s]) for s in sent_states)

        # played back: the same messages again
        rollouts.clear()
        procs.cli("play", "play", str(bag), "--topics", "/rollout", "--rate", "4")
        assert procs.procs["play"].wait(timeout=60) == 0, procs.log("play")
        probe.spin_until(lambda: len(rollouts) == data.messages, 10, "the played rollout messages")
        played = Sequences.cat([arrays.unpack_sequences(m, 20)[0] for m in rollouts])
        assert _equal(played, sent)

        # trained from offline
        out = tmp_path / "offline"
        procs.cli("train", "train", "--from-bags", str(bag), "--out", str(out), "--no-progress", "--epochs", "2",
                  *[f"--set={k}={v}" for k, v in (("num_drones", 4), ("eval_every", 1), ("eval_episodes", 2),
                                                  ("threads", 1), ("snn.hidden", "[16, 8]"), ("min_replay_sequences", 2),
                                                  ("updates_per_epoch", 2), ("sequences.length", 20),
                                                  ("sequences.stride", 10), ("sequences.warmup", 5),
                                                  ("learner.warmup", 5), ("horizon.warmup", 5), ("guide", tmp_path / "guide.pt"))])
        assert procs.procs["train"].wait(timeout=120) == 0, procs.log("train")
        assert f"offline from bags: {sent.n} sequences ({data.messages} rollout messages" in procs.log("train")
        ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
        assert ckpt["epoch"] == 2 and ckpt["replay"]["data"]["state"].shape[0] == sent.n

        # the SIGKILLed recording: a clear error, and what it flushed before the kill is intact
        with pytest.raises(bag_io.TruncatedBagError, match="truncated"):
            bag_io.load_rollouts([killed], 20)
        salvaged = bag_io.load_rollouts([killed], 20, salvage=True)
        assert 0 < salvaged.messages <= len(rollouts)
        assert _equal(salvaged.sequences, sent.index(slice(0, salvaged.sequences.n)))
    finally:
        procs.stop_all()
        probe.close()
