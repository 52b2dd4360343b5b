"""uvs driver bridge and babbler nodes.

- ``backends``: the arm backends (kinematic simulation, Kinova Gen3 through
  the Kortex API); no rclpy.
- ``driver_node``: node ``driver``, joint states and task state out, joint
  velocity commands in, behind a watchdog.
- ``babbler_node``: node ``babbler``, Ornstein-Uhlenbeck babbling through the
  driver, recorded to a rosbag2 dataset.
"""
