"""Fly one Crazyflie with the trained SNN: drone end (crazyflie_bridge, or sim_flight_node + safety_node
with backend:=sim), actor, guide (the 50-step warm-up), jump-start and a bag of the flight.

    ros2 launch snn_drone fly_real.launch.py backend:=real actor:=checkpoints/snn_actor_bc_only.pt
    ros2 launch snn_drone fly_real.launch.py backend:=sim

The graph (nodes, parameters, remappings, namespaces) is declared in snn_drone/graphs.py and
`snn-drone launch fly_real` starts the same nodes where launch_ros is absent. Run
`ros2 launch snn_drone fly_real.launch.py --show-args` for the arguments.
"""
from snn_drone import graphs

GRAPH = graphs.GRAPHS["fly_real"]


def node_specs(assignments: dict[str, str]) -> list[graphs.NodeSpec]:
    """The nodes this file launches for the given argument values (the launcher's exact list)."""
    return GRAPH.nodes(assignments)


def generate_launch_description():
    return graphs.launch_description("fly_real")
