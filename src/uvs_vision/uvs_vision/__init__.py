"""uvs vision: the simulated camera and the HSV hue tracker.

``image_conv``, ``tracker`` and ``render`` are pure (numpy, OpenCV, uvs_core; no
rclpy); ``sim_camera_node`` and ``hue_tracker_node`` are the ROS nodes.
"""
