"""The wire format without processes: arrays <-> messages, rollouts, weights, the nodes' action
history, bag files (write, read, truncation) and the loopback-only DDS defaults."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from snn_drone.core.env import task
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.learning.checkpoint import save_policy
from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig
from snn_drone.core.learning.rollout import JumpStartRollout
from snn_drone.core.learning.sequence_replay import SequenceConfig
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig
from snn_drone.core.learning.trainer import Trainer
from snn_drone.core.learning.train_config import load_train_config
from snn_drone.nodes import arrays, bag_io, dds
from snn_drone.nodes.action_history import LiveActionHistory

SEQ = SequenceConfig(length=20, stride=10, warmup=5, capacity_transitions=10000)


def _rollout_sequences(n_steps=120, b=6, seed=0):
    """Real sequences: a random actor and guide flying the batched env with the jump-start mux."""
    torch.manual_seed(seed)
    env = BatchedHoverEnv(b, seed=seed, progress=0.0)
    actor = SpikingActor(SpikingActorConfig(hidden=(16, 8), seed=seed))
    guide = MLPPolicy(MLPPolicyConfig(inputs="privileged"))
    ro = JumpStartRollout(env, actor, guide, SEQ, 0.1, torch.Generator().manual_seed(seed))
    seqs, stats = ro.collect(n_steps, guide_steps=30)
    assert seqs is not None and seqs.n > 5
    return seqs, stats


def _equal(a, b):
    return a.n == b.n and all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


def test_state_and_command_arrays_round_trip_exactly_with_their_step_stamp():
    rows = torch.randn(5, arrays.STATE.width)
    msg = arrays.pack(arrays.STATE, rows, {"step": 2 ** 24 + 7})
    assert [d.label for d in msg.layout.dim] == ["drone", arrays.STATE.label]
    assert msg.layout.dim[1].label.startswith("position3 quaternion4 velocity3 angular_velocity3 rotor_speed4 episode_step1")
    out, head = arrays.unpack(arrays.STATE, msg, rows=5)
    assert np.array_equal(out, rows.numpy()) and head == {"step": 7.0}  # stamps wrap at 2**24
    cmd = arrays.pack(arrays.MOTOR_CMD, torch.rand(5, 4), {"step": -1, "guide_steps": 50, "safe": 1})
    assert arrays.unpack(arrays.MOTOR_CMD, cmd).header == {"step": -1.0, "guide_steps": 50.0, "safe": 1.0}
    partial = arrays.pack(arrays.ACTOR_CMD, torch.rand(5, 4), {"step": 3})
    assert arrays.unpack(arrays.ACTOR_CMD, partial).header == {"step": 3.0, "weights_version": None}


def test_bad_arrays_are_rejected_naming_the_topic_and_field():
    good = torch.zeros(3, arrays.STATE.width)
    nan = good.clone()
    nan[1, 4] = float("nan")  # quaternion x of drone 1
    with pytest.raises(ValueError, match=r"state holds a non-finite value nan at index \(1, 4\) \(field quaternion\[1\]\)"):
        arrays.unpack(arrays.STATE, arrays.pack(arrays.STATE, nan, {"step": 0}))
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension
    short = Float32MultiArray()
    short.layout.dim = [MultiArrayDimension(label="drone", size=3, stride=48),
                        MultiArrayDimension(label="position3 quaternion4 velocity3 angular_velocity3", size=16, stride=16)]
    short.data = [0.0] * 48
    with pytest.raises(ValueError, match=r"state array has 16 values per drone .* expected 22 \(position3"):
        arrays.unpack(arrays.STATE, short)
    msg = arrays.pack(arrays.MOTOR_CMD, torch.zeros(3, 4), {"step": 1})
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match=r"motor_cmd message holds 14 values, expected 3 header \+ 3 drones x 4 = 15"):
        arrays.unpack(arrays.MOTOR_CMD, msg)
    with pytest.raises(ValueError, match="motor_cmd array has 3 drones, expected 4"):
        arrays.unpack(arrays.MOTOR_CMD, arrays.pack(arrays.MOTOR_CMD, torch.zeros(3, 4)), rows=4)
    bare = Float32MultiArray()
    bare.data = [0.5] * 8  # `ros2 topic pub` without a layout: rows of 4, no header
    rows, head = arrays.unpack(arrays.MOTOR_CMD, bare)
    assert rows.shape == (2, 4) and head["step"] is None


def test_rollout_sequences_round_trip_exactly_and_wrong_length_is_named():
    seqs, _ = _rollout_sequences()
    msg = arrays.pack_sequences(seqs, env_steps=720, worker=3)
    back, head = arrays.unpack_sequences(msg, length=20)
    assert _equal(back, seqs) and head == {"env_steps": 720, "worker": 3}
    assert back.terminated.dtype == torch.bool and back.start_step.dtype == torch.long
    with pytest.raises(ValueError, match=r"rollout sequences have length 20 .* expected 100 \(sequences.length\)"):
        arrays.unpack_sequences(msg, length=100)
    msg.data[2 + 5] = float("nan")  # first sequence, state[0] quaternion w
    with pytest.raises(ValueError, match=r"sequences.state holds a non-finite value nan at index \(0, 0, 5\)"):
        arrays.unpack_sequences(msg, length=20)


def test_weights_travel_as_a_versioned_policy_file():
    actor = SpikingActor(SpikingActorConfig(hidden=(16, 8), seed=1))
    actor.set_slope(7.5)
    version, back = arrays.unpack_weights(arrays.pack_weights(actor, 12))
    assert version == 12 and isinstance(back, SpikingActor) and float(back.slope) == 7.5
    assert all(torch.equal(a, b) for a, b in zip(actor.state_dict().values(), back.state_dict().values()))


def test_messages_deserialised_by_rosbags_unpack_like_rclpy_messages():
    from rclpy.serialization import serialize_message
    seqs, _ = _rollout_sequences()
    store = bag_io.typestore()
    raw = serialize_message(arrays.pack_sequences(seqs, 5, 1))
    back, head = arrays.unpack_sequences(store.deserialize_cdr(raw, arrays.FLOAT_ARRAY_TYPE), 20)
    assert _equal(back, seqs) and head["env_steps"] == 5
    rows = torch.randn(4, arrays.STATE.width)
    raw = serialize_message(arrays.pack(arrays.STATE, rows, {"step": 9}))
    out, h = arrays.unpack(arrays.STATE, store.deserialize_cdr(raw, arrays.FLOAT_ARRAY_TYPE))
    assert np.array_equal(out, rows.numpy()) and h["step"] == 9


def test_live_action_history_from_the_state_topic_equals_the_env_history_across_resets():
    env = BatchedHoverEnv(8, seed=3, progress=0.0)
    hist = LiveActionHistory(8, env.params, env.cfg)
    gen = torch.Generator().manual_seed(0)
    resets = 0
    for step in range(300):
        rows = torch.cat([env.state, env.steps[:, None].float(), env.action_history[:, -1]], dim=1)
        msg = arrays.unpack(arrays.STATE, arrays.pack(arrays.STATE, rows, {"step": step})).rows
        x = torch.from_numpy(msg)
        h = hist.update(step, x[:, arrays.STATE_COLS], x[:, arrays.EPISODE_STEP_COL], x[:, arrays.LAST_ACTION_COLS])
        if step % 7 == 0:  # a resent state must not shift the history
            h = hist.update(step, x[:, arrays.STATE_COLS], x[:, arrays.EPISODE_STEP_COL], x[:, arrays.LAST_ACTION_COLS])
        assert torch.equal(h, env.action_history), step
        _, _, _, _, info = env.step(torch.rand(8, 4, generator=gen) * 2 - 1)
        resets += int(info["done"].sum())
    assert resets > 8 and hist.missed_steps == 0


def _write_bag(path, seqs, chunks=4, storage="mcap"):
    """A bag of ``chunks`` flushed chunks, each with rollout messages of a few sequences."""
    from rclpy.serialization import serialize_message
    w = bag_io.BagWriter(path, storage)
    w.add_topic("/rollout", arrays.FLOAT_ARRAY_TYPE, depth=200)
    w.add_topic("/actor/weights", "std_msgs/msg/UInt8MultiArray", latched=True, depth=1)
    w.write("/actor/weights", 1, serialize_message(arrays.pack_weights(MLPPolicy(), 0)))
    parts = torch.arange(seqs.n).chunk(chunks * 2)
    for i, idx in enumerate(parts):
        w.write("/rollout", 10 + i, serialize_message(arrays.pack_sequences(seqs.index(idx), 100 * len(idx), 0)))
        if i % 2 == 1:
            w.flush()
    w.close()
    return [seqs.index(idx) for idx in parts]


def test_bag_has_standard_rosbag2_metadata_and_trains_the_offline_trainer_with_exactly_its_sequences(tmp_path):
    seqs, _ = _rollout_sequences()
    _write_bag(tmp_path / "bag", seqs)
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["version"] == 9
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert topics["/rollout"]["topic_metadata"]["type"] == "std_msgs/msg/Float32MultiArray"
    assert topics["/rollout"]["message_count"] == 8 and topics["/actor/weights"]["message_count"] == 1
    msgs = list(bag_io.read_bag(tmp_path / "bag"))
    assert [m.latched for m in msgs if m.topic == "/actor/weights"] == [True]
    data = bag_io.load_rollouts([tmp_path / "bag", tmp_path / "bag"], 20)
    assert data.messages == 16 and data.env_steps == 2 * 100 * seqs.n
    cfg = load_train_config(None, {"algo": "td3", "num_drones": 4, "eval_episodes": 2, "threads": 1,
                                   "snn.hidden": [16, 8], "sequences.length": 20, "sequences.stride": 10,
                                   "sequences.warmup": 5, "sequences.capacity_transitions": 10000, "learner.warmup": 5,
                                   "horizon.warmup": 5})
    tr = Trainer(cfg, tmp_path / "run", progress=False, log=lambda *_: None, collect=False)
    tr.ingest(data.sequences, data.env_steps)
    stored = tr.replay.all()
    assert stored.n == 2 * seqs.n
    assert _equal(stored.index(slice(0, seqs.n)), seqs) and _equal(stored.index(slice(seqs.n, None)), seqs)


def test_truncated_bag_gives_a_clear_error_and_salvage_reads_the_messages_before_the_cut(tmp_path):
    seqs, _ = _rollout_sequences()
    parts = _write_bag(tmp_path / "bag", seqs, chunks=4)
    mcap = tmp_path / "bag" / "bag.mcap"
    full = mcap.read_bytes()
    scan = bag_io.scan_mcap(mcap)
    assert scan.cut_at is None and sum(m.topic == "/rollout" for m in scan.messages) == 8
    mcap.write_bytes(full[: int(len(full) * 0.6)])  # cut inside the third chunk
    with pytest.raises(bag_io.TruncatedBagError, match=r"bag .* is truncated: bag.mcap ends inside a record at "
                                                       r"byte \d+ of \d+\. \d+ complete messages before the cut"):
        bag_io.load_rollouts([tmp_path / "bag"], 20)
    got = bag_io.load_rollouts([tmp_path / "bag"], 20, salvage=True)
    assert 2 <= got.messages < 8  # the chunks flushed before the cut, exactly as written
    kept = sum(p.n for p in parts[:got.messages])
    assert _equal(got.sequences, seqs.index(slice(0, kept))) and got.env_steps == 100 * kept
    (tmp_path / "bag" / "metadata.yaml").unlink()  # a recording that was killed: no metadata either
    with pytest.raises(bag_io.TruncatedBagError, match="truncated"):
        list(bag_io.read_bag(tmp_path / "bag"))


def test_dds_defaults_keep_traffic_on_the_loopback_unless_the_user_chose():
    assert dds.localhost_defaults({}) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                          "FASTDDS_DEFAULT_PROFILES_FILE": str(dds.localhost_profile())}
    assert dds.localhost_defaults({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}) == {}
    assert dds.localhost_defaults({"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"}) == \
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    xml = dds.localhost_profile().read_text()
    assert "<address>127.0.0.1</address>" in xml and "<useBuiltinTransports>false</useBuiltinTransports>" in xml


def test_fast_dds_parses_the_loopback_profile_without_an_error():
    """A profile Fast DDS cannot parse is dropped whole, silently but for a log line: the loopback
    restriction and the 100 ms heartbeat would both be gone."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                             "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")}
    env.update(dds.localhost_defaults(env), ROS_DOMAIN_ID=str(60 + os.getpid() % 30))
    code = ("import rclpy\nfrom std_msgs.msg import String\nrclpy.init()\nn = rclpy.create_node('profile_check')\n"
            "n.create_publisher(String, 'chat', 10)\nn.create_subscription(String, 'chat', lambda m: None, 10)\n"
            "print('up')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "up", out.stderr[-2000:]
    assert "XMLPARSER" not in out.stderr and "Error" not in out.stderr, out.stderr[-2000:]
    assert "<heartbeat_period>" in dds.localhost_profile().read_text()


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the sockets")
def test_two_nodes_talk_with_packets_to_127_0_0_1_only(tmp_path):
    import subprocess
    import sys
    code = ("import rclpy, time\nfrom std_msgs.msg import String\nrclpy.init()\nn = rclpy.create_node('{0}')\n"
            "got = []\np = n.create_publisher(String, 'chat', 10)\n"
            "n.create_subscription(String, 'chat', lambda m: got.append(m), 10)\n"
            "t = time.time()\nwhile time.time() - t < 4 and not (got and '{0}' == 'b'):\n"
            "    p.publish(String(data='x')); rclpy.spin_once(n, timeout_sec=0.05)\n"
            "print('{0}', len(got))\n")
    env = {**os.environ, "ROS_DOMAIN_ID": str(60 + os.getpid() % 30)}
    for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        env.pop(k, None)
    env.update(dds.localhost_defaults(env))
    trace = tmp_path / "trace"
    a = subprocess.Popen(["strace", "-f", "-e", "trace=sendto,sendmsg,sendmmsg,connect", "-o", str(trace),
                          sys.executable, "-c", code.format("a")], env=env, stdout=subprocess.PIPE, text=True)
    b = subprocess.run([sys.executable, "-c", code.format("b")], env=env, capture_output=True, text=True, timeout=60)
    out_a = a.communicate(timeout=60)[0]
    assert int(b.stdout.split()[1]) > 0 and int(out_a.split()[1]) > 0  # they did talk
    import re
    addrs = set(re.findall(r'inet_addr\("([\d.]+)"\)', trace.read_text()))
    assert addrs == {"127.0.0.1"}, addrs
