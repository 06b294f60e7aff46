"""guide_node: the privileged guide (an MLP on observation + action history) for B drones.

It keeps its own action history from the state topic (``LiveActionHistory``) and answers every
``state`` with ``guide/cmd``: the jump-start node flies it for the first H steps, the sim stores it
as the BC label of every step.
"""
from __future__ import annotations

import torch
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray

from snn_drone.core.env import task
from snn_drone.core.sim.params import load_preset
from snn_drone.core.learning.train_config import load_guide

from . import arrays
from .action_history import LiveActionHistory
from .node_runtime import LIVE_QOS, declare, declare_train_config, receive, run_node, task_config


class GuideNode(Node):
    def __init__(self):
        super().__init__("guide_node")
        cfg = declare_train_config(self)
        self.b = declare(self, "num_drones", 0, "drones in each state message (0: the config's num_drones)") or cfg.num_drones
        path = declare(self, "guide", "", "guide policy file or 'controller' (empty: the config's guide)") or cfg.guide
        threads = declare(self, "threads", 1, "torch intra-op threads")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device(cfg.device)
        self.guide = load_guide(path, cfg.preset, self.device)
        if getattr(self.guide, "inputs", None) != "privileged":
            raise ValueError(f"guide {path} reads the {getattr(self.guide, 'inputs', '?')} observation, "
                             f"expected a privileged-input policy (an MLP policy file or 'controller')")
        task_cfg = task_config(cfg)
        self.target = torch.tensor(task_cfg.target_position_m, device=self.device)
        self.history = LiveActionHistory(self.b, load_preset(cfg.preset), task_cfg, self.device)
        self.pub = self.create_publisher(Float32MultiArray, arrays.GUIDE_CMD.topic, LIVE_QOS)
        self.create_subscription(Float32MultiArray, arrays.STATE.topic, self._on_state, LIVE_QOS)
        self.get_logger().info(f"guide {path} for {self.b} drones")

    @torch.no_grad()
    def _on_state(self, msg) -> None:
        got = receive(self, arrays.STATE, msg, rows=self.b)
        if got is None:
            return
        rows, head = got
        step = int(head["step"]) if head["step"] is not None else -1
        x = torch.from_numpy(rows).to(self.device)
        state = x[:, arrays.STATE_COLS]
        missed = self.history.missed_steps
        hist = self.history.update(step, state, x[:, arrays.EPISODE_STEP_COL], x[:, arrays.LAST_ACTION_COLS])
        if self.history.missed_steps > missed:
            self.get_logger().warning(f"state step {step} does not follow the previous one: the action history "
                                      f"is off until each drone's next reset")
        priv = task.privileged_observation(task.observation(state, self.target), hist)
        self.pub.publish(arrays.pack(arrays.GUIDE_CMD, self.guide(priv), {"step": step}))


def main(argv=None) -> int:
    return run_node(GuideNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
