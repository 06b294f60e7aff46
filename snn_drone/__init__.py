"""snn_drone: spiking-neural-network Crazyflie controllers (core in snn_drone.core, ROS nodes in snn_drone.nodes)."""
__version__ = "0.1.0"
