"""Collect training data on the arm: the driver bridge and the babbler (OU noise, or
mode:=servo, the paper's real-arm babbling: the true-Jacobian servo law toward random
targets with Gaussian noise on 5 % of commands), which homes the arm before each
trajectory and writes the (q, x) samples to a rosbag2 bag (MCAP)
of the same schema as `uvs collect` (/joint_states, /task_state,
/babble/trajectory_start), ready for `uvs train --data BAG`.

    ros2 launch uvs_bringup babble.launch.py                                 # sim, 10 x 100
    ros2 launch uvs_bringup babble.launch.py task:=multi_point trajectories:=50 bag:=bags/mp
    ros2 launch uvs_bringup babble.launch.py robot:=gen3 robot_ip:=192.168.1.10 bag:=bags/gen3
    ros2 launch uvs_bringup babble.launch.py mode:=servo trajectories:=20 bag:=bags/servo

The launch ends by itself when the bag is written (exit code 0); if a node fails, it
stops the other and exits non-zero with the reason. Ctrl-C writes what was recorded.
The babbling parameters (horizon, theta, sigma, seed; the servo mode's gain,
noise_fraction, noise_std) are in config/babbler.yaml.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription
from uvs_bringup.graph import BABBLE_MODES, ROBOTS, TASKS, BabbleOptions, babble_graph
from uvs_bringup.launch_support import LaunchArgumentError, node_action

SHARE = Path(get_package_share_directory("uvs_bringup"))

ARGUMENTS = [
    ("robot", "sim", "sim: kinematic simulation of the Gen3; gen3: the real arm via Kortex",
     ROBOTS),
    ("robot_ip", "192.168.1.10", "IP address of the Gen3 (robot:=gen3)", None),
    ("task", "single_point", "task whose active joints are babbled and whose x is recorded",
     TASKS),
    ("mode", "ou", "ou: Ornstein-Uhlenbeck joint velocities; servo: the true-Jacobian "
     "servo law toward random targets, Gaussian noise on 5 % of commands (paper's real arm)",
     BABBLE_MODES),
    ("trajectories", "10", "trajectories to record, each from home", None),
    ("bag", "bags/babble", "bag directory to write (must not exist)", None),
    ("params_dir", str(SHARE / "config"), "folder of the nodes' parameter YAML files", None),
]


def _actions(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    try:
        options = BabbleOptions(robot=arg("robot"), robot_ip=arg("robot_ip"), task=arg("task"),
                                trajectories=int(arg("trajectories")),
                                bag=str(Path(arg("bag")).expanduser()), mode=arg("mode"))
    except ValueError as exc:
        raise LaunchArgumentError(f"babble.launch.py: {exc}") from None
    if Path(options.bag).exists():
        raise LaunchArgumentError(f"bag {options.bag} exists; choose a new path with bag:=...")
    params_dir = Path(arg("params_dir")).expanduser()
    return [node_action(spec, params_dir) for spec in babble_graph(options)]


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": list(choices)} if choices else {}))
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_actions)])
