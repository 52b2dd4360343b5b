"""DOUBLE kortex_api.RouterClient (tests only).

As the real one: ``send`` registers a future for the request frame, hands the frame to
the transport (whose errors, e.g. BrokenPipeError, propagate to the caller) and returns
the future; the stub then waits ``future.result(options.getTimeoutInSecond())``, which
raises concurrent.futures.TimeoutError when the arm does not answer in time. An error
frame sets a KServerException on the future. ``RouterClientSendOptions`` defaults to
``timeout_ms = 10000`` as in Kinova's API.
"""

from __future__ import annotations

import itertools
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from kortex_api.autogen.messages import Errors_pb2, Frame_pb2
from kortex_api.Exceptions.KClientException import KClientException
from kortex_api.Exceptions.KServerException import KServerException

MSG_FRAME_REQUEST, MSG_FRAME_RESPONSE = 1, 2


class RouterClientSendOptions:
    def __init__(self) -> None:
        self.andForget = False
        self.delay_ms = 0
        self.timeout_ms = 10000

    def getTimeoutInSecond(self) -> float:
        return self.timeout_ms / 1000


@dataclass
class RequestFrame:
    """What goes over the wire; the double also carries the caller's timeout so the arm
    can log it (the real frame does not)."""

    frame_id: int
    function: str
    payload: object
    device_id: int
    timeout_ms: int | None = None


@dataclass
class _ErrorFrame:
    payload: Frame_pb2.Error


class RouterClient:
    def __init__(self, transport, errorCallback=None) -> None:
        self.transport = transport
        self.sessionId = 0
        self.m_isActive = True
        self.errorCallback = errorCallback if errorCallback is not None else (
            self.basicErrorCallback)
        self.m_hitCallback = None
        self.notificationService: dict[int, object] = {}
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        transport.registerOnFrameCallback(self.onFrameCallback)

    def basicErrorCallback(self, kException) -> None:
        print(f"[{type(self).__name__}] {kException}", file=sys.stderr)

    def SetActivationStatus(self, isActive: bool) -> None:
        self.m_isActive = isActive

    def send(self, payloadData, serviceVersion, functionUid, deviceId, options=None):
        future: Future = Future()
        if not self.m_isActive:
            future.set_exception(KClientException(Errors_pb2.ERROR_PROTOCOL_CLIENT,
                                                  "Activation Status set to False"))
            return future
        with self._lock:
            frame_id = next(self._ids)
            self._pending[frame_id] = future
        payload = None if payloadData is None else payloadData._copy()
        try:
            self.transport.send(RequestFrame(frame_id, functionUid, payload, deviceId,
                                             None if options is None else options.timeout_ms))
            if self.m_hitCallback is not None:
                self.m_hitCallback(MSG_FRAME_REQUEST)
        except BaseException:
            with self._lock:
                self._pending.pop(frame_id, None)
            future.set_exception(KClientException(Errors_pb2.ERROR_PROTOCOL_CLIENT,
                                                  "Couldn't send message frame"))
            raise
        return future

    def onFrameCallback(self, reply) -> None:
        """A response from the arm (transport thread or the caller's)."""
        if not self.m_isActive:
            return
        with self._lock:
            future = self._pending.pop(reply.frame_id, None)
        if self.m_hitCallback is not None:
            self.m_hitCallback(MSG_FRAME_RESPONSE)
        if future is None:
            self.errorCallback(KClientException(Errors_pb2.UNREGISTERED_FRAME_RECEIVED,
                                                "response to no pending request"))
            return
        if reply.error is not None:
            error = Frame_pb2.Error(error_code=reply.error.code,
                                    error_sub_code=reply.error.sub_code,
                                    error_sub_string=reply.error.text)
            future.set_exception(KServerException(_ErrorFrame(error)))
        else:
            future.set_result(reply)

    def registerNotificationCallback(self, serviceId, notificationService) -> None:
        self.notificationService[serviceId] = notificationService

    def registerHitCallback(self, cb) -> None:
        self.m_hitCallback = cb

    def getConnectionId(self) -> int:
        return self.sessionId
