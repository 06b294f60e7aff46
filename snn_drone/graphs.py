"""The node graphs, declared once: which nodes, their parameters, remappings and namespaces.

Read by the launch_ros files (launch/*.launch.py, for a ROS 2 install) and by `snn-drone launch`
(snn_drone/launcher.py, a plain process launcher for pip installs). No ROS import here.

train_sim, per worker i (namespace ``w<i>``)::

    sim_node ──state──▶ actor_node ──actor/cmd──▶ jumpstart_node ──motor_cmd──▶ sim_node
             ──state──▶ guide_node ──guide/cmd──▶ (and ▶ sim_node: BC labels)

and, shared by all workers (root namespace): ``/rollout`` and ``/episodes`` (every sim) ──▶
trainer_node ──▶ ``/actor/weights`` (latched), ``/jumpstart/horizon``, ``/train/progress``,
``/train/metrics``. Worker 0's sim publishes ``/clock``; the others ``/w<i>/clock``. Over several
machines each host launches its part: ``role:=trainer`` (the trainer alone) or ``role:=worker
worker_index:=k`` (worker k's four nodes), with the same ``workers`` and ``drones_per_worker``
everywhere (README, "Several machines").

fly_real (root namespace, one drone)::

    crazyflie_bridge (backend:=real) or sim_flight_node + safety_node (backend:=sim)
        ──state──▶ actor_node (the SNN file) and guide_node ──▶ jumpstart_node (deploy: guide for the
        warm-up, then the SNN) ──motor_cmd──▶ the drone end;  safety/status, flight/status;
        recorder_node writes the flight's bag.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import yaml


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str


REALTIME_ENV = "SNN_DRONE_REALTIME_PRIORITY"
"""A node process started with this variable asks for SCHED_FIFO at that priority (node_runtime.run_node)."""


@dataclass
class NodeSpec:
    """One node process: console script ``executable`` (= module snn_drone.nodes.<executable>)."""
    executable: str
    name: str
    namespace: str = ""
    parameters: dict = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    required: bool = False
    """The graph ends when this node exits (with its exit code)."""
    env: dict = field(default_factory=dict)
    """Environment variables of this node's process on top of the graph's (e.g. its real-time priority)."""

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: tuple[Argument, ...]
    build: Callable[[dict[str, str]], list[NodeSpec]]

    def nodes(self, assignments: dict[str, str] | None = None) -> list[NodeSpec]:
        """The node specs for ``assignments`` (argument name -> string value; defaults for the rest)."""
        given = dict(assignments or {})
        unknown = sorted(set(given) - {a.name for a in self.arguments})
        if unknown:
            raise ValueError(f"{self.name} has no argument {', '.join(unknown)}; arguments: "
                             f"{', '.join(a.name for a in self.arguments)}")
        args = {a.name: str(given.get(a.name, a.default)) for a in self.arguments}
        return self.build(args)


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"argument {name}:={value!r}, expected true or false")


def _int(name: str, value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"argument {name}:={value!r}, expected an integer") from None
    if n < minimum:
        raise ValueError(f"argument {name}:={n}, expected at least {minimum}")
    return n


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"argument {name}:={value!r}, expected a number") from None


def _overrides(text: str) -> dict:
    over = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(over, dict):
        raise ValueError(f"argument overrides:={text!r}, expected a YAML mapping such as '{{epochs: 5}}'")
    return over


def _dump(over: dict) -> str:
    return yaml.safe_dump(over, default_flow_style=True).strip() if over else ""


TRAIN_SIM_ARGUMENTS = (
    Argument("workers", "1", "sim workers; each flies its own drones with its own actor, guide and jump-start nodes"),
    Argument("drones_per_worker", "0", "drones per worker (0: the config's num_drones divided among the workers)"),
    Argument("backend", "batched", "physics of the sims: batched (torch model) or pybullet"),
    Argument("gui", "false", "pybullet GUI window for worker 0 (its sim uses pybullet)"),
    Argument("real_time", "false", "sims step at wall-clock time instead of lockstep as fast as the graph allows"),
    Argument("config", "", "training YAML (TrainConfig keys; empty: config/train.yaml)"),
    Argument("overrides", "", "YAML mapping of dotted config keys, e.g. '{epochs: 5, learner.alpha: 2.5}'"),
    Argument("out", "runs/train_sim", "run folder of the trainer: checkpoints, metrics.jsonl, TensorBoard, plots"),
    Argument("resume", "false", "continue the run in `out` from its last checkpoint"),
    Argument("guide", "", "guide policy file or 'controller' (empty: the config's guide)"),
    Argument("role", "all", "what runs on this host: all (trainer and every worker), trainer (the trainer only) "
             "or worker (the workers in worker_index only); one graph over several machines: `role:=trainer` on "
             "one, `role:=worker worker_index:=k` on the others, all with the same workers and drones_per_worker"),
    Argument("worker_index", "", "role worker: comma-separated worker indices (0 .. workers-1) that run on this "
             "host (empty: every worker)"),
)


def _role(role: str, worker_index: str, workers: int) -> tuple[str, list[int]]:
    """(role, the worker indices that run on this host) from the role and worker_index arguments."""
    if role not in ("all", "trainer", "worker"):
        raise ValueError(f"argument role:={role!r}, expected all, trainer or worker")
    if worker_index.strip() and role != "worker":
        raise ValueError(f"argument worker_index:={worker_index!r} needs role:=worker (role:={role} runs "
                         f"{'every worker' if role == 'all' else 'no worker'})")
    if role == "trainer":
        return role, []
    if not worker_index.strip():
        return role, list(range(workers))
    indices = [_int("worker_index", k.strip(), 0) for k in worker_index.split(",")]
    bad = [k for k in indices if k >= workers]
    if bad or len(set(indices)) != len(indices):
        raise ValueError(f"argument worker_index:={worker_index!r}, expected distinct indices below "
                         f"workers:={workers}")
    return role, indices


TRAINER = "trainer_node"


def train_sim(args: dict[str, str]) -> list[NodeSpec]:
    """Several sim workers feeding one trainer (DESIGN.md, the node graph)."""
    from snn_drone.core.learning.train_config import load_train_config
    workers = _int("workers", args["workers"], 1)
    over = _overrides(args["overrides"])
    cfg = load_train_config(args["config"] or None, over)  # fails early on a bad config
    per = _int("drones_per_worker", args["drones_per_worker"], 0) or max(1, cfg.num_drones // workers)
    gui, real_time, resume = (_bool(k, args[k]) for k in ("gui", "real_time", "resume"))
    if args["backend"] not in ("batched", "pybullet"):
        raise ValueError(f"argument backend:={args['backend']!r}, expected batched or pybullet")
    if args["guide"]:
        over["guide"] = args["guide"]
    role, indices = _role(args["role"], args["worker_index"], workers)
    common = {"config": args["config"], "overrides": _dump(over)}
    nodes = [NodeSpec(TRAINER, TRAINER, "", {
        "config": args["config"], "overrides": _dump({**over, "num_drones": workers * per}),
        "out": args["out"], "resume": resume}, required=True)] if role in ("all", "trainer") else []
    for i in indices:
        ns = f"w{i}"
        nodes.append(NodeSpec("sim_node", "sim_node", ns, {
            **common, "num_drones": per, "worker": i, "backend": args["backend"], "gui": gui and i == 0,
            "real_time": real_time, "guide_labels": cfg.needs_guide, "publish_poses": i == 0,
            "wait_for_trainer": f"/{TRAINER}"},  # on this host or another: its rollout reader matched
            [("rollout", "/rollout"), ("episodes", "/episodes"), ("train/progress", "/train/progress")]
            + ([("clock", "/clock")] if i == 0 else [])))
        # the actor and mux fly the trainer's weights and horizon only (on a worker host that joins late
        # the trainer may be epochs ahead): the sim, which waits for them to listen, starts once both
        # came: no rollouts are flown before the trainer is up
        nodes.append(NodeSpec("actor_node", "actor_node", ns, {**common, "num_drones": per, "wait_for_weights": True},
                              [("actor/weights", "/actor/weights")]))
        if cfg.needs_guide:
            nodes.append(NodeSpec("guide_node", "guide_node", ns, {**common, "num_drones": per}))
        nodes.append(NodeSpec("jumpstart_node", "jumpstart_node", ns, {
            **common, "num_drones": per, "use_guide": cfg.needs_guide, "seed": cfg.seed + 1000 * i,
            "wait_for_horizon": True},
            [("jumpstart/horizon", "/jumpstart/horizon")]))
    for sim in (n for n in nodes if n.name == "sim_node"):
        _waits_for_its_graph(sim, nodes)
    return nodes


def _waits_for_its_graph(sim: NodeSpec, nodes: list[NodeSpec]) -> None:
    """The simulated drone starts once every other node of its namespace listens to its state (by
    name: a count could be met by rviz or a test's probe before the recorder, say, has matched)."""
    sim.parameters["wait_for_nodes"] = ",".join(n.name for n in nodes if n.namespace == sim.namespace and n is not sim)


FLY_REAL_ARGUMENTS = (
    Argument("backend", "real", "drone end: real (crazyflie_bridge, a Crazyflie over cflib) or sim (sim_flight_node: "
             "one simulated Crazyflie in real time, with safety_node)"),
    Argument("mode", "ground", "real: ground (the graph's guide, SNN and jump-start nodes stream motor commands to the "
             "snn_motor app) or onboard (the app flies the guide and the SNN compiled into the firmware, started by "
             "snnonb.enable; the bridge sends heartbeats and records the drone's state and spike counts on "
             "onboard/status; actor and guide are then the firmware's, firmware/README.md)"),
    Argument("actor", "checkpoints/snn_actor_bc_only.pt", "spiking actor file (save_policy) that flies after the "
             "warm-up (the default held a 10 s hover in the real-time graph; snn_actor.pt, which scores higher on "
             "5 s episodes, tilted out after 3-8.5 s there)"),
    Argument("guide", "checkpoints/guide.pt", "guide policy file or 'controller' that flies the 50-step warm-up "
             "(empty: the config's guide; the controller's motor model needs the true action history, which the "
             "flight graph does not give it after the stock take-off)"),
    Argument("config", "", "training YAML for preset, task (target) and warm-up (empty: config/train.yaml)"),
    Argument("overrides", "", "YAML mapping of dotted config keys, e.g. '{horizon.warmup: 50}'"),
    Argument("safety_config", "", "safety YAML (empty: config/safety.yaml)"),
    Argument("safety_overrides", "", "YAML mapping of safety keys, e.g. '{geofence_max_m: [1, 1, 1.8]}'"),
    Argument("record", "true", "record the flight's topics into a rosbag2 (MCAP) folder"),
    Argument("bag", "", "bag folder (empty: flights/fly_real_<backend>_<UTC time>)"),
    Argument("robots_file", "", "real: crazyswarm2 crazyflies.yaml (empty: config/crazyflies.yaml)"),
    Argument("robot", "", "real: robot name in robots_file (empty: the first enabled robot)"),
    Argument("mocap_topic", "", "real: PoseStamped topic forwarded to the Crazyflie as external pose (empty: off)"),
    Argument("motor_mapping", "{}", "real: YAML mapping of MotorMappingConfig keys, e.g. '{max_ratio: 0.3}'"),
    Argument("log_variant", "float", "real: state log blocks, float (3 blocks) or compressed (1 block: mm, mrad/s, "
             "compressed quaternion; a third of the radio traffic)"),
    Argument("max_command_age_steps", "5", "real: a motor_cmd answering a state more than this many samples old is "
             "dropped (5: 50 ms at 100 Hz)"),
    Argument("predict_steps", "0", "real, ground mode: the policy acts on the state predicted this many 10 ms "
             "steps ahead through the commands streamed last (delay compensation for the radio path; 0: off)"),
    Argument("connect_timeout_s", "20.0", "real: time for cflib to connect and download the tables (s); a "
             "udp:// URI (simulated firmware) is probed first, for up to 60 s"),
    Argument("auto_takeoff_s", "1.0", "sim: take off this long after the graph listens (-1: wait for the takeoff "
             "service)"),
    Argument("hover_s", "10.0", "sim: land after this many seconds of policy flight (0: until the land service)"),
    Argument("exit_when_landed", "true", "sim: end the launch once the drone landed"),
    Argument("state_timeout_s", "0.5", "jump-start watchdog: no state for this long sends the safe command "
             "(motors off), on which the drone end lands"),
    Argument("command_timeout_s", "0.05", "no motor_cmd for this long while the policy flies trips the "
             "firmware watchdog (real: written to the app's snnmotor.timeoutMs; sim: simulated)"),
    Argument("command_fallback", "stop", "watchdog trip stops the motors (stop, snnmotor.fallback 0) or lands "
             "(land: stock controller + landing, snnmotor.fallback 1); real: written to the app"),
    Argument("realtime_priority", "10", "SCHED_FIFO priority (1-99) of the nodes in the control loop (bridge, "
             "safety, actor, guide, jump-start; the simulated drone one below, the recorder 1), so that other work on the machine cannot delay a "
             "100 Hz command; needs root or an rtprio limit, else a warning and normal scheduling (0: off)"),
)

FLY_REAL_TOPICS = ("/state", "/motor_cmd", "/actor/cmd", "/guide/cmd", "/jumpstart/status", "/safety/status",
                   "/flight/status", "/clock", "/cf1/pose", "/poses")
"""Topics recorded by fly_real on the sim backend (the real backend records every topic: pose, odom, mocap)."""


def fly_real(args: dict[str, str]) -> list[NodeSpec]:
    """One Crazyflie (real or simulated in real time) flown by the SNN after the guide's warm-up."""
    import time
    from pathlib import Path
    from snn_drone.core.learning.train_config import load_train_config
    from snn_drone.core.common.config import find_file
    backend = args["backend"]
    if backend not in ("real", "sim"):
        raise ValueError(f"argument backend:={backend!r}, expected real or sim")
    mode = args.get("mode", "ground")
    if mode not in ("ground", "onboard"):
        raise ValueError(f"argument mode:={mode!r}, expected ground or onboard")
    if mode == "onboard" and backend != "real":
        raise ValueError("argument mode:=onboard needs backend:=real (the networks run in the Crazyflie's firmware)")
    over = _overrides(args["overrides"])
    cfg = load_train_config(args["config"] or None, over)
    for name in ("actor", "guide") if mode == "ground" else ():
        path = args[name] or (cfg.guide if name == "guide" else "")
        if not (name == "guide" and path == "controller"):
            try:
                find_file(path, "policy file")
            except FileNotFoundError as e:
                raise FileNotFoundError(f"argument {name}:={path!r}: {e}"
                                        + (" (train the SNN first, or pass actor:=FILE)" if name == "actor" else "")) from None
    record, exit_when_landed = _bool("record", args["record"]), _bool("exit_when_landed", args["exit_when_landed"])
    common = {"config": args["config"], "overrides": _dump(over), "num_drones": 1}
    prio = args["realtime_priority"].strip()
    if not prio.isdigit() or not 0 <= int(prio) <= 99:
        raise ValueError(f"argument realtime_priority:={prio!r}, expected 0 (off) or a SCHED_FIFO priority 1-99")
    rt = {REALTIME_ENV: prio} if int(prio) else {}
    nodes = []
    if backend == "sim":
        nodes.append(NodeSpec("sim_flight_node", "sim_flight_node", "", {
            **common, "auto_takeoff_s": _float("auto_takeoff_s", args["auto_takeoff_s"]),
            "hover_s": _float("hover_s", args["hover_s"]),
            "exit_when_landed": exit_when_landed,
            "command_timeout_s": _float("command_timeout_s", args["command_timeout_s"]),
            "command_fallback": args["command_fallback"]},
            # the simulated drone one step below the controllers: when it runs late it steps without
            # blocking, and at the same FIFO priority it would starve the nodes it waits for
            required=exit_when_landed, env={REALTIME_ENV: str(max(1, int(prio) - 1))} if rt else {}))
        nodes.append(NodeSpec("safety_node", "safety_node", "", {
            "safety_config": args["safety_config"], "safety_overrides": args["safety_overrides"], "num_drones": 1},
            env=rt))
    else:
        nodes.append(NodeSpec("crazyflie_bridge", "crazyflie_bridge", "", {
            **{k: v for k, v in common.items() if k != "num_drones"}, "robots_file": args["robots_file"],
            "robot": args["robot"], "safety_config": args["safety_config"],
            "safety_overrides": args["safety_overrides"], "mocap_topic": args["mocap_topic"],
            "motor_mapping": args["motor_mapping"], "mode": mode,
            "log_variant": args["log_variant"],
            "max_command_age_steps": _int("max_command_age_steps", args["max_command_age_steps"], 0),
            "predict_steps": _int("predict_steps", args["predict_steps"], 0),
            "connect_timeout_s": _float("connect_timeout_s", args["connect_timeout_s"]),
            "command_timeout_s": _float("command_timeout_s", args["command_timeout_s"]),
            "command_fallback": args["command_fallback"]}, required=True, env=rt))
    if mode == "ground":
        nodes += _ground_controllers(args, common, rt)
    if record:
        tag = backend + ("_onboard" if mode == "onboard" else "")
        bag = args["bag"] or f"flights/fly_real_{tag}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}"
        if Path(bag).exists():
            raise ValueError(f"argument bag:={bag!r} exists already; give a new folder")
        topics = ",".join(FLY_REAL_TOPICS) if backend == "sim" else ""  # real: every topic (pose, odom, mocap)
        # the recorder is not in the loop but must not fall a second behind (the writers keep 100 steps):
        # real-time too, at the lowest priority, below every node of the control loop
        nodes.append(NodeSpec("recorder_node", "recorder_node", "", {"out": bag, "topics": topics},
                              env={REALTIME_ENV: "1"} if int(prio) > 1 else {}))
    if backend == "sim":
        _waits_for_its_graph(nodes[0], nodes)
    return nodes


def _ground_controllers(args: dict[str, str], common: dict, rt: dict) -> list[NodeSpec]:
    """The ground station's controllers of fly_real: actor, guide and the deploy mux."""
    return [NodeSpec("actor_node", "actor_node", "", {**common, "checkpoint": args["actor"], "follow_weights": False},
                     env=rt),
            NodeSpec("guide_node", "guide_node", "", {**common, "guide": args["guide"]}, env=rt),
            NodeSpec("jumpstart_node", "jumpstart_node", "", {**common, "use_guide": True, "deploy": True,
                                                              "state_timeout_s": _float("state_timeout_s", args["state_timeout_s"])},
                     env=rt)]


GRAPHS: dict[str, Graph] = {
    "train_sim": Graph("train_sim", "train the spiking actor through the ROS graph: sim workers, actor, guide, "
                       "jump-start and trainer nodes", TRAIN_SIM_ARGUMENTS, train_sim),
    "fly_real": Graph("fly_real", "fly one Crazyflie with the trained SNN (guide for the warm-up), safety "
                      "supervisor and a bag of the flight; backend:=sim flies a simulated one in real time",
                      FLY_REAL_ARGUMENTS, fly_real),
}


def environment() -> dict[str, str]:
    """Environment the graph's processes get on top of the caller's: DDS kept on the loopback
    unless the user chose otherwise (snn_drone/nodes/dds.py)."""
    from snn_drone.nodes.dds import localhost_defaults
    return localhost_defaults()


def launch_description(name: str):
    """The launch_ros LaunchDescription of graph ``name`` (launch/<name>.launch.py on a ROS 2 install):
    its arguments declared with their defaults and descriptions, the same nodes as the launcher."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    graph = GRAPHS[name]

    def nodes(context):
        args = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.arguments}
        return [Node(package="snn_drone", executable=s.executable, name=s.name, namespace=s.namespace or None,
                     parameters=[s.parameters], remappings=s.remappings, output="screen", emulate_tty=True,
                     additional_env=s.env or None,
                     on_exit=_on_exit(s))
                for s in graph.nodes(args)]

    def _on_exit(spec):
        # as `snn-drone launch`: the graph stops when a required node ends, or any node fails or is
        # killed (a flight must not go on without its safety supervisor or controllers)
        def on_exit(event, _context):
            if spec.required:
                return [Shutdown(reason=f"{spec.label} exited")]
            if event.returncode != 0:
                how = f"killed by signal {-event.returncode}" if event.returncode < 0 else f"exit code {event.returncode}"
                return [Shutdown(reason=f"{spec.label} died ({how})")]
            return None
        return on_exit

    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in graph.arguments]
        + [SetEnvironmentVariable(k, v) for k, v in environment().items()]
        + [OpaqueFunction(function=nodes)])
