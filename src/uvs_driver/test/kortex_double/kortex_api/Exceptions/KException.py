"""DOUBLE kortex_api.Exceptions.KException (tests only): base of the Kortex exceptions."""


class KException(Exception):
    """A Kortex error; ``error`` is a Frame_pb2.Error (error_code, error_sub_code,
    error_sub_string)."""
