"""Faults with real node processes: malformed arrays are dropped with an error naming the field while
the graph flies on; the jump-start watchdog sends the safe command when state stops and says so; a
trainer killed with SIGKILL resumes from its last checkpoint with nothing corrupt."""
import json
import signal

import numpy as np
import torch
from rclpy.serialization import serialize_message
from std_msgs.msg import Float32MultiArray, MultiArrayDimension, String, UInt8MultiArray

from ros_helpers import TINY, Probe, Processes, fresh_domain_id, overrides
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.learning.checkpoint import load_policy
from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig
from snn_drone.core.learning.rollout import JumpStartRollout
from snn_drone.core.learning.sequence_replay import SequenceConfig
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig
from snn_drone.nodes import arrays, bag_io

SAFE = [-0.5, -0.25, -0.5, -0.25]


def _good(spec, msgs):
    """The well-formed messages (the probe also hears the bad ones it published itself)."""
    out = []
    for m in msgs:
        try:
            out.append(arrays.unpack(spec, m))
        except ValueError:
            pass
    return out


def _steps(msgs):
    return [s for s in (int(u.header["step"]) for u in _good(arrays.STATE, msgs)) if s < 10 ** 6]


def _safe(msgs):
    return [u for u in _good(arrays.MOTOR_CMD, msgs) if u.header["safe"] == 1]


def test_bad_arrays_are_dropped_naming_the_field_and_the_watchdog_sends_the_safe_command(tmp_path):
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    ov = overrides(algo="td3", num_drones=2)  # no guide: actor -> jump-start -> sim
    try:
        states = probe.listen("/state", Float32MultiArray)
        motor = probe.listen("/motor_cmd", Float32MultiArray)
        status = probe.listen("/jumpstart/status", String)
        pub_state = probe.publisher("/state", Float32MultiArray)
        pub_actor = probe.publisher("/actor/cmd", Float32MultiArray)
        pub_motor = probe.publisher("/motor_cmd", Float32MultiArray)
        procs.node("actor_node", overrides=ov)
        procs.node("jumpstart_node", overrides=ov, state_timeout_s=2.0, safe_command=SAFE)
        procs.node("sim_node", overrides=ov, wait_for_subscribers=3)
        probe.spin_until(lambda: len(states) > 20, 90, "the graph flying", procs, "sim_node")
        probe.spin_until(lambda: (pub_state.get_subscription_count(), pub_actor.get_subscription_count(),
                                  pub_motor.get_subscription_count()) >= (3, 1, 2), 30, "the nodes hearing the probe")

        bad_state = torch.zeros(2, arrays.STATE.width)
        bad_state[1, 3] = float("nan")  # quaternion w of drone 1
        pub_state.publish(arrays.pack(arrays.STATE, bad_state, {"step": 10 ** 6}))
        short = Float32MultiArray()  # 16 values per drone: no rotor speeds, no episode info
        short.layout.dim = [MultiArrayDimension(label="drone", size=2, stride=32),
                            MultiArrayDimension(label="position3 quaternion4 velocity3 angular_velocity3 x3", size=16, stride=16)]
        short.data = [0.0] * 32
        pub_state.publish(short)
        bad_cmd = torch.zeros(2, 4)
        bad_cmd[0, 2] = float("inf")
        pub_actor.publish(arrays.pack(arrays.ACTOR_CMD, bad_cmd, {"step": 10 ** 6, "weights_version": 0}))
        wrong = arrays.pack(arrays.MOTOR_CMD, torch.zeros(2, 4), {"step": 10 ** 6})
        wrong.data = wrong.data[:-2]
        pub_motor.publish(wrong)
        for label, pattern in (
                ("actor_node", r"dropped state: state holds a non-finite value nan at index \(1, 3\) \(field quaternion\[0\]\)"),
                ("jumpstart_node", r"dropped state: state holds a non-finite value nan at index \(1, 3\) \(field quaternion\[0\]\)"),
                ("actor_node", r"dropped state: state array has 16 values per drone .* expected 22 \(position3 quaternion4"),
                ("jumpstart_node", r"dropped actor/cmd: actor/cmd holds a non-finite value inf at index \(0, 2\) "
                                   r"\(field motor_command\[2\]\)"),
                ("sim_node", r"dropped motor_cmd: motor_cmd message holds 9 values, expected 3 header \+ 2 drones x 4")):
            procs.wait_log(label, pattern, 30)
        before = max(_steps(states))
        probe.spin_until(lambda: max(_steps(states)) > before + 20, 60, "the graph flying on after the bad arrays")
        assert all(p.poll() is None for p in procs.procs.values())
        assert len(_good(arrays.MOTOR_CMD, motor)) >= 10 and not _safe(motor)  # state kept coming

        # state stops: the watchdog sends the configured safe command to every drone and says so
        procs.stop("sim_node", signal.SIGINT)
        probe.spin_until(lambda: len(_safe(motor)) >= 3, 10, "safe commands")
        safe = _safe(motor)
        assert all(np.array_equal(s.rows, np.array([SAFE, SAFE], dtype=np.float32)) and s.header["step"] == -1 for s in safe)
        assert any(m.data.startswith("safe_command: no state for") and "state_timeout_s 2.0" in m.data for m in status)
        procs.wait_log("jumpstart_node", r"WARN.*safe_command: no state for", 5)

        # state comes back: reported, and the safe command stops
        pub_state.publish(arrays.pack(arrays.STATE, torch.zeros(2, arrays.STATE.width), {"step": 7}))
        probe.spin_until(lambda: any(m.data.startswith("state resumed after") for m in status), 10, "state resumed")
    finally:
        procs.stop_all()
        probe.close()


def _offline_bag(path):
    seq = SequenceConfig(length=20, stride=10, warmup=5, capacity_transitions=10000)
    env = BatchedHoverEnv(6, seed=0, progress=0.0)
    torch.manual_seed(0)
    ro = JumpStartRollout(env, SpikingActor(SpikingActorConfig(hidden=(16, 8), seed=0)),
                          MLPPolicy(MLPPolicyConfig(inputs="privileged")), seq, 0.1, torch.Generator().manual_seed(0))
    w = bag_io.BagWriter(path)
    w.add_topic("/rollout", arrays.FLOAT_ARRAY_TYPE)
    for i in range(3):
        seqs, _ = ro.collect(60, guide_steps=20)
        w.write("/rollout", i + 1, serialize_message(arrays.pack_sequences(seqs, 360)))
    w.close()


def test_trainer_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path):
    _offline_bag(tmp_path / "bag")
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    run = tmp_path / "run"
    ov = overrides(algo="td3", epochs=100000, eval_every=3, checkpoint_every_s=0.0)
    params = dict(overrides=ov, out=str(run), from_bags=str(tmp_path / "bag"))
    try:
        procs.node("trainer_node", **params)
        procs.wait_log("trainer_node", r"epoch 5/100000", 120)
        procs.stop("trainer_node", signal.SIGKILL)
        ckpt = torch.load(run / "checkpoint.pt", weights_only=False)  # never torn
        done = ckpt["epoch"]
        assert done >= 4 and isinstance(load_policy(run / "actor_last.pt"), SpikingActor)

        weights = probe.listen("/actor/weights", UInt8MultiArray, latched=True)
        metrics = probe.listen("/train/metrics", String)
        procs.procs.pop("trainer_node")
        procs.node("trainer_node", resume=True, **params)
        procs.wait_log("trainer_node", rf"resumed .*checkpoint.pt at epoch {done} ", 120)
        probe.spin_until(lambda: len(metrics) >= 3 and weights, 120, "three epochs after the restart", procs, "trainer_node")
        assert arrays.unpack_weights(weights[0])[0] >= done  # latched: the newest version, from the resumed actor
        epochs = [json.loads(m.data)["epoch"] for m in metrics]
        assert epochs[0] > done and np.all(np.diff(epochs) == 1)
        procs.wait_log("trainer_node", rf"epoch {done + 1}/100000", 5)
        assert procs.stop("trainer_node", signal.SIGINT) == 0, procs.log("trainer_node")
    finally:
        procs.stop_all()
        probe.close()
    final = torch.load(run / "checkpoint.pt", weights_only=False)
    assert final["epoch"] >= done + 3 and final["learner"]["updates"] > ckpt["learner"]["updates"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # every line whole
    assert sorted({r["epoch"] for r in rows}) == list(range(1, final["epoch"] + 1))


HUNG_NODE = """
import sys, time
from rclpy.node import Node
from snn_drone.nodes.node_runtime import run_node

class Hung(Node):
    def __init__(self):
        super().__init__("hung_node")
        self.create_timer(0.05, lambda: print("spinning", flush=True))

    def close(self):
        time.sleep(600)  # a stop that never ends: the watchdog, not a second signal, must end it

sys.exit(run_node(Hung))
"""


def test_a_node_whose_stop_hangs_dumps_its_stacks_and_exits_after_the_watchdog(tmp_path):
    """One SIGINT, then a close() that never returns: the process still ends, with exit code 1 and
    the stack of the stuck thread on stderr (the launcher then needs no SIGKILL)."""
    import os
    import subprocess
    import sys
    import time
    script = tmp_path / "hung_node.py"
    script.write_text(HUNG_NODE)
    env = {**os.environ, "SNN_DRONE_SHUTDOWN_WATCHDOG_S": "2", "ROS_DOMAIN_ID": str(fresh_domain_id())}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "spinning"  # up and spinning
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert took >= 2.0  # not before the watchdog's seconds
    assert "Timeout (0:00:02)!" in err and "in close" in err and "hung_node.py" in err, err


def test_a_listener_outside_the_graph_does_not_stand_in_for_a_node_the_sim_waits_for(tmp_path):
    """rviz, ``ros2 topic echo`` or a test's probe on /state must not start the flight before the nodes
    it needs (a recorder would lose its start): the sim waits for them by name."""
    domain = fresh_domain_id()
    procs, probe = Processes(tmp_path / "logs", domain), Probe(domain)
    ov = overrides(algo="td3", num_drones=2)  # no guide: actor -> jump-start -> sim
    try:
        states = probe.listen("/state", Float32MultiArray)
        procs.node("sim_node", overrides=ov, wait_for_subscribers=1, wait_for_nodes="actor_node,jumpstart_node")
        procs.wait_log("sim_node", r"/state: still waiting after \d+ s for actor_node, jumpstart_node", 90)
        probe.spin_for(0.5)
        assert not states, "the sim started on the probe alone"
        procs.node("actor_node", overrides=ov)
        procs.node("jumpstart_node", overrides=ov)
        probe.spin_until(lambda: len(states) > 20, 90, "the graph flying", procs, "sim_node")
        assert min(_steps(states)) == 0, "every state reached the probe, from the first"
    finally:
        probe.close()
        procs.stop_all()
