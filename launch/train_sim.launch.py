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
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context):
        args = {a.name: LaunchConfiguration(a.name).perform(context) for a in GRAPH.arguments}
        return [Node(package="snn_drone", executable=s.executable, name=s.name, namespace=s.namespace or None,
                     parameters=[s.parameters], remappings=s.remappings, output="screen", emulate_tty=True,
                     on_exit=Shutdown(reason=f"{s.label} exited") if s.required else None)
                for s in node_specs(args)]

    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in GRAPH.arguments]
        + [SetEnvironmentVariable(k, v) for k, v in graphs.environment().items()]
        + [OpaqueFunction(function=nodes)])
