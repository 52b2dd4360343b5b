"""URDF of a robot description, read back by an independent parser (pinocchio's, on urdfdom).

The URDF's forward kinematics must equal the DH model's (uvs_core.robot) to 1e-9 m at
random configurations; joint names, types and limits must be the YAML's; the visual
cylinders must join the joints up, so RViz draws an arm.
"""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pinocchio as pin
import pytest

from uvs_core.robot import Robot, load_robot
from uvs_core.urdf import TOOL_LINK, robot_urdf, rpy_from_matrix

ROBOTS = ("gen3", "gen3_6dof", "ur5e")
SAMPLES = 200
KORTEX_LINKS = ("base_link", "shoulder_link", "half_arm_1_link", "half_arm_2_link",
                "forearm_link", "spherical_wrist_1_link", "spherical_wrist_2_link",
                "bracelet_link", "end_effector_link")


# Fixed rows before, between and after the joints, every DH parameter non-zero.
SYNTHETIC = {
    "name": "synthetic",
    "dh": [{"theta": 0.3, "d": 0.05, "a": 0.02, "alpha": "pi"},
           {"theta": -0.2, "d": 0.01, "a": -0.03, "alpha": 0.4},
           {"joint": "j1", "theta": 0.1, "d": 0.2, "a": 0.05, "alpha": "pi/2"},
           {"theta": 0.7, "d": -0.04, "a": 0.06, "alpha": -0.3},
           {"theta": -1.1, "d": 0.02, "a": 0.01, "alpha": 1.2},
           {"joint": "j2", "theta": "pi", "d": -0.1, "a": 0.3, "alpha": "-pi/2"},
           {"joint": "j3", "theta": 0.5, "d": 0.15, "a": -0.2, "alpha": 0.9},
           {"theta": 0.25, "d": 0.03, "a": 0.04, "alpha": -1.4},
           {"theta": -0.6, "d": 0.08, "a": -0.02, "alpha": 0.2}],
    "joints": {"j1": {"continuous": True, "velocity": 2.0},
               "j2": {"lower": -2.0, "upper": 1.5, "velocity": 1.0},
               "j3": {"lower": -3.0, "upper": 3.0, "velocity": 0.5}},
    "tool_offset": 0.07,
}


@pytest.fixture(scope="module", params=[*ROBOTS, "synthetic"])
def robot(request) -> Robot:
    if request.param == "synthetic":
        return Robot.from_dict(SYNTHETIC)
    return load_robot(request.param)


@pytest.fixture(scope="module")
def model(robot):
    """(URDF text, pinocchio Model) of the robot."""
    text = robot_urdf(robot)
    return text, pin.buildModelFromXML(text)


def _joint_frames(robot: Robot, q: np.ndarray) -> np.ndarray:
    """(n, 4, 4): the DH frame before each joint's row, turned by the joint angle, which
    is where the URDF puts each moving link; walked row by row, as the DH rows read."""
    t, out = np.eye(4), np.empty((robot.n, 4, 4))
    for (theta, d, a, alpha), j in zip(robot.dh, robot.dh_joint):
        angle = theta + (q[j] if j >= 0 else 0.0)
        ct, st, ca, sa = math.cos(angle), math.sin(angle), math.cos(alpha), math.sin(alpha)
        if j >= 0:
            turned = t.copy()
            turned[:3, :2] = t[:3, :2] @ [[math.cos(q[j]), -math.sin(q[j])],
                                          [math.sin(q[j]), math.cos(q[j])]]
            out[j] = turned
        t = t @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st],
                          [0.0, sa, ca, d], [0.0, 0.0, 0.0, 1.0]])
    return out


def test_joint_names_types_and_limits_are_the_yaml_ones(robot, model):
    text, m = model
    assert list(m.names)[1:] == list(robot.joint_names)   # [0] is pinocchio's "universe"
    xml_types = {j.get("name"): j.get("type") for j in ET.fromstring(text).iter("joint")}
    for j, name in enumerate(robot.joint_names):
        joint = m.joints[m.getJointId(name)]
        if robot.continuous[j]:
            assert xml_types[name] == "continuous"
            assert joint.shortname() == "JointModelRUBZ"   # unbounded revolute about z
        else:
            assert xml_types[name] == "revolute"
            assert joint.shortname() == "JointModelRZ"
            assert m.lowerPositionLimit[joint.idx_q] == robot.lower[j]
            assert m.upperPositionLimit[joint.idx_q] == robot.upper[j]
        assert m.velocityLimit[joint.idx_v] == robot.velocity_limits[j]
    assert sorted(t for t in xml_types.values() if t == "fixed") == ["fixed", "fixed"]


def test_links_are_the_robot_link_names_plus_the_tool_frame(robot, model):
    text, m = model
    root = ET.fromstring(text)
    links = [link.get("name") for link in root.iter("link")]
    assert links == [*robot.link_names, TOOL_LINK]
    assert links[0] == "base_link"
    children = {j.find("child").get("link") for j in root.iter("joint")}
    assert set(links) - children == {"base_link"}               # one root
    body_frames = {f.name for f in m.frames if f.type == pin.FrameType.BODY}
    assert body_frames == set(links)


def test_gen3_links_have_kortex_description_names():
    gen3 = load_robot("gen3")
    assert gen3.link_names == KORTEX_LINKS
    assert load_robot("ur5e").link_names == ("base_link", *(f"link_{i}" for i in range(1, 7)),
                                             "flange")


def test_tool_flange_and_joint_frames_match_the_dh_model(robot, model, pin_q, configurations):
    _, m = model
    data = m.createData()
    tool, flange = m.getFrameId(TOOL_LINK), m.getFrameId(robot.link_names[-1])
    joint_ids = [m.getJointId(name) for name in robot.joint_names]
    worst_position = worst_rotation = 0.0
    for q in configurations(robot, 7, SAMPLES):
        pin.framesForwardKinematics(m, data, pin_q(m, robot, q))
        expected_tool = robot.fk(q)
        expected_flange = expected_tool.copy()
        expected_flange[:3, 3] -= robot.tool_offset * expected_tool[:3, 2]
        got = [(data.oMf[tool].homogeneous, expected_tool),
               (data.oMf[flange].homogeneous, expected_flange)]
        got += [(data.oMi[i].homogeneous, frame)
                for i, frame in zip(joint_ids, _joint_frames(robot, q))]
        for actual, expected in got:
            worst_position = max(worst_position,
                                 np.abs(actual[:3, 3] - expected[:3, 3]).max())
            worst_rotation = max(worst_rotation,
                                 np.abs(actual[:3, :3] - expected[:3, :3]).max())
    assert worst_position < 1e-9      # m
    assert worst_rotation < 1e-9      # rotation matrix entries


def test_tool_frame_at_zero_is_the_documented_point(pin_q):
    """Gen3 at q = 0: straight up, the tool 0.12 m above the interface module at
    (0, -0.0246, 1.1873) m (Kinova user guide)."""
    gen3 = load_robot("gen3")
    m = pin.buildModelFromXML(robot_urdf(gen3))
    data = m.createData()
    pin.framesForwardKinematics(m, data, pin_q(m, gen3, np.zeros(7)))
    np.testing.assert_allclose(data.oMf[m.getFrameId(TOOL_LINK)].translation,
                               [0.0, -0.0246, 1.1873 + 0.12], atol=1e-4)


def test_visual_cylinders_join_every_joint_to_the_next(robot, model, pin_q, configurations):
    """At random configurations, every joint origin (and the flange, the tool point) is an
    end of some link cylinder or lies on a joint's housing axis: RViz draws a connected arm."""
    text, m = model
    geometry = pin.buildGeomFromUrdfString(m, text, pin.GeometryType.VISUAL)
    data, geometry_data = m.createData(), geometry.createData()
    assert len(geometry.geometryObjects) >= robot.n + 2
    for q in configurations(robot, 3, SAMPLES)[:20]:
        pin.framesForwardKinematics(m, data, pin_q(m, robot, q))
        pin.updateGeometryPlacements(m, data, geometry, geometry_data)
        ends = []
        for placement, obj in zip(geometry_data.oMg, geometry.geometryObjects):
            if hasattr(obj.geometry, "halfLength"):     # a cylinder along its z
                axis = placement.rotation[:, 2] * obj.geometry.halfLength
                ends += [placement.translation + axis, placement.translation - axis]
        ends = np.array(ends)
        points = [data.oMi[m.getJointId(name)].translation for name in robot.joint_names]
        points += [data.oMf[m.getFrameId(robot.link_names[-1])].translation]
        for point in points[1:]:
            assert np.linalg.norm(ends - point, axis=1).min() < 1e-6, point


def test_generated_text_is_deterministic_and_exact_where_it_matters(robot):
    text = robot_urdf(robot)
    assert text == robot_urdf(robot)
    assert text.startswith('<?xml version="1.0"?>\n<robot name=')
    # Joint origins carry full float precision (repr), not a rounded decimal.
    if robot.name == "gen3":
        assert 'rpy="1.5707963267948966 0 0"' in text


@pytest.mark.parametrize("seed", range(3))
def test_rpy_from_matrix_inverts_urdf_rpy_including_gimbal_lock(seed):
    rng = np.random.default_rng(seed)
    cases = [rng.uniform(-np.pi, np.pi, 3) for _ in range(200)]
    for pitch in (np.pi / 2, -np.pi / 2, np.pi / 2 - 1e-9, -np.pi / 2 + 3e-8):
        cases += [np.array([r, pitch, y]) for r, y in rng.uniform(-np.pi, np.pi, (20, 2))]
    for roll, pitch, yaw in cases:
        r = pin.rpy.rpyToMatrix(roll, pitch, yaw)          # URDF's Rz(yaw) Ry(pitch) Rx(roll)
        back = pin.rpy.rpyToMatrix(*rpy_from_matrix(r))
        assert np.abs(back - r).max() < 1e-14


def test_bad_arguments_and_link_names_are_rejected():
    gen3 = load_robot("gen3")
    with pytest.raises(ValueError, match="also a link"):
        robot_urdf(gen3, tool_link="bracelet_link")
    with pytest.raises(ValueError, match="radius"):
        robot_urdf(gen3, radius=0.0)
    base = {"dh": [{"joint": "a", "d": 0.1}, {"joint": "b", "a": 0.2}],
            "joints": {"a": {"continuous": True, "velocity": 1.0},
                       "b": {"lower": -1, "upper": 1, "velocity": 1.0}}}
    named = Robot.from_dict({**base, "links": ["base_link", "upper", "lower", "tip"]})
    assert named.link_names == ("base_link", "upper", "lower", "tip")
    assert Robot.from_dict(base).link_names == ("base_link", "link_1", "link_2", "flange")
    with pytest.raises(ValueError, match="'links' must be a list of 4 link names"):
        Robot.from_dict({**base, "links": ["base_link", "upper", "tip"]})
    with pytest.raises(ValueError, match="distinct"):
        Robot.from_dict({**base, "links": ["base_link", "upper", "upper", "tip"]})
