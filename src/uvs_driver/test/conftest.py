"""Fixtures of the uvs_driver tests: the Kortex double (test/kortex_double) on sys.path.

No Gen3 is reachable where uvs is tested; the double stands in for Kinova's kortex_api
and the arm behind it (see kortex_double/README.md). Each test gets a fresh arm, served
by a firmware server in the test's process (``KORTEX_DOUBLE_ADDRESS`` points at it, so
child processes, such as the gen3 backend's supervisor, reach the same arm).
"""

import inspect
import sys
from pathlib import Path

import pytest

DOUBLE_DIR = Path(__file__).with_name("kortex_double")
# Gen3 7-DOF (config/robots/gen3.yaml): joint names, continuous joints, tool offset m.
JOINTS = tuple(f"joint_{i}" for i in range(1, 8))
CONTINUOUS = (True, False, True, False, True, False, True)
TOOL_OFFSET = 0.12


def _forget_double() -> None:
    for name in list(sys.modules):
        if name in ("kortex_api", "gen3_double", "firmware_server") or name.startswith(
                "kortex_api."):
            del sys.modules[name]


@pytest.fixture
def kortex(monkeypatch):
    """The double on sys.path and its firmware served; returns its module ``gen3_double``
    with a fresh 7-DOF arm (``kortex.current()``; ``kortex.reset(dof, clock)`` for
    another)."""
    _forget_double()
    monkeypatch.syspath_prepend(str(DOUBLE_DIR))
    import firmware_server
    import gen3_double

    gen3_double.reset()
    server = firmware_server.serve()
    monkeypatch.setenv(firmware_server.ADDRESS_ENV, server.address)
    try:
        yield gen3_double
    finally:
        server.close()
        _forget_double()


@pytest.fixture
def arm(kortex):
    """The double's simulated arm (gen3_double.Gen3Double)."""
    return kortex.current()


@pytest.fixture
def gen3(kortex):
    """gen3(**kwargs) -> a connected Gen3Backend for the 7-DOF Gen3; closed after the test."""
    from uvs_driver.backends import BackendError
    from uvs_driver.gen3_backend import Gen3Backend

    opened = []

    def connect(**kwargs):
        params = dict(ip="10.0.0.7", username="admin", password="admin",
                      session_inactivity_timeout_ms=30000,
                      connection_inactivity_timeout_ms=1500, tick_period=0.05,
                      continuous=CONTINUOUS, tool_offset=TOOL_OFFSET)
        params.update(kwargs)
        # Keywords an older backend does not take are left out, so these tests also run
        # against the backend before issue #12 (and show which defects it has).
        accepted = inspect.signature(Gen3Backend).parameters
        backend = Gen3Backend(JOINTS, **{k: v for k, v in params.items() if k in accepted})
        opened.append(backend)
        return backend

    yield connect
    for backend in opened:
        try:
            backend.close()
        except BackendError:
            pass
