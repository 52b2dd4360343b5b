"""FAKE kortex_api.RouterClient (tests only)."""

from kortex_api import _fake


class RouterClientSendOptions:
    def __init__(self) -> None:
        self.andForget = False
        self.delay_ms = 0
        self.timeout_ms = 10000


class RouterClient:
    def __init__(self, transport, error_callback) -> None:
        self.transport = transport
        self.error_callback = error_callback
        _fake.ARM.call("RouterClient", transport=type(transport).__name__,
                       basic_error_callback=error_callback is RouterClient.basicErrorCallback)

    @staticmethod
    def basicErrorCallback(exception) -> None:
        print("basicErrorCallback:", exception)
