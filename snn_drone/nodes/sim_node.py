"""sim_node: B simulated Crazyflies (batched torch model or pybullet) on the graph.

Each control step it publishes the batched ``state`` (with every drone's episode step and last
applied action) and ``/clock``, waits for the ``motor_cmd`` that answers this step (lockstep, as
fast as the graph allows; the state is resent after ``answer_timeout_s``) or, with
``real_time:=true``, flies whatever command is newest at the step's wall-clock time (the hardware's
timing; the jump-start watchdog's safe command included). Drones whose episode ended are reset
(their next state has ``episode_step`` 0) and listed on ``episodes``. Finished 100-step sequences
(``EpisodeSlicer``, with the guide's command of each step as the BC label) go out on ``rollout``.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32, Float32MultiArray

from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.common.layout import ACTION_DIM
from snn_drone.core.learning.sequence_replay import EpisodeSlicer, Sequences

from . import arrays
from .poses import PosePublisher
from .node_runtime import (LATCHED_QOS, LIVE_QOS, ROLLOUT_QOS, await_acks, declare, declare_train_config, receive,
                           run_node, task_config, wait_for_readers)


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_node")
        self._fqn = self.get_fully_qualified_name()  # the handle is gone after a signal's shutdown
        cfg = self.cfg = declare_train_config(self)
        b = declare(self, "num_drones", 0, "drones simulated by this worker (0: the config's num_drones)") or cfg.num_drones
        backend = declare(self, "backend", "batched", "physics: 'batched' (torch model) or 'pybullet'")
        gui = declare(self, "gui", False, "pybullet GUI window (implies backend pybullet)")
        self.real_time = declare(self, "real_time", False, "step at the model's dt of wall-clock time, flying "
                                 "the newest command (else lockstep: wait for each step's answer)")
        worker = self.worker = declare(self, "worker", 0, "worker index: offsets the seed so workers fly different episodes")
        seed = declare(self, "seed", -1, "env seed (-1: config seed + 1000 * worker)")
        self.answer_timeout_s = declare(self, "answer_timeout_s", 0.2, "lockstep: resend the state when no "
                                        "motor_cmd answered it for this long (s); keeps the jump-start watchdog "
                                        "(state_timeout_s 0.5) quiet while a node starts")
        self.guide_labels = declare(self, "guide_labels", cfg.needs_guide, "wait for guide/cmd and store it as "
                                    "each step's BC label (false: zeros, for graphs without a guide; default: "
                                    "whether the config's algorithm uses a guide)")
        self.publish_rollout = declare(self, "publish_rollout", True, "publish finished sequences on rollout")
        self.rollout_every = declare(self, "rollout_every", 10, "publish the sequences finished in this many steps at once")
        self.max_steps = declare(self, "max_steps", 0, "stop after this many control steps (0: run until shut down)")
        self.ack_first_state = declare(self, "ack_first_state", False, "before the second step, wait until every "
                                       "subscriber acknowledged the first state (a recorder that must hold every step: "
                                       "DDS discovery is two-sided; costs up to one heartbeat period, about 3 s)")
        self.wait_for_subscribers = declare(self, "wait_for_subscribers", 0, "publish the first state once this many "
                                            "subscribers listen to it")
        self.wait_for_nodes = declare(self, "wait_for_nodes", "", "publish the first state once these nodes "
                                      "(comma-separated names in this namespace: the graph's actor, guide and "
                                      "jump-start) listen to it and every listener is matched")
        self.wait_for_trainer = declare(self, "wait_for_trainer", "", "publish the first state once this node "
                                        "(fully qualified: /trainer_node) listens to rollout and episodes and "
                                        "is matched, so no rollout is flown to a trainer still matching")
        poses = declare(self, "publish_poses", False, "publish the drones' poses for rviz / Foxglove (poses, "
                        "cf<i>/pose, /tf; nodes/poses.py)")
        pose_every = declare(self, "pose_every_steps", 10, "publish poses every this many steps (10: 10 Hz)")
        pose_drones = declare(self, "pose_drones", 4, "drones with their own PoseStamped and TF frame")
        threads = declare(self, "threads", 1, "torch intra-op threads")
        if threads > 0:
            torch.set_num_threads(threads)
        if gui:
            backend = "pybullet"
        self.task_cfg = task_config(cfg)
        self.env = BatchedHoverEnv(b, self.task_cfg, cfg.preset, device=cfg.device,
                                   seed=cfg.seed + 1000 * worker if seed < 0 else seed,
                                   progress=0.0, backend=backend, gui=gui)
        self.b = b
        self.slicer = EpisodeSlicer(b, self.task_cfg.episode_steps, cfg.sequences, device=self.env.device)
        self.dt_s = float(self.env.params.dt_s)
        self.pub_state = self.create_publisher(Float32MultiArray, arrays.STATE.topic, LIVE_QOS)
        self.pub_episodes = self.create_publisher(Float32MultiArray, arrays.EPISODES.topic, LIVE_QOS)
        self.pub_rollout = self.create_publisher(Float32MultiArray, arrays.ROLLOUT_TOPIC, ROLLOUT_QOS)
        self.pub_clock = self.create_publisher(Clock, arrays.CLOCK_TOPIC, LIVE_QOS)
        self.poses = None
        if poses:
            prefix = f"w{worker}_" if worker else ""
            self.poses = PosePublisher(self, [f"{prefix}cf{i}" for i in range(min(pose_drones, b))], pose_every)
        self.create_subscription(Float32MultiArray, arrays.MOTOR_CMD.topic, self._on_cmd, LIVE_QOS)
        self.create_subscription(Float32MultiArray, arrays.GUIDE_CMD.topic, self._on_guide, LIVE_QOS)
        self.create_subscription(Float32, arrays.PROGRESS_TOPIC, self._on_progress, LATCHED_QOS)
        self.step = 0
        self._cmds: dict[int, torch.Tensor] = {}
        self._guide: dict[int, torch.Tensor] = {}
        self._newest_cmd: torch.Tensor | None = None
        self._newest_guide: torch.Tensor | None = None
        self._pending: list[Sequences] = []
        self._pending_env_steps = 0
        self._sent_at = 0.0
        self._latency_s: list[float] = []
        """Lockstep: seconds from each step's first state publication to its motor_cmd."""
        self.get_logger().info(f"{b} drones ({backend}{', GUI' if gui else ''}), "
                               f"{'real time' if self.real_time else 'lockstep'}, dt {self.dt_s} s")

    # ---- inputs -----------------------------------------------------------------------------
    def _on_cmd(self, msg):
        got = receive(self, arrays.MOTOR_CMD, msg, rows=self.b)
        if got is None:
            return
        rows, head = got
        cmd = torch.from_numpy(rows.copy()).to(self.env.device)
        self._newest_cmd = cmd
        if head["step"] is not None and head["step"] >= 0 and not head.get("safe"):
            self._cmds[int(head["step"])] = cmd

    def _on_guide(self, msg):
        got = receive(self, arrays.GUIDE_CMD, msg, rows=self.b)
        if got is None:
            return
        rows, head = got
        guide = self._newest_guide = torch.from_numpy(rows.copy()).to(self.env.device)
        if head["step"] is not None:
            self._guide[int(head["step"])] = guide

    def _on_progress(self, msg):
        self.env.set_progress(min(1.0, max(0.0, float(msg.data))))

    # ---- outputs ----------------------------------------------------------------------------
    def _stamp(self) -> int:
        return self.step % arrays.STEP_MODULUS

    def _publish_state(self) -> None:
        env = self.env
        rows = torch.cat([env.state, env.steps[:, None].to(env.state.dtype), env.action_history[:, -1]], dim=1)
        self.pub_state.publish(arrays.pack(arrays.STATE, rows, {"step": self._stamp()}))
        t_ns = int(round(self.step * self.dt_s * 1e9))
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = t_ns // 1_000_000_000, t_ns % 1_000_000_000
        self.pub_clock.publish(clock)
        if self.poses is not None:
            self.poses.publish(env.state.cpu().numpy(), self.step, self.step * self.dt_s)

    def _flush_rollout(self, force: bool = False) -> None:
        if not self.publish_rollout or not self._pending or (not force and self.step % self.rollout_every):
            return
        seqs = Sequences.cat(self._pending)
        self.pub_rollout.publish(arrays.pack_sequences(seqs, self._pending_env_steps, self.worker))
        self._pending, self._pending_env_steps = [], 0

    # ---- the loop ---------------------------------------------------------------------------
    def _answer(self, ex) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Lockstep: spin until this step's motor_cmd (and guide label) arrived; resend the state on timeout."""
        stamp = self._stamp()
        sent = time.monotonic()
        while True:
            cmd = self._cmds.get(stamp)
            guide = self._guide.get(stamp) if self.guide_labels else None
            if cmd is not None and (guide is not None or not self.guide_labels):
                self._latency_s.append(time.perf_counter() - self._sent_at)
                return cmd, guide
            if time.monotonic() - sent > self.answer_timeout_s:
                self._publish_state()
                sent = time.monotonic()
            ex.spin_once(timeout_sec=0.05)
            if not self.context.ok():
                return None

    def _fly_real_time(self, ex, deadline: float) -> tuple[torch.Tensor, torch.Tensor]:
        while self.context.ok() and (left := deadline - time.monotonic()) > 0:
            ex.spin_once(timeout_sec=left)
        cmd = self._newest_cmd if self._newest_cmd is not None else self.env.action_history[:, -1]
        guide = self._guide.get(self._stamp(), self._newest_guide) if self.guide_labels else None
        return cmd, guide

    def run(self) -> None:
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(self)
        env, b = self.env, self.b
        target = env.target.expand(b, 3)
        zeros = torch.zeros(b, ACTION_DIM, device=env.device)
        wait_for_readers(self, ex, self.pub_state, self.wait_for_subscribers, self.wait_for_nodes)
        if self.wait_for_trainer and self.publish_rollout:
            for pub in (self.pub_rollout, self.pub_episodes):
                wait_for_readers(self, ex, pub, nodes=self.wait_for_trainer)
        t0 = time.monotonic()
        self._sent_at = time.perf_counter()
        self._publish_state()
        if self.ack_first_state:
            # a subscriber the writer has matched may not have matched the writer yet (DDS discovery is
            # two-sided): the first state's acknowledgements prove every reader side is ready
            await_acks(self, self.pub_state, "the first state")
        t_100 = None
        while self.context.ok() and (self.max_steps <= 0 or self.step < self.max_steps):
            if self.step == 100:
                t_100 = time.perf_counter()
            if self.real_time:
                got = self._fly_real_time(ex, t0 + (self.step + 1) * self.dt_s)
            else:
                got = self._answer(ex)
            if got is None:
                break
            cmd, guide = got
            stamp = self._stamp()
            a = cmd.clamp(-1.0, 1.0)
            state, hist = env.state.clone(), env.action_history
            _, _, term, trunc, info = env.step(a)
            self.step += 1
            self._sent_at = time.perf_counter()
            self._publish_state()
            for d in (self._cmds, self._guide):  # keep only answers to states still to come
                for k in [k for k in d if not 0 < (k - stamp) % arrays.STEP_MODULUS < 1000]:
                    del d[k]
            seqs = self.slicer.record(state, a, guide if guide is not None else zeros, info["next_state"],
                                      term, trunc, hist, target)
            if seqs is not None:
                self._pending.append(seqs)
            self._pending_env_steps += b
            done = info["done"]
            if bool(done.any()):
                ep = torch.stack([info["episode_return"][done], info["episode_length"][done].float(),
                                  term[done].float()], dim=1)
                self.pub_episodes.publish(arrays.pack(arrays.EPISODES, ep, {"step": stamp}))
            self._flush_rollout()
        if self.context.ok():
            self._flush_rollout(force=True)
            for pub, what in ((self.pub_rollout, "the last rollouts"), (self.pub_episodes, "the last episodes")):
                await_acks(self, pub, what)  # a recorder or trainer behind on reading still gets them
        # printed, not logged: after SIGINT the context (and rosout) may be down already
        print(f"[{self._fqn}] {self.speed_report(t_100)}", file=sys.stderr, flush=True)

    def speed_report(self, t_100: float | None) -> str:
        """Steps, drone steps/s after the first 100 steps and (lockstep) state -> motor_cmd latency."""
        text = f"stopped after {self.step} steps ({self.step * self.b} drone steps)"
        if t_100 is not None and self.step > 100:
            text += f"; {(self.step - 100) * self.b / (time.perf_counter() - t_100):.0f} drone steps/s after step 100"
        lat = np.array(self._latency_s[100:]) * 1e3
        if lat.size:
            text += f"; state -> motor_cmd latency median {np.median(lat):.3f} ms, p99 {np.percentile(lat, 99):.3f} ms"
        return text

    def close(self) -> None:
        self.env.close()


def main(argv=None) -> int:
    return run_node(SimNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
