"""actor_node: the stateful spiking actor for B drones.

On every ``state`` it steps the actor once (hidden state reset for the drones whose episode just
started, ``episode_step`` 0) and publishes ``actor/cmd`` with the step stamp and the version of the
weights it used. It follows the trainer's latched ``actor/weights``; it starts from the
``checkpoint`` file if given, else from the same initial actor the trainer builds from the config.
With ``wait_for_weights`` (train_sim) it listens to ``state`` only once the trainer's first weights
arrived (the sim, which waits for this node, starts then), so a worker that joins a run in progress
never flies the initial actor into the replay.
"""
from __future__ import annotations

import torch
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, UInt8MultiArray

from snn_drone.core.env import task
from snn_drone.core.learning.checkpoint import load_policy
from snn_drone.core.sim.params import load_preset
from snn_drone.core.learning.rollout import actor_input
from snn_drone.core.learning.train_config import make_actor
from snn_drone.core.common.config import resolve_path

from . import arrays
from .action_history import LiveActionHistory
from .node_runtime import (LATCHED_QOS, LIVE_QOS, StateGate, declare, declare_train_config, receive, run_node,
                           task_config)


class ActorNode(Node):
    def __init__(self):
        super().__init__("actor_node")
        cfg = self.cfg = declare_train_config(self)
        self.b = declare(self, "num_drones", 0, "drones in each state message (0: the config's num_drones)") or cfg.num_drones
        ckpt = declare(self, "checkpoint", "", "policy file to start from (empty: the trainer's initial actor "
                                               "for this config)")
        self.follow = declare(self, "follow_weights", True, "load every new version on actor/weights")
        wait = declare(self, "wait_for_weights", False, "listen to state only once the first actor/weights "
                                                       "arrived (needs follow_weights)")
        if wait and not self.follow:
            raise ValueError("wait_for_weights:=true needs follow_weights:=true (no weights would ever come)")
        threads = declare(self, "threads", 1, "torch intra-op threads")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device(cfg.device)
        self.actor = (load_policy(resolve_path(ckpt), map_location=self.device) if ckpt else make_actor(cfg)).to(self.device)
        self.actor.requires_grad_(False)
        self.version = 0
        self.task_cfg = task_config(cfg)
        self.target = torch.tensor(self.task_cfg.target_position_m, device=self.device)
        self.history = LiveActionHistory(self.b, load_preset(cfg.preset), self.task_cfg, self.device)
        self.hidden = self.actor.init_state(self.b, device=self.device)
        self._last: tuple[int, object] | None = None
        self.pub = self.create_publisher(Float32MultiArray, arrays.ACTOR_CMD.topic, LIVE_QOS)
        self.gate = StateGate(self, self._on_state, wait,
                              f"the trainer's weights on {self.resolve_topic_name(arrays.WEIGHTS_TOPIC)}")
        self.create_subscription(UInt8MultiArray, arrays.WEIGHTS_TOPIC, self._on_weights, LATCHED_QOS)
        self.get_logger().info(f"{type(self.actor).__name__} for {self.b} drones"
                               + (f" from {ckpt}" if ckpt else "")
                               + (", flying once the trainer's weights arrive" if wait else ""))

    def _on_weights(self, msg) -> None:
        if not self.follow:
            return
        try:
            version, policy = arrays.unpack_weights(msg, map_location=self.device)
        except (ValueError, TypeError) as e:
            self.get_logger().error(f"dropped actor/weights: {e}")
            return
        if type(policy) is not type(self.actor):
            self.get_logger().error(f"dropped actor/weights version {version}: a {type(policy).__name__}, "
                                    f"this node flies a {type(self.actor).__name__}")
            return
        try:
            self.actor.load_state_dict(policy.state_dict())
        except (ValueError, RuntimeError) as e:
            self.get_logger().error(f"dropped actor/weights version {version}: {e}")
            return
        self.version = version
        self.gate.open(f"flying the trainer's weights version {version}")  # the first version only

    @torch.no_grad()
    def _on_state(self, msg) -> None:
        got = receive(self, arrays.STATE, msg, rows=self.b)
        if got is None:
            return
        rows, head = got
        step = int(head["step"]) if head["step"] is not None else None
        if self._last is not None and step is not None and self._last[0] == step:
            self.pub.publish(self._last[1])  # a resent state: the same answer, the hidden state stepped once
            return
        x = torch.from_numpy(rows).to(self.device)
        state, episode_step = x[:, arrays.STATE_COLS], x[:, arrays.EPISODE_STEP_COL]
        new = episode_step == 0
        if bool(new.any()):
            self.hidden = self.actor.reset_state(self.hidden, new)
        obs = task.observation(state, self.target)
        priv = None
        if getattr(self.actor, "inputs", "observation") == "privileged":
            hist = self.history.update(step or 0, state, episode_step, x[:, arrays.LAST_ACTION_COLS])
            priv = task.privileged_observation(obs, hist)
        action, self.hidden = self.actor.step(actor_input(self.actor, obs, priv), self.hidden, validate=False)
        out = arrays.pack(arrays.ACTOR_CMD, action, {"step": step, "weights_version": self.version})
        self.pub.publish(out)
        self._last = (step, out)


def main(argv=None) -> int:
    return run_node(ActorNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
