"""FAKE kortex_api.TCPTransport (tests only)."""

from kortex_api import _fake


class TCPTransport:
    def connect(self, ip: str, port: int) -> None:
        _fake.ARM.call("TCPTransport.connect", ip=ip, port=port)

    def disconnect(self) -> None:
        _fake.ARM.call("TCPTransport.disconnect")
