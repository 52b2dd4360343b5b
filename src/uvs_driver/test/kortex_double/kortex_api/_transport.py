"""DOUBLE (tests only): the part the TCP and UDP transports share. They carry request
frames to the simulated arm (:mod:`gen3_double`) and its answers back to the router."""

from __future__ import annotations

import errno

import gen3_double


class _Transport:
    KIND = ""

    def __init__(self) -> None:
        self.address = None
        self.maxTxBufferSize = 65507
        self._on_frame = None
        self._conn = None
        self._notification_handlers: dict[int, object] = {}

    def connect(self, ip: str, port: int) -> None:
        self.address = (ip, port)
        self._conn = gen3_double.current().connect(self, self.KIND, ip, int(port))

    def disconnect(self) -> None:
        if self._conn is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        gen3_double.current().disconnect(self._conn)

    def send(self, frame) -> None:
        if self._conn is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        gen3_double.current().receive(self._conn, frame)

    def registerOnFrameCallback(self, callback) -> None:
        self._on_frame = callback

    def getMaxTxBufferSize(self) -> int:
        return self.maxTxBufferSize

    # -- called by the simulated arm
    def deliver(self, reply) -> None:
        if self._on_frame is not None:
            self._on_frame(reply)

    def notify(self, handle_id: int, notification) -> None:
        handler = self._notification_handlers.get(handle_id)
        if handler is not None:
            handler(notification)
