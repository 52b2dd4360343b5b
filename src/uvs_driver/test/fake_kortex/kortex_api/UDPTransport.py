"""FAKE kortex_api.UDPTransport (tests only)."""

from kortex_api import _fake


class UDPTransport:
    def connect(self, ip: str, port: int) -> None:
        _fake.ARM.call("UDPTransport.connect", ip=ip, port=port)

    def disconnect(self) -> None:
        _fake.ARM.call("UDPTransport.disconnect")
