"""DOUBLE kortex_api.autogen.client_stubs.SessionClientRpc (tests only)."""

from kortex_api.autogen.client_stubs._stub import Stub
from kortex_api.autogen.messages import Session_pb2
from kortex_api.RouterClient import RouterClientSendOptions

_DEFAULT = RouterClientSendOptions()


class SessionClient(Stub):
    SERVICE = "Session"

    def CreateSession(self, createsessioninfo, deviceId=0, options=_DEFAULT):
        self._call("CreateSession", createsessioninfo, Session_pb2.CreateSessionInfo,
                   deviceId, options)

    def CloseSession(self, deviceId=0, options=_DEFAULT):
        self._call("CloseSession", None, None, deviceId, options)

    def KeepAlive(self, deviceId=0, options=_DEFAULT):
        self._call("KeepAlive", None, None, deviceId, options)
