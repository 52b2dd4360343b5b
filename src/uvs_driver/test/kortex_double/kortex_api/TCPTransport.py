"""DOUBLE kortex_api.TCPTransport (tests only): on a broken connection send() raises
BrokenPipeError and disconnect() OSError, as a dead socket does."""

from kortex_api._transport import _Transport


class TCPTransport(_Transport):
    KIND = "TCP"
