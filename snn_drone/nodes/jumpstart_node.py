"""jumpstart_node: the mux that decides what the drones fly (``jsrl.jump_start_action``).

For every step it pairs ``state`` (each drone's episode step) with ``actor/cmd`` and ``guide/cmd`` by
their step stamp and publishes ``motor_cmd``: the guide's command for the first H steps of each
episode, then the actor's plus exploration noise. It answers as soon as the commands that fly this
step are in (the guide's alone while every drone is guided, the actor's alone once none is), so a
command that would not fly never delays the loop; a late one is dropped. H comes from the trainer (latched
``jumpstart/horizon``); with ``deploy:=true`` H is the warm-up and there is no noise. With
``wait_for_horizon`` (train_sim) it listens to ``state`` only once the trainer's horizon
came, so its sim does not start on the config's H while the trainer is epochs further.

Watchdog: when no state arrived for ``state_timeout_s`` it publishes ``safe_command`` for every
drone on ``motor_cmd`` (header safe = 1, step -1) at 4x that rate, logs a warning and says so on
``jumpstart/status``; it reports again when state comes back.
"""
from __future__ import annotations

import time

import torch
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, Int32, String

from snn_drone.core.learning.jsrl import jump_start_action
from snn_drone.core.common.layout import ACTION_DIM

from . import arrays
from .node_runtime import LATCHED_QOS, LIVE_QOS, StateGate, declare, declare_train_config, receive, run_node


class JumpStartNode(Node):
    def __init__(self):
        super().__init__("jumpstart_node")
        cfg = declare_train_config(self)
        self.b = declare(self, "num_drones", 0, "drones in each state message (0: the config's num_drones)") or cfg.num_drones
        self.use_guide = declare(self, "use_guide", cfg.needs_guide, "a guide_node answers every state (false: the actor flies from step 0)")
        deploy = declare(self, "deploy", False, "deployment: the guide flies the warm-up only, no noise, horizon topic ignored")
        noise = declare(self, "exploration_noise", -1.0, "std of the noise on the actor's commands (-1: the config's)")
        wait = declare(self, "wait_for_horizon", False, "listen to state only once the trainer's horizon arrived "
                                                       "(a late worker: the trainer may be epochs ahead)")
        h0 = declare(self, "guide_steps", -1, "steps the guide flies until the trainer publishes a horizon "
                                              "(-1: the config's schedule at epoch 0)")
        self.timeout_s = declare(self, "state_timeout_s", 0.5, "publish the safe command when no state arrived for this long (s)")
        safe = declare(self, "safe_command", [-1.0] * ACTION_DIM,
                       "motor command in [-1, 1] sent to every drone when state stops (default: motors off)")
        seed = declare(self, "seed", -1, "exploration noise seed (-1: the config's seed)")
        if len(safe) != ACTION_DIM or not all(-1.0 <= v <= 1.0 for v in safe):
            raise ValueError(f"safe_command = {safe}, expected {ACTION_DIM} values in [-1, 1]")
        self.deploy = deploy
        self.noise = 0.0 if deploy else (cfg.horizon.exploration_noise if noise < 0 else noise)
        if deploy:
            self.h = cfg.horizon.warmup
        elif h0 >= 0:
            self.h = h0
        else:
            self.h = cfg.horizon.guide_steps(0) if cfg.jump_start and self.use_guide else 0
        if not self.use_guide:
            self.h = 0
        self.safe = torch.tensor([safe] * self.b, dtype=torch.float32)
        self.gen = torch.Generator().manual_seed(cfg.seed if seed < 0 else seed)
        self._parts: dict[int, dict] = {}
        self._answered: tuple[int, object] | None = None
        self._last_state_s: float | None = None
        self._safe_since: float | None = None
        self.pub = self.create_publisher(Float32MultiArray, arrays.MOTOR_CMD.topic, LIVE_QOS)
        self.pub_status = self.create_publisher(String, arrays.STATUS_TOPIC, LIVE_QOS)
        self.gate = StateGate(self, self._on_state, wait and not deploy,
                              f"the trainer's horizon on {self.resolve_topic_name(arrays.HORIZON_TOPIC)}")
        self.create_subscription(Float32MultiArray, arrays.ACTOR_CMD.topic, self._on_actor, LIVE_QOS)
        if self.use_guide:
            self.create_subscription(Float32MultiArray, arrays.GUIDE_CMD.topic, self._on_guide, LIVE_QOS)
        self.create_subscription(Int32, arrays.HORIZON_TOPIC, self._on_horizon, LATCHED_QOS)
        self.create_timer(self.timeout_s / 4, self._watchdog)
        self.get_logger().info(f"{self.b} drones, guide flies the first {self.h} steps"
                               f"{' (deployment)' if deploy else ''}, noise {self.noise}, "
                               f"safe command {safe} after {self.timeout_s} s without state")

    # ---- inputs -----------------------------------------------------------------------------
    def _take(self, spec, msg, key: str):
        got = receive(self, spec, msg, rows=self.b)
        if got is None:
            return None
        rows, head = got
        if head["step"] is None:
            self.get_logger().error(f"dropped {spec.topic}: no step stamp (header {list(spec.header)})")
            return None
        step = int(head["step"])
        if self._answered is not None and self._answered[0] == step:
            if key == "state":
                self.pub.publish(self._answered[1])  # a resent state gets the same answer
            return step
        self._parts.setdefault(step, {})[key] = torch.from_numpy(rows.copy())
        self._try_answer(step)
        return step

    def _on_state(self, msg) -> None:
        if self._take(arrays.STATE, msg, "state") is None:
            return
        now = time.monotonic()
        if self._safe_since is not None:
            self._report(f"state resumed after {now - self._safe_since:.2f} s of safe command")
            self._safe_since = None
        self._last_state_s = now

    def _on_actor(self, msg) -> None:
        self._take(arrays.ACTOR_CMD, msg, "actor")

    def _on_guide(self, msg) -> None:
        self._take(arrays.GUIDE_CMD, msg, "guide")

    def _on_horizon(self, msg) -> None:
        if not self.deploy and self.use_guide:
            self.h = int(msg.data)
        self.gate.open(f"the trainer's horizon: the guide flies the first {self.h} steps")

    # ---- the mux ----------------------------------------------------------------------------
    def _try_answer(self, step: int) -> None:
        parts = self._parts.get(step, {})
        if "state" not in parts:
            return
        episode_step = parts["state"][:, arrays.EPISODE_STEP_COL].long()
        # wait only for the commands that fly this step: the guide's for drones still in their first
        # H steps, the actor's for the others (a command that would not fly adds only latency)
        guided = episode_step < self.h if self.use_guide else torch.zeros_like(episode_step, dtype=torch.bool)
        if (bool(guided.any()) and "guide" not in parts) or (not bool(guided.all()) and "actor" not in parts):
            return
        actor = parts.get("actor", parts.get("guide"))
        guide = parts.get("guide", actor)
        a = jump_start_action(episode_step, self.h, guide, actor, self.noise, self.gen)
        out = arrays.pack(arrays.MOTOR_CMD, a, {"step": step, "guide_steps": self.h, "safe": 0})
        self.pub.publish(out)
        self._answered = (step, out)
        for k in [k for k in self._parts if not 0 < (k - step) % arrays.STEP_MODULUS < 1000]:
            del self._parts[k]

    # ---- watchdog ---------------------------------------------------------------------------
    def _watchdog(self) -> None:
        if self._last_state_s is None:
            return  # not armed before the first state
        silent = time.monotonic() - self._last_state_s
        if silent <= self.timeout_s:
            return
        if self._safe_since is None:
            self._safe_since = self._last_state_s
            self._report(f"safe_command: no state for {silent:.2f} s (state_timeout_s {self.timeout_s}); "
                         f"sending {self.safe[0].tolist()} to all {self.b} drones", warn=True)
        self.pub.publish(arrays.pack(arrays.MOTOR_CMD, self.safe, {"step": -1, "guide_steps": self.h, "safe": 1}))

    def _report(self, text: str, warn: bool = False) -> None:
        if warn:
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)
        self.pub_status.publish(String(data=text))


def main(argv=None) -> int:
    return run_node(JumpStartNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
