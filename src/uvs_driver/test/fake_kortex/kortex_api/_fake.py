"""The simulated arm behind the fake Kortex API, and the log of every call.

``ARM`` is one process-wide arm (as a real arm is shared by every client of
it). Tests call :func:`reset` first, may set ``ARM.fail[name] = exception`` to
make the call ``name`` (e.g. "BaseClient.SetServoingMode") raise, set
``ARM.home_outcome`` ("end", "abort" or "never"), and drive time with
``ARM.clock``.
"""

from __future__ import annotations

import threading
import time

ACTUATORS = 7
# Kinova's Home: [0, 0.26, 3.14, -2.27, 0, 0.96, 1.57] rad, in deg within 0..360.
HOME_DEG = [0.0, 14.9, 179.9, 229.9, 0.0, 55.0, 90.0]


class FakeArm:
    """A 7-actuator arm: positions deg in [0, 360), speeds deg/s held until changed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail: dict[str, BaseException] = {}
        self.clock = time.monotonic
        self.positions = [0.0] * ACTUATORS
        self.speeds = [0.0] * ACTUATORS
        self.tool_pose = (0.0, -0.0246, 1.3073)
        self.home_outcome = "end"
        self.actuator_count = ACTUATORS
        self.faulted = False
        self._last = None
        self._lock = threading.Lock()

    def call(self, name: str, **payload) -> None:
        """Record a call; raise the exception a test configured for it."""
        with self._lock:
            self.calls.append((name, payload))
        if name in self.fail:
            raise self.fail[name]

    def names(self) -> list[str]:
        """The recorded call names, in order."""
        return [name for name, _ in self.calls]

    def advance(self) -> None:
        """Integrate the held speeds up to the clock's now."""
        now = self.clock()
        if self._last is not None:
            dt = now - self._last
            self.positions = [(p + dt * v) % 360.0 for p, v in zip(self.positions, self.speeds)]
        self._last = now


ARM = FakeArm()


def reset() -> FakeArm:
    """A fresh arm and call log (call at the start of every test)."""
    global ARM
    ARM = FakeArm()
    return ARM


def arm() -> FakeArm:
    return ARM
