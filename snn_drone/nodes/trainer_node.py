"""trainer_node: rollout sequences from every sim worker -> sequence replay -> the TD3BC learner.

It runs the same ``Trainer`` as `snn-drone train` with collection outside (``collect=False``): the
``rollout`` and ``episodes`` topics feed :meth:`Trainer.ingest`; once the workers have flown an
epoch's worth of steps (``steps_per_epoch`` x ``num_drones``, all workers together) everything that arrived goes to
the replay and one :meth:`Trainer.train_epoch` runs in a worker thread while the node keeps receiving. After each
epoch it publishes the weights (latched, version = epoch), the horizon H, the curriculum progress
and the metrics row (with ``rollouts_by_worker``: messages, drone steps and payload bytes received
from each worker index so far, so that a worker on another machine that stopped contributing
shows); metrics.jsonl, TensorBoard, checkpoints and plots land in ``out`` as with `snn-drone train`. With ``from_bags`` it trains offline from recorded rollouts instead. It exits
(code 0) after ``epochs`` epochs or on SIGINT/SIGTERM, after a final checkpoint.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Float32, Float32MultiArray, Int32, String, UInt8MultiArray

from snn_drone.core.learning.sequence_replay import Sequences
from snn_drone.core.learning.trainer import Trainer

from . import arrays
from .bag_io import load_rollouts
from .node_runtime import LATCHED_QOS, LIVE_QOS, ROLLOUT_QOS, declare, declare_train_config, receive, run_node


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class TrainerNode(Node):
    def __init__(self):
        super().__init__("trainer_node")
        cfg = self.cfg = declare_train_config(self)
        out = declare(self, "out", "runs/train_sim", "run folder: checkpoints, metrics.jsonl, TensorBoard, plots")
        resume = declare(self, "resume", False, "continue the run in `out` from its last checkpoint")
        bags = declare(self, "from_bags", "", "comma-separated bag folders to train from offline (empty: live rollouts)")
        salvage = declare(self, "salvage", False, "read the intact part of truncated bags")
        self.trainer = Trainer(cfg, out, resume=resume, progress=False, log=self.get_logger().info, collect=False)
        self.offline = bool(bags.strip())
        self.pub_weights = self.create_publisher(UInt8MultiArray, arrays.WEIGHTS_TOPIC, LATCHED_QOS)
        self.pub_horizon = self.create_publisher(Int32, arrays.HORIZON_TOPIC, LATCHED_QOS)
        self.pub_progress = self.create_publisher(Float32, arrays.PROGRESS_TOPIC, LATCHED_QOS)
        self.pub_metrics = self.create_publisher(String, arrays.METRICS_TOPIC, LIVE_QOS)
        self.create_subscription(Float32MultiArray, arrays.ROLLOUT_TOPIC, self._on_rollout, ROLLOUT_QOS)
        self.create_subscription(Float32MultiArray, arrays.EPISODES.topic, self._on_episodes, LIVE_QOS)
        self._pending: list = []
        self._pending_steps = 0
        self._returns: list[float] = []
        self.workers_seen: set[int] = set()
        self.by_worker: dict[str, dict[str, int]] = {}
        """Per worker index: rollout messages, drone steps and payload bytes received since start."""
        self._lengths: list[float] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="train_epoch")
        self._epoch: Future | None = None
        if self.offline and len(self.trainer.replay) == 0:  # resumed: the bags' sequences are in the checkpoint
            data = load_rollouts([b.strip() for b in bags.split(",") if b.strip()], cfg.sequences.length, salvage)
            if data.sequences is None:
                raise ValueError(f"no rollout sequences in {bags}")
            self.trainer.ingest(data.sequences, data.env_steps, data.returns, data.lengths)
            self.get_logger().info(f"offline: {data.sequences.n} sequences from {data.messages} rollout messages "
                                   f"in {bags}")
        self._t0, self._steps0, self._updates0 = time.monotonic(), self.trainer.env_steps, self.trainer.learner.updates
        self._epoch0 = self.trainer.epoch
        self._publish_state()
        self.get_logger().info(f"training {cfg.algo}/{cfg.actor} in {out}: epoch {self.trainer.epoch} of "
                               f"{cfg.epochs}, an epoch per {self.steps_per_epoch} drone steps"
                               + (" (offline)" if self.offline else ""))

    @property
    def steps_per_epoch(self) -> int:
        return self.cfg.steps_per_epoch * self.cfg.num_drones

    # ---- inputs -----------------------------------------------------------------------------
    def _on_rollout(self, msg) -> None:
        try:
            seqs, head = arrays.unpack_sequences(msg, self.cfg.sequences.length)
        except ValueError as e:
            self.get_logger().error(f"dropped rollout: {e}")
            return
        self._pending.append(seqs)
        self._pending_steps += head["env_steps"]
        worker = int(head["worker"])
        if worker not in self.workers_seen:
            self.get_logger().info(f"first rollouts from worker {worker} "
                                   f"({self.count_publishers(arrays.ROLLOUT_TOPIC)} publishers of /rollout)")
        self.workers_seen.add(worker)
        tally = self.by_worker.setdefault(str(worker), {"messages": 0, "drone_steps": 0, "bytes": 0})
        tally["messages"] += 1
        tally["drone_steps"] += int(head["env_steps"])
        tally["bytes"] += 4 * len(msg.data)

    def _on_episodes(self, msg) -> None:
        got = receive(self, arrays.EPISODES, msg)
        if got is None:
            return
        rows, _ = got
        self._returns += rows[:, 0].tolist()
        self._lengths += rows[:, 1].tolist()

    # ---- outputs ----------------------------------------------------------------------------
    def _publish_state(self) -> None:
        tr = self.trainer
        self.pub_weights.publish(arrays.pack_weights(tr.actor, tr.epoch))
        self.pub_horizon.publish(Int32(data=int(tr.guide_steps())))
        self.pub_progress.publish(Float32(data=float(min(1.0, tr.epoch / max(1, self.cfg.epochs)))))

    # ---- the loop ---------------------------------------------------------------------------
    def _done(self) -> bool:
        return self.trainer.epoch >= self.cfg.epochs or self.trainer.stopped_early

    def _start_epoch(self) -> None:
        """Once an epoch's worth of drone steps arrived (offline: at once), hand it all to the replay
        (no epoch is running) and run one epoch in the worker thread."""
        if not self.offline and self._pending_steps < self.steps_per_epoch:
            return
        take, self._pending = self._pending, []
        self.trainer.ingest(Sequences.cat(take) if take else None, self._pending_steps, self._returns, self._lengths)
        self._pending_steps, self._returns, self._lengths = 0, [], []
        self._epoch = self._pool.submit(self.trainer.train_epoch)

    def _end_epoch(self) -> None:
        row = self._epoch.result()
        self._epoch = None
        if not self.context.ok():
            return
        self._publish_state()
        self.pub_metrics.publish(String(data=arrays.metrics_json({
            **row, "rollout_workers": len(self.workers_seen),
            "rollouts_by_worker": {k: dict(v) for k, v in sorted(self.by_worker.items())}})))
        self.get_logger().info(self.progress_line(row))

    def progress_line(self, row: dict) -> str:
        """One line per epoch that says what each figure is: progress and time left, the last
        evaluation (the actor as deployed, on fresh starts) and validation, the training rollouts'
        return (mostly the guide's early on), then slope, lambda_BC and throughput."""
        tr, cfg = self.trainer, self.cfg
        elapsed = max(1e-9, time.monotonic() - self._t0)
        done = tr.epoch - self._epoch0
        left = (cfg.epochs - tr.epoch) * elapsed / max(1, done)
        parts = [f"epoch {tr.epoch}/{cfg.epochs} ({_clock(elapsed)} elapsed, ~{_clock(left)} left)"]
        last = next((r for r in reversed(tr.history) if "eval_return" in r), None)
        if last is not None:
            since = "" if last is row else f" at epoch {last['epoch']}"
            parts.append(f"eval {last['eval_return']:.1f}{since} (actor after the {tr.eval_guide_steps()}-step "
                         f"warm-up, {cfg.eval_episodes} fresh starts)")
            if "validation_return" in last:
                parts.append(f"validation {last['validation_return']:.1f} ({cfg.validation_episodes} fixed starts)")
        if "train_return" in row:
            h = row.get("guide_steps")
            who = f"guide flies {h} of {tr.task_cfg.episode_steps} steps" if h else "actor flies"
            parts.append(f"rollouts {row['train_return']:.1f} ({who})")
        if cfg.uses_slope:
            parts.append(f"k={row['slope']:.2f}")
        parts.append(f"lambda_bc={row['lambda_bc']:.3f}")
        parts.append(f"replay={row['replay_sequences']} workers={len(self.workers_seen)} "
                     f"drone_steps/s={(tr.env_steps - self._steps0) / elapsed:.0f} "
                     f"updates/s={(tr.learner.updates - self._updates0) / elapsed:.1f}")
        return " | ".join(parts)

    def run(self) -> None:
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(self)
        try:
            while self.context.ok() and not self._done():
                ex.spin_once(timeout_sec=0.02)
                if self._epoch is not None and self._epoch.done():
                    self._end_epoch()
                if self._epoch is None and not self._done():
                    self._start_epoch()
        finally:
            if self._epoch is not None:
                self._end_epoch()
            self.trainer.finish()
            self._pool.shutdown()
            self.get_logger().info(f"finished at epoch {self.trainer.epoch}: {self.trainer.out}")
            time.sleep(0.2)  # let the last latched weights reach late subscribers' queues


def main(argv=None) -> int:
    return run_node(TrainerNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
