"""DOUBLE (tests only): the part the TCP and UDP transports share.

A transport is one socket to the double's firmware server (``firmware_server``, at
``KORTEX_DOUBLE_ADDRESS``), so the arm is reachable from several processes as a real
Gen3 is. ``connect``, ``send`` and ``disconnect`` return once the arm has taken the
request and raise what the arm's side says (ConnectionRefusedError, BrokenPipeError,
OSError ENOTCONN, ...), as a socket call does; answers and notifications come back from
a reader thread of the transport to the router (``registerOnFrameCallback``) and to the
notification handlers, now, later, or never, as the arm sends them.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import threading
from dataclasses import dataclass

import firmware_server

# s a transport waits for the arm to take a request (it answers in microseconds; a
# connect may wait for the arm's injected connect_delay).
_CONNECT_TIMEOUT = 30.0
_REQUEST_TIMEOUT = 10.0


@dataclass
class _Error:
    code: int
    sub_code: int
    text: str


@dataclass
class _Reply:
    frame_id: int
    payload: object
    error: _Error | None


class _Transport:
    KIND = ""

    def __init__(self) -> None:
        self.address = None
        self.maxTxBufferSize = 65507
        self._on_frame = None
        self._notification_handlers: dict[int, object] = {}
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list]] = {}
        self._pending_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._dead: OSError | None = None

    def connect(self, ip: str, port: int) -> None:
        self.address = (ip, port)
        server = os.environ.get(firmware_server.ADDRESS_ENV)
        if not server:
            raise OSError(errno.EHOSTUNREACH, f"No route to host (the Kortex double's "
                          f"firmware is not served: set {firmware_server.ADDRESS_ENV})")
        host, server_port = server.rsplit(":", 1)
        sock = socket.create_connection((host, int(server_port)), timeout=_CONNECT_TIMEOUT)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"kortex-double-{self.KIND.lower()}")
        self._reader.start()
        try:
            self._request("connect", (self.KIND, ip, int(port), os.getpid()), _CONNECT_TIMEOUT)
        except OSError:
            self._close_socket()
            raise

    def disconnect(self) -> None:
        if self._sock is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        try:
            self._request("disconnect", (), _REQUEST_TIMEOUT)
        finally:
            self._close_socket()

    def send(self, frame) -> None:
        if self._sock is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        self._request("frame", (frame,), _REQUEST_TIMEOUT)

    def registerOnFrameCallback(self, callback) -> None:
        self._on_frame = callback

    def getMaxTxBufferSize(self) -> int:
        return self.maxTxBufferSize

    # -- the socket to the arm
    def _request(self, op: str, args: tuple, timeout: float) -> None:
        if self._dead is not None:
            raise BrokenPipeError(errno.EPIPE, f"Broken pipe ({self._dead})")
        seq = next(self._seq)
        done, outcome = threading.Event(), []
        with self._pending_lock:
            self._pending[seq] = (done, outcome)
        try:
            with self._write_lock:
                firmware_server.send(self._sock, (op, seq, *args))
            if not done.wait(timeout):
                raise TimeoutError(errno.ETIMEDOUT, f"the arm did not take {op} within "
                                   f"{timeout:g} s")
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise BrokenPipeError(errno.EPIPE, f"Broken pipe ({exc})") from exc
        finally:
            with self._pending_lock:
                self._pending.pop(seq, None)
        error = outcome[0]
        if error is not None:
            raise error

    def _read(self) -> None:
        sock = self._sock
        try:
            while True:
                message = firmware_server.receive(sock)
                kind = message[0]
                if kind == "done":
                    with self._pending_lock:
                        waiter = self._pending.get(message[1])
                    if waiter is not None:
                        waiter[1].append(message[2])
                        waiter[0].set()
                elif kind == "reply":
                    _, frame_id, payload, error = message
                    if self._on_frame is not None:
                        self._on_frame(_Reply(frame_id, payload,
                                              None if error is None else _Error(*error)))
                elif kind == "notify":
                    handler = self._notification_handlers.get(message[1])
                    if handler is not None:
                        handler(message[2])
        except (EOFError, OSError) as exc:
            self._dead = exc if isinstance(exc, OSError) else OSError(
                errno.ECONNRESET, "the arm closed the connection")
            with self._pending_lock:
                waiters = list(self._pending.values())
            for done, outcome in waiters:
                outcome.append(BrokenPipeError(errno.EPIPE, "Broken pipe"))
                done.set()

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
