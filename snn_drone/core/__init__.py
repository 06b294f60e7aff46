"""The functional core: dynamics, task, networks, learning. Plain Python + torch; never imports rclpy."""
