"""Collect training data on the arm: the driver bridge and the babbler (OU noise, or
mode:=servo, the paper's real-arm babbling: the true-Jacobian servo law toward random
targets with Gaussian noise on 5 % of commands), which homes the arm before each
trajectory and writes the (q, x) samples to a rosbag2 bag (MCAP)
of the same schema as `uvs collect` (/joint_states, /task_state,
/babble/trajectory_start), ready for `uvs train --data BAG`.

    ros2 launch uvs_bringup babble.launch.py                                 # sim, 10 x 100
    ros2 launch uvs_bringup babble.launch.py task:=multi_point trajectories:=50 bag:=bags/mp
    ros2 launch uvs_bringup babble.launch.py robot:=ur5e bag:=bags/ur5e           # sim UR5e
    ros2 launch uvs_bringup babble.launch.py backend:=gen3 robot_ip:=192.168.1.10 bag:=bags/gen3
    ros2 launch uvs_bringup babble.launch.py mode:=servo trajectories:=20 bag:=bags/servo

`backend` (sim | gen3) is what runs the arm, `robot` the kinematic model (a name under
config/robots or a robot YAML path; default gen3), as in servo.launch.py, which also
explains the deprecated robot:=sim|gen3.

The launch ends by itself when the bag is written (exit code 0); if a node fails, it
stops the other and exits non-zero with the reason. Ctrl-C writes what was recorded.
The babbling parameters (horizon, theta, sigma, seed; the servo mode's gain,
noise_fraction, noise_std) are in config/babbler.yaml.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription
from uvs_bringup.graph import (
    BABBLE_MODES,
    BACKENDS,
    TASKS,
    BabbleOptions,
    babble_graph,
    resolve_backend,
)
from uvs_bringup.launch_support import LaunchArgumentError, node_action
from uvs_core.paths import installed_dir

ARGUMENTS = [
    ("backend", "sim", "what runs the arm: sim, the kinematic simulation of the robot model; "
     "gen3, the real Kinova Gen3 via Kortex", BACKENDS),
    ("robot", "", "robot model the driver and babbler load (empty: the parameter files', "
     "gen3): a name under config/robots (gen3, gen3_6dof, ur5e), a robot YAML or URDF "
     "path, or robot_description (the URDF a robot driver publishes on that topic) "
     "(robot:=sim|gen3 alone: deprecated spelling of backend:=)", None),
    ("base_link", "", "URDF robots: the chain's base link (empty: the URDF's root)", None),
    ("tip_link", "", "URDF robots: the chain's tip link (empty: the URDF's one leaf)", None),
    ("robot_ip", "192.168.1.10", "IP address of the Gen3 (backend:=gen3)", None),
    ("task", "single_point", "task whose active joints are babbled and whose x is recorded",
     TASKS),
    ("mode", "ou", "ou: Ornstein-Uhlenbeck joint velocities; servo: the true-Jacobian "
     "servo law toward random targets, Gaussian noise on 5 % of commands (paper's real arm)",
     BABBLE_MODES),
    ("trajectories", "10", "trajectories to record, each from home", None),
    ("bag", "bags/babble", "bag directory to write (must not exist)", None),
    ("params_dir", str(installed_dir("config")), "folder of the nodes' parameter YAML files", None),
]


def _note_given(context, given: set) -> None:
    """Record which of backend and robot the user set (see servo.launch.py)."""
    given.update(name for name in ("backend", "robot")
                 if name in context.launch_configurations)


def _actions(context, given=frozenset()):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    try:
        backend, robot, deprecated = resolve_backend(arg("backend"), arg("robot"),
                                                     "backend" in given, "robot" in given)
        if deprecated:
            get_logger("babble.launch.py").warning(deprecated)
        options = BabbleOptions(backend=backend, robot=robot, base_link=arg("base_link"),
                                tip_link=arg("tip_link"), robot_ip=arg("robot_ip"),
                                task=arg("task"),
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
    given: set = set()
    return LaunchDescription([OpaqueFunction(function=_note_given, args=[given]), *declared,
                              OpaqueFunction(function=_actions, args=[given])])
