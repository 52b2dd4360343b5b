"""The gen3 backend's supervisor: a process of its own that stops the arm when the driver
freezes (issue #12, item 4/8).

Kortex joint speeds have no end time, and the backend's watchdog is a thread of the
driver's process: a SIGSTOP, a debugger or a stuck interpreter freezes it too, and only
the firmware's ``connection_inactivity_timeout`` (seconds) would stop the arm. So the
backend starts this module as a child process (``python -m uvs_driver.supervisor``),
which opens a Kortex session of its OWN (a Gen3 takes several; any session's
``Base.Stop`` stops the arm) and watches a heartbeat the driver's ticks write.

Heartbeat: a small file both processes map (an unlinked temporary file, its descriptor
passed to the child), holding little-endian float64 slots (see ``_SLOTS``): the
driver's last tick (``time.monotonic()``, the same clock in every process), whether the
arm was commanded to move (joint speeds sent, no Stop since), the timeout (s), and,
written by the supervisor, how many Stops it sent, when, and how stale the heartbeat
was. Writing it costs the tick two ``struct.pack_into`` calls; a frozen process writes
nothing, which is the point.

The supervisor sends ``Base.Stop`` (timeout ``stop_timeout_ms``) when the heartbeat is
older than the timeout while the arm was commanded to move, and again every
``REPEAT`` s while it stays stale (a failed Stop is retried after ``RETRY`` s, over a
new session when the connection broke). It never sends anything for an idle arm, so
the Web App and the joystick keep control of it. It exits on a ``close`` line on its
stdin (the backend closing), or when its stdin reaches end of file, i.e. the driver
process died, after a final Stop if the arm was commanded to move. SIGINT is ignored:
a Ctrl-C in a terminal reaches the whole process group, and the driver, not the
supervisor, decides how to stop.

Protocol on the pipes: the parent writes one JSON line of settings (address,
credentials, timeouts: not on the command line, where ``ps`` shows them); the child
answers ``ready`` (its session is open) or ``error: <why>`` on stdout, then logs on
stderr (the driver's log). No rclpy, no numpy: the child starts in a fraction of a
second.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ["REPEAT", "RETRY", "SupervisorError", "SupervisorProcess", "main"]

#: s between Stops while the heartbeat stays stale (after a successful one).
REPEAT = 0.5
#: s before a failed Stop is tried again.
RETRY = 0.02
# Slots of the shared heartbeat, float64 each.
_SLOTS = ("heartbeat", "moving", "timeout", "stops", "last_stop", "last_age")
_INDEX = {name: i for i, name in enumerate(_SLOTS)}
_SIZE = 8 * len(_SLOTS)


class SupervisorError(RuntimeError):
    """The supervisor process could not start (the message says why)."""


class _Shared:
    """The mapped heartbeat: ``get(name)`` / ``set(name, value)`` of float64 slots."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, _SIZE)

    def get(self, name: str) -> float:
        return struct.unpack_from("<d", self._map, 8 * _INDEX[name])[0]

    def set(self, name: str, value: float) -> None:
        struct.pack_into("<d", self._map, 8 * _INDEX[name], float(value))

    def close(self) -> None:
        self._map.close()


# --------------------------------------------------------------------------- parent side

class SupervisorProcess:
    """Start and feed the supervisor (in the driver's process).

    settings: ip, tcp_port, username, password, session_inactivity_timeout_ms,
    connection_inactivity_timeout_ms, setup_timeout_ms (connecting), stop_timeout_ms
    (each Stop). timeout: s, heartbeat age that trips a Stop. start_timeout: s to wait
    for the child's session. Raises SupervisorError when the child does not come up.
    """

    def __init__(self, settings: dict, timeout: float, start_timeout: float = 20.0) -> None:
        self._file = tempfile.TemporaryFile(prefix="uvs-supervisor-")
        self._file.truncate(_SIZE)
        fd = self._file.fileno()
        self.shared = _Shared(fd)
        self.shared.set("heartbeat", time.monotonic())
        self.set_timeout(timeout)
        env = dict(os.environ)
        # The child imports what this process imports (the real kortex_api or a double put
        # on sys.path at run time, uvs_driver from the overlay).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvs_driver.supervisor", "--fd", str(fd)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,), env=env,
                text=True)
        except OSError:
            self.shared.close()
            self._file.close()
            raise
        self.pid = self.process.pid
        try:
            self.process.stdin.write(json.dumps(settings) + "\n")
            self.process.stdin.flush()
            answer = self._first_line(start_timeout)
        except (OSError, SupervisorError):
            self._kill()
            raise
        if answer != "ready":
            self._kill()
            raise SupervisorError(f"the supervisor process did not start: {answer}")

    def _first_line(self, timeout: float) -> str:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()),
                                  daemon=True, name="supervisor-start")
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            raise SupervisorError(f"the supervisor process did not open its session within "
                                  f"{timeout:g} s")
        text = line[0].strip() if line else ""
        return text or f"it exited with {self.process.poll()} (see its log above)"

    def beat(self) -> None:
        """A tick of the driver: the heartbeat is now."""
        self.shared.set("heartbeat", time.monotonic())

    def set_moving(self, moving: bool) -> None:
        """Joint speeds were sent and no Stop since (True), or the arm was stopped."""
        self.shared.set("moving", 1.0 if moving else 0.0)

    def set_timeout(self, timeout: float) -> None:
        """s: a heartbeat older than this while moving trips a Stop."""
        self.shared.set("timeout", float(timeout))

    @property
    def stops(self) -> int:
        """How many Stops the supervisor sent."""
        return int(self.shared.get("stops"))

    @property
    def last_stop_age(self) -> float:
        """s: how stale the heartbeat was at the supervisor's latest Stop."""
        return self.shared.get("last_age")

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, timeout: float = 2.0) -> int | None:
        """Ask the child to close its session and exit; kill it after ``timeout`` s.
        Returns its exit code."""
        try:
            self.process.stdin.write("close\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass     # it is gone already
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.shared.close()
        self._file.close()
        return self.process.returncode

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5.0)


# ---------------------------------------------------------------------------- child side

def _log(message: str) -> None:
    print(f"[uvs supervisor {os.getpid()}] {message}", file=sys.stderr, flush=True)


class _Session:
    """One Kortex session of the supervisor's own: TCP transport, router, session manager,
    BaseClient, as Kinova's examples open one."""

    def __init__(self, settings: dict) -> None:
        from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient
        from kortex_api.autogen.messages import Errors_pb2, Session_pb2
        from kortex_api.Exceptions.KClientException import KClientException
        from kortex_api.Exceptions.KServerException import KServerException
        from kortex_api.RouterClient import RouterClient, RouterClientSendOptions
        from kortex_api.SessionManager import SessionManager
        from kortex_api.TCPTransport import TCPTransport

        self.settings = settings
        self.errors = (KServerException, KClientException, OSError)
        self._kserver = KServerException
        self._not_moving = Errors_pb2.ROBOT_NOT_MOVING
        self._options_cls = RouterClientSendOptions
        self.transport = TCPTransport()
        self.router = RouterClient(self.transport, lambda exc: None)
        self.session = None
        self.transport.connect(settings["ip"], int(settings["tcp_port"]))
        info = Session_pb2.CreateSessionInfo()
        info.username = settings["username"]
        info.password = settings["password"]
        info.session_inactivity_timeout = int(settings["session_inactivity_timeout_ms"])
        info.connection_inactivity_timeout = int(settings["connection_inactivity_timeout_ms"])
        session = SessionManager(self.router, lambda: None)
        session.CreateSession(info, self.options(settings["setup_timeout_ms"]))
        self.session = session
        self.base = BaseClient(self.router)

    def options(self, timeout_ms):
        options = self._options_cls()
        options.timeout_ms = int(timeout_ms)
        return options

    def stop(self) -> None:
        """Base.Stop; ROBOT_NOT_MOVING counts as done. Raises the API's errors."""
        try:
            self.base.Stop(options=self.options(self.settings["stop_timeout_ms"]))
        except self._kserver as exc:
            if exc.get_error_sub_code() != self._not_moving:
                raise

    def close(self) -> None:
        if self.session is not None:
            self.session.CloseSession(self.options(self.settings["stop_timeout_ms"]))
        self.router.SetActivationStatus(False)
        try:
            self.transport.disconnect()
        except OSError:
            pass     # a dead socket: nothing left to close


def _kortex_errors() -> tuple[type[BaseException], ...]:
    """What the Kortex API raises for the arm or the link (OSError includes
    concurrent.futures.TimeoutError and BrokenPipeError)."""
    from kortex_api.Exceptions.KClientException import KClientException
    from kortex_api.Exceptions.KServerException import KServerException

    return KServerException, KClientException, OSError


def _stop(session: _Session | None, settings: dict) -> tuple[_Session | None, str | None]:
    """Send Stop (over a new session when ``session`` is None); (session, error)."""
    try:
        if session is None:
            session = _Session(settings)
        session.stop()
        return session, None
    except TimeoutError as exc:      # no answer in time: the session itself may be fine
        return session, f"no answer within {settings['stop_timeout_ms']} ms ({exc})"
    except _kortex_errors() as exc:  # refused or broken: the next try opens a new session
        if session is not None:
            try:
                session.close()
            except _kortex_errors():
                pass     # the old session is dead anyway
        return None, f"{type(exc).__name__}: {exc}"


def supervise(shared: _Shared, session: _Session, settings: dict,
              closing: threading.Event, parent_gone: threading.Event) -> None:
    """Watch the heartbeat until ``closing`` is set (clean shutdown, or the parent died)."""
    next_stop = 0.0
    while not closing.is_set():
        now = time.monotonic()
        beat, moving, timeout = (shared.get("heartbeat"), shared.get("moving") > 0.5,
                                 shared.get("timeout"))
        age = now - beat
        if moving and age > timeout:
            if now >= next_stop:
                session, error = _stop(session, settings)
                if error is None:
                    shared.set("stops", shared.get("stops") + 1)
                    shared.set("last_stop", time.monotonic())
                    shared.set("last_age", age)
                    if next_stop == 0.0:
                        _log(f"no tick of the driver for {age:.3f} s while the arm moved: "
                             "sent Stop")
                    next_stop = now + REPEAT
                else:
                    _log(f"Stop failed: {error}; retrying")
                    next_stop = now + RETRY
            wait = max(next_stop - time.monotonic(), 0.001)
        else:
            next_stop = 0.0
            # Moving: wake when this heartbeat would become stale (a new beat pushes that
            # on). Idle: often enough to see motion begin within half a timeout.
            wait = max(beat + timeout - now + 0.001 if moving else timeout / 2.0, 0.001)
        closing.wait(wait)
    if parent_gone.is_set() and shared.get("moving") > 0.5:
        session, error = _stop(session, settings)
        _log("the driver process is gone while the arm moved: "
             + ("sent Stop" if error is None else f"Stop failed: {error}"))
    if session is not None:
        try:
            session.close()
        except _kortex_errors() as exc:
            _log(f"closing the session: {exc}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Stops a Gen3 when the uvs driver freezes "
                                     "(started by the gen3 backend; settings on stdin).")
    parser.add_argument("--fd", type=int, required=True, help="the heartbeat's descriptor")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = json.loads(sys.stdin.readline() or "{}")
    shared = _Shared(args.fd)
    try:
        session = _Session(settings)
    except (ImportError, KeyError, *_kortex_errors()) as exc:   # told to the parent, who raises
        print(f"error: Kortex session to {settings.get('ip')}:{settings.get('tcp_port')} "
              f"failed: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print("ready", flush=True)
    closing, parent_gone = threading.Event(), threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "close":
                break
        else:
            parent_gone.set()     # end of file: the driver process died
        closing.set()

    threading.Thread(target=read_stdin, daemon=True, name="supervisor-stdin").start()
    supervise(shared, session, settings, closing, parent_gone)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
