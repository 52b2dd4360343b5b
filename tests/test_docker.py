"""The Docker files against each other and the repository, without a Docker engine.

No engine runs here, so the image is never built: these tests read .dockerignore,
docker/compose.yaml and docker/Dockerfile the way Docker does (its ignore-pattern rules,
compose's ${VAR:-default} interpolation, the Dockerfile's line continuations), and run
their shell lines in bash with the external tools they call (pip3, rosdep, apt-get,
ros2) replaced by recorders of their arguments: what is asserted is the exact argv each
tool would get. The package.xml files are checked against what the code imports.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
BAGS = "/uvs/bags"


# --- .dockerignore -------------------------------------------------------------------------

def _ignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(exception, regex) per line of .dockerignore, as moby's patternmatcher reads them."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((exception, re.compile(regex + r"\Z")))
    return patterns


def _ignored(path: str, patterns) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context.

    A path is out when the last pattern matching it, or one of its parent folders, is
    not an exception.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for exception, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not exception
    return ignored


@pytest.mark.parametrize("path", [
    ".git/HEAD",
    ".venv/lib/python3.11/site-packages/torch/__init__.py",
    "build/uvs_interfaces/CMakeCache.txt",
    "install/setup.bash",
    "log/latest_build/events.log",
    "bags/servo_20260101-120000/metadata.yaml",
    "demo/servo_bag/servo_bag_0.mcap",
    "out/x.json",
    "bench/single_point/table.json",
    "src/uvs_core/uvs_core/__pycache__/robot.cpython-312.pyc",
])
def test_dockerignore_keeps_a_used_checkout_out_of_the_context(path):
    assert _ignored(path, _ignore_patterns())


def test_dockerignore_keeps_every_tracked_file_and_a_kortex_wheel():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             timeout=30, check=True).stdout.splitlines()
    assert len(tracked) > 100
    patterns = _ignore_patterns()
    assert [p for p in tracked if _ignored(p, patterns)] == []
    assert not _ignored("docker/wheels/kortex_api-2.6.0.post3-py3-none-any.whl", patterns)


def test_the_ignore_matcher_follows_docker_rules():
    patterns = [(False, re.compile(r"build\Z")), (False, re.compile(r"(?:.*/)?[^/]*\.pyc\Z")),
                (True, re.compile(r"keep\.pyc\Z"))]
    assert _ignored("build/a/b", patterns)
    assert not _ignored("src/build_helpers.py", patterns)
    assert _ignored("a/b/c.pyc", patterns)
    assert not _ignored("keep.pyc", patterns)


# --- shell lines run with recorded tools ---------------------------------------------------

def _run_recorded(script: str, tools: list[str], tmp_path: Path, env: dict[str, str]):
    """Run `script` in bash as the Dockerfile's SHELL does, with each of `tools` a recorder.

    Returns the argv of each call of a recorded tool, in order, as [tool, *args].
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    for tool in tools:
        recorder = bin_dir / tool
        recorder.write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys\n"
            f"with open({str(log)!r}, 'a') as f:\n"
            "    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n")
        recorder.chmod(0o755)
    full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), **env}
    result = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=full_env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


# --- Dockerfile ----------------------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuations joined, comments dropped."""
    instructions, current = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, args = current.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def _run_line(needle: str) -> str:
    runs = [args for keyword, args in _dockerfile() if keyword == "RUN" and needle in args]
    assert len(runs) == 1, f"one RUN with {needle!r}, found {len(runs)}"
    return runs[0]


def _requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_kortex_api_wheel_is_a_build_argument_empty_by_default():
    instructions = _dockerfile()
    first_from = next(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    args = {i: a for i, (keyword, a) in enumerate(instructions) if keyword == "ARG"}
    # Declared after FROM, so that the RUN lines see it; empty default.
    assert [a for i, a in args.items() if i > first_from] == ["KORTEX_API_WHEEL="]


@pytest.mark.parametrize("wheel", ["", "docker/wheels/kortex_api-2.6.0.post3-py3-none-any.whl"])
def test_pip_step_installs_the_pins_and_the_kortex_wheel_only_when_given(tmp_path, wheel):
    calls = _run_recorded(_run_line("KORTEX_API_WHEEL"), ["pip3"], tmp_path,
                          {"KORTEX_API_WHEEL": wheel})
    pins = _requirement_pins()
    expected = [["pip3", "install", f"rosbags=={pins['rosbags']}",
                 f"pykdtree=={pins['pykdtree']}"]]
    assert expected == [["pip3", "install", "rosbags==0.11.9", "pykdtree==1.4.3"]]
    if wheel:
        expected.append(["pip3", "install", "--no-deps", f"/uvs/{wheel}", "protobuf==3.20.3"])
    assert calls == expected


def test_torch_is_the_pinned_cpu_wheel(tmp_path):
    calls = _run_recorded(_run_line("torch=="), ["pip3"], tmp_path, {})
    assert _requirement_pins()["torch"] == "2.13.0"
    assert calls == [
        ["pip3", "install", "setuptools>=77.0.3,<80"],
        ["pip3", "install", "torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu"],
    ]
    # The setuptools pin satisfies torch's own requirement.
    required = [r for r in metadata.requires("torch") or [] if r.startswith("setuptools")]
    assert required == ["setuptools>=77.0.3"]


def test_rosdep_skips_the_distribution_torch(tmp_path):
    # rm recorded too: the line ends by clearing apt's lists, which must stay on this machine.
    calls = _run_recorded(_run_line("rosdep install"), ["apt-get", "rosdep", "rm"], tmp_path,
                          {"ROS_DISTRO": "kilted"})
    assert [call[0] for call in calls] == ["apt-get", "rosdep", "rosdep", "rm"]
    assert calls[0] == ["apt-get", "update"]
    assert calls[1] == ["rosdep", "update", "--rosdistro", "kilted"]
    install = calls[2]
    assert install[:8] == ["rosdep", "install", "--from-paths", "src", "--ignore-src", "-y",
                           "--rosdistro", "kilted"]
    # rosdep splits --skip-keys on spaces.
    skipped = install[install.index("--skip-keys") + 1].split(" ")
    assert skipped == ["python3-torch", "python3-rosbags-pip", "rviz2"]
    declared = set().union(*_depends().values())
    assert set(skipped) <= declared, "a skipped key no package.xml declares"
    # Each skipped Python key is pip-installed at the version requirements.txt pins.
    pins = _requirement_pins()
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for key, name in {"python3-torch": "torch", "python3-rosbags-pip": "rosbags"}.items():
        assert key in skipped
        assert f"{name}=={pins[name]}" in dockerfile


def test_runs_start_in_the_bags_volume():
    workdirs = [args for keyword, args in _dockerfile() if keyword == "WORKDIR"]
    assert workdirs[-1] == BAGS
    keywords = [keyword for keyword, _ in _dockerfile()]
    assert keywords[-2:] == ["ENTRYPOINT", "CMD"]


# --- compose -------------------------------------------------------------------------------

def _interpolate(value, env: dict[str, str]):
    """Compose's interpolation: ${VAR:-default}, ${VAR}, $$ for a literal $."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match):
        if match[0] == "$$":
            return "$"
        name, default = match[1], match[3] or ""
        return env.get(name) or default

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", replace, value)


def _services(env: dict[str, str] | None = None) -> dict:
    return _interpolate(yaml.safe_load(COMPOSE.read_text())["services"], env or {})


def _launch(service: dict, tmp_path: Path) -> dict[str, str]:
    """The launch arguments the service's command hands to `ros2 launch`."""
    calls = _run_recorded(shlex.join(service["command"]), ["ros2"], tmp_path, {})
    assert len(calls) == 1
    argv = calls[0]
    assert argv[:4] == ["ros2", "launch", "uvs_bringup", "servo.launch.py"]
    pairs = [arg.split(":=", 1) for arg in argv[4:]]
    assert all(len(pair) == 2 for pair in pairs), argv
    return dict(pairs)


def _launch_argument_names() -> list[str]:
    tree = ast.parse((ROOT / "launch/servo.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "ARGUMENTS":
            return [element.elts[0].value for element in node.value.elts]
    raise AssertionError("no ARGUMENTS in servo.launch.py")


def _check_launch_arguments(args: dict[str, str]) -> None:
    from uvs_bringup.graph import GraphOptions

    assert set(args) <= set(_launch_argument_names())
    # Raises on a robot, task or camera the graph does not know.
    GraphOptions(backend=args["backend"], robot=args.get("robot", "gen3"),
                 robot_ip=args["robot_ip"], task=args["task"],
                 estimator=args["estimator"], camera=args["camera"],
                 video_device=int(args.get("video_device", "0")))
    # The shipped model of the estimator for the robot model (the Gen3's at models/<task>).
    robot = args.get("robot", "gen3")
    shipped = ROOT / "models" / ("" if robot == "gen3" else robot)
    assert (shipped / args["task"] / args["estimator"]).is_dir()


def test_build_context_is_the_repo_root_with_its_dockerignore():
    for service in _services().values():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / ".dockerignore").is_file()
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert service["build"]["args"] == {"KORTEX_API_WHEEL": ""}
    wheel = "docker/wheels/kortex_api-2.6.0.post3-py3-none-any.whl"
    args = _services({"KORTEX_API_WHEEL": wheel})["uvs"]["build"]["args"]
    assert args == {"KORTEX_API_WHEEL": wheel}


def test_default_service_is_the_sim_without_devices(tmp_path):
    services = _services()
    always_on = [name for name, s in services.items() if not s.get("profiles")]
    assert always_on == ["uvs"]
    uvs = services["uvs"]
    assert "devices" not in uvs
    args = _launch(uvs, tmp_path)
    assert {k: args[k] for k in ("backend", "robot", "task", "estimator", "camera",
                                 "record")} == {
        "backend": "sim", "robot": "gen3", "task": "single_point", "estimator": "nk_tanh",
        "camera": "sim", "record": "false"}
    (tmp_path / "ur5e").mkdir()
    ur5e = _launch(_services({"UVS_ROBOT": "ur5e"})["uvs"], tmp_path / "ur5e")
    assert (ur5e["backend"], ur5e["robot"]) == ("sim", "ur5e")
    _check_launch_arguments(ur5e)
    _check_launch_arguments(args)


def test_webcam_profile_passes_the_device_through(tmp_path):
    webcam = _services()["uvs-webcam"]
    assert webcam["profiles"] == ["webcam"]
    assert webcam["devices"] == ["/dev/video0:/dev/video0"]
    args = _launch(webcam, tmp_path)
    assert (args["backend"], args["task"], args["camera"], args["video_device"]) == (
        "gen3", "visual_servo", "webcam", "0")
    _check_launch_arguments(args)
    moved = _services({"UVS_VIDEO_DEVICE": "/dev/video2"})["uvs-webcam"]["devices"]
    assert moved == ["/dev/video2:/dev/video0"]


@pytest.mark.parametrize("name", ["uvs", "uvs-webcam"])
def test_bags_are_recorded_into_the_mounted_volume(tmp_path, name):
    env = {"UVS_RECORD": "true", "UVS_BACKEND": "gen3", "UVS_ROBOT_IP": "10.0.0.2"}
    service = _services(env)[name]
    mounts = [volume.split(":") for volume in service["volumes"]]
    bag_mounts = [(source, target) for source, target in mounts if target == BAGS]
    assert len(bag_mounts) == 1
    assert (COMPOSE.parent / bag_mounts[0][0]).resolve() == ROOT / "bags"
    args = _launch(service, tmp_path)
    assert (args["record"], args["backend"], args["robot_ip"]) == ("true", "gen3", "10.0.0.2")
    # A new folder per run (ros2 bag record refuses an existing one), inside the volume.
    assert re.fullmatch(rf"{BAGS}/servo_(webcam_)?\d{{8}}-\d{{6}}", args["bag"]), args["bag"]


# --- package.xml: declared dependencies ----------------------------------------------------

def _depends() -> dict[str, set[str]]:
    """Package name -> names of its exec_depend (and depend) entries."""
    from catkin_pkg.package import parse_package

    result = {}
    for path in sorted(ROOT.glob("src/*/package.xml")):
        package = parse_package(path)
        result[package.name] = {d.name for d in package.exec_depends}
    return result


def test_bringup_declares_what_its_launch_file_starts():
    bringup = _depends()["uvs_bringup"]
    for key in ("rviz2", "ros2bag", "rosbag2_storage_mcap", "robot_state_publisher",
                "python3-rosbags-pip", "uvs_driver", "uvs_estimation", "uvs_control",
                "uvs_vision"):
        assert key in bringup, key


# What each imported top-level module needs declared: a rosdep key, or None where the
# module has none (the reason next to it, and how the image installs it).
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "urdf_parser_py": "urdfdom_py",   # the ROS package that ships the module
    **{name: name for name in (
        "rclpy", "std_msgs", "std_srvs", "sensor_msgs", "geometry_msgs", "visualization_msgs",
        "rcl_interfaces", "ament_index_python", "launch", "launch_ros", "uvs_interfaces",
        "uvs_core", "uvs_learning", "uvs_driver", "uvs_estimation", "uvs_control", "uvs_vision",
        "uvs_bringup", "uvs_ros")},
    "pykdtree": None,     # no rosdep key: pip, pinned, in the Dockerfile
    "kortex_api": None,   # Kinova's wheel: the KORTEX_API_WHEEL build argument
    "ruamel": None,       # a dependency of rosbags (checked below)
    "setuptools": None,   # setup.py only: the ament_python build tool
    "ray": None,          # optional extra (requirements-ray.txt), only for --executor ray
}


def _runtime_imports(package: str) -> set[str]:
    """Top-level modules imported by a package's code (not its tests), standard library out."""
    folders = [ROOT / "src" / package]
    if package == "uvs_bringup":
        folders.append(ROOT / "launch")  # installed by uvs_bringup (a symlink in its folder)
    modules = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            if "test" in path.relative_to(folder).parts[:-1]:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != package}


@pytest.mark.parametrize("package", sorted(p.parent.name for p in ROOT.glob("src/*/package.xml")))
def test_every_import_is_declared_in_the_package_xml(package):
    imports = _runtime_imports(package)
    unknown = imports - set(ROSDEP_KEYS)
    assert not unknown, f"{package} imports {unknown}: add their rosdep keys to ROSDEP_KEYS"
    needed = {ROSDEP_KEYS[m] for m in imports if ROSDEP_KEYS[m]}
    assert needed - _depends()[package] == set()


def test_modules_without_a_rosdep_key_come_with_the_image():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"pykdtree=={_requirement_pins()['pykdtree']}" in dockerfile
    assert "${KORTEX_API_WHEEL}" in dockerfile
    assert any(r.startswith("ruamel.yaml") for r in metadata.requires("rosbags"))
