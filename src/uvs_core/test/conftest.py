"""Shared fixtures for the uvs_core kinematics, task, sim and babbling tests."""

import dataclasses

import numpy as np
import pytest

from uvs_core.robot import Robot, load_robot


@pytest.fixture(scope="session")
def gen3() -> Robot:
    return load_robot("gen3")


@pytest.fixture(scope="session")
def gen3_no_tool(gen3) -> Robot:
    return dataclasses.replace(gen3, tool_offset=0.0)


@pytest.fixture(scope="session")
def ur5e() -> Robot:
    return load_robot("ur5e")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def _central_difference(f, q: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d f / d q by central differences. f: (k,) -> (m,); returns (m, k).

    Truncation error ~ h**2 / 6 * |f'''| and round-off ~ eps * |f| / h: both
    ~1e-11 for h = 1e-5 and |f| ~ 1 (m), ~1e-8 for |f| ~ 500 (px).
    """
    cols = []
    for i in range(q.shape[0]):
        e = np.zeros_like(q)
        e[i] = h
        cols.append((f(q + e) - f(q - e)) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.fixture(scope="session")
def central_difference():
    """The central-difference Jacobian helper, (f, q, h=1e-5) -> (m, k)."""
    return _central_difference


def _pin_q(model, robot: Robot, q: np.ndarray) -> np.ndarray:
    """uvs q: (n,) rad / m -> pinocchio configuration (continuous joints: cos, sin)."""
    import pinocchio as pin

    out = pin.neutral(model)
    for j, name in enumerate(robot.joint_names):
        joint = model.joints[model.getJointId(name)]
        if joint.nq == 2:
            out[joint.idx_q:joint.idx_q + 2] = np.cos(q[j]), np.sin(q[j])
        else:
            out[joint.idx_q] = q[j]
    return out


def _configurations(robot: Robot, seed: int, samples: int) -> np.ndarray:
    """(samples, n) rad / m: uniform within the limits; continuous joints over two turns."""
    rng = np.random.default_rng(seed)
    q = robot.sample(rng, samples)
    q[:, robot.continuous] = rng.uniform(-2 * np.pi, 2 * np.pi,
                                         (samples, int(robot.continuous.sum())))
    return q


@pytest.fixture(scope="session")
def pin_q():
    """The URDF tests' map from uvs joint positions to pinocchio's configuration."""
    return _pin_q


@pytest.fixture(scope="session")
def configurations():
    """The URDF tests' random configurations: configurations(robot, seed, samples)."""
    return _configurations
