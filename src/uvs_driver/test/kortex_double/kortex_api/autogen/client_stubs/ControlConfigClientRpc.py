"""DOUBLE kortex_api.autogen.client_stubs.ControlConfigClientRpc (tests only)."""

from kortex_api.autogen.client_stubs._stub import Stub
from kortex_api.autogen.messages import ControlConfig_pb2
from kortex_api.RouterClient import RouterClientSendOptions

_DEFAULT = RouterClientSendOptions()


class ControlConfigClient(Stub):
    SERVICE = "ControlConfig"

    def GetToolConfiguration(self, deviceId=0, options=_DEFAULT):
        return self._call("GetToolConfiguration", None, None, deviceId, options)

    def SetToolConfiguration(self, toolconfiguration, deviceId=0, options=_DEFAULT):
        self._call("SetToolConfiguration", toolconfiguration,
                   ControlConfig_pb2.ToolConfiguration, deviceId, options)
