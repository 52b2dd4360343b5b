"""DOUBLE kortex_api.UDPTransport (tests only): datagrams may be lost (no answer)."""

from kortex_api._transport import _Transport


class UDPTransport(_Transport):
    KIND = "UDP"
