"""Train the spiking actor through the ROS 2 graph: sim workers, actor, guide, jump-start and trainer.

    ros2 launch snn_drone train_sim.launch.py workers:=2 drones_per_worker:=32

The graph (nodes, parameters, remappings, namespaces) is declared in snn_drone/graphs.py and
`snn-drone launch train_sim` starts the same nodes where launch_ros is absent. Run
`ros2 launch snn_drone train_sim.launch.py --show-args` for the arguments.
"""
from snn_drone import graphs

GRAPH = graphs.GRAPHS["train_sim"]


def node_specs(assignments: dict[str, str]) -> list[graphs.NodeSpec]:
    """The nodes this file launches for the given argument values (the launcher's exact list)."""
    return GRAPH.nodes(assignments)


def generate_launch_description():
    return graphs.launch_description("train_sim")
