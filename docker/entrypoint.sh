#!/bin/bash
# Source ROS 2 and the uvs overlay, then run the command (default: the servo launch).
set -e
source "/opt/ros/${ROS_DISTRO}/setup.bash"
source /uvs/install/setup.bash
exec "$@"
