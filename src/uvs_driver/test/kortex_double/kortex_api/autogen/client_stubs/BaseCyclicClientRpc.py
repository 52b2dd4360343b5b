"""DOUBLE kortex_api.autogen.client_stubs.BaseCyclicClientRpc (tests only)."""

from kortex_api.autogen.client_stubs._stub import Stub
from kortex_api.RouterClient import RouterClientSendOptions

_DEFAULT = RouterClientSendOptions()


class BaseCyclicClient(Stub):
    SERVICE = "BaseCyclic"

    def RefreshFeedback(self, deviceId=0, options=_DEFAULT):
        return self._call("RefreshFeedback", None, None, deviceId, options)
