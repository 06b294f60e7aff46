"""ament_python package for snn_drone (also a plain pip package: `pip install -e .[ros]`).

Both ways install the same prefix layout: the Python package, `share/snn_drone/` (package.xml,
launch files, config, presets, the Fast DDS profile, the shipped checkpoints), the ament index
marker, and every node's executable in `lib/snn_drone/` where `ros2 run` and launch_ros look.
colcon puts the console scripts there itself (setup.cfg's install_scripts); pip puts them in
`bin/`, so a wheel (plain or editable) also carries a small `lib/snn_drone/<node>` launcher that
runs `bin/<node>`.
"""
import os
import stat
import sys
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "snn_drone"
NODES = ["sim_node", "actor_node", "guide_node", "jumpstart_node", "trainer_node", "recorder_node",
         "player_node", "crazyflie_bridge", "sim_flight_node", "safety_node"]


def _wheel_launchers() -> list:
    """data_files entry of lib/snn_drone launchers, only when pip builds a wheel (colcon's
    `setup.py install` / `develop` put the console scripts in lib/snn_drone already)."""
    if not any(cmd in sys.argv for cmd in ("bdist_wheel", "editable_wheel")):
        return []
    folder = os.path.join("build", "lib_launchers")
    os.makedirs(folder, exist_ok=True)
    files = []
    for name in NODES + ["snn-drone"]:
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n# ros2 run / launch_ros look here; pip installed the node in <prefix>/bin\n"
                    f'exec "$(dirname "$0")/../../bin/{name}" "$@"\n')
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        files.append(path)
    return [(f"lib/{PACKAGE}", files)]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/presets", glob("config/presets/*.yaml")),
        (f"share/{PACKAGE}/checkpoints", glob("checkpoints/*.pt") + ["checkpoints/README.md"]),
    ] + _wheel_launchers(),
    python_requires=">=3.10",
    # Ranges here, exact pins in requirements.txt. torch is pinned exactly: any range admitting a
    # newer release pulls a multi-GB CUDA build where only the CPU wheel is wanted.
    install_requires=[
        "torch==2.13.0",
        "numpy>=1.26",
        "pyyaml>=6",
        "snntorch>=1.0,<2",
        "gymnasium>=1.0,<2",
        "pybullet>=3.2.6",
        "rosbags>=0.11,<0.12",
        "nir==1.0.8",
        "cflib==0.1.34",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "tensorboard>=2.15",
    ],
    extras_require={
        # On a ROS 2 install these come from the distribution; never install them there too.
        "ros": [
            "ros-kilted-rclpy[fastrtps]",
            "ros-kilted-std-msgs",
            "ros-kilted-geometry-msgs",
            "ros-kilted-nav-msgs",
            "ros-kilted-sensor-msgs",
            "ros-kilted-std-srvs",
        ],
        "test": ["pytest>=8"],
    },
    zip_safe=True,
    maintainer="snn_drone developers",
    maintainer_email="snn-drone@example.org",
    description="Spiking-neural-network Crazyflie controllers trained with TD3BC + JSRL and adaptive surrogate slopes.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "snn-drone = snn_drone.cli:main",
            # ROS 2 nodes (`ros2 run snn_drone <name>`; the same command on a pip install)
        ] + [f"{name} = snn_drone.nodes.{name}:main" for name in NODES],
    },
)
