"""FAKE kortex_api.Exceptions.KClientException (tests only)."""


class KClientException(Exception):
    """The client side failed (timeout, connection lost)."""
