"""ament_python package for snn_drone (also a plain pip package: `pip install -e .[ros]`)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "snn_drone"

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
    ],
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
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "snn-drone = snn_drone.cli:main",
            # ROS 2 nodes (`ros2 run snn_drone <name>`; the same command on a pip install)
            "sim_node = snn_drone.nodes.sim_node:main",
            "actor_node = snn_drone.nodes.actor_node:main",
            "guide_node = snn_drone.nodes.guide_node:main",
            "jumpstart_node = snn_drone.nodes.jumpstart_node:main",
            "trainer_node = snn_drone.nodes.trainer_node:main",
            "recorder_node = snn_drone.nodes.recorder_node:main",
            "player_node = snn_drone.nodes.player_node:main",
            "crazyflie_bridge = snn_drone.nodes.crazyflie_bridge:main",
            "sim_flight_node = snn_drone.nodes.sim_flight_node:main",
            "safety_node = snn_drone.nodes.safety_node:main",
        ],
    },
)
