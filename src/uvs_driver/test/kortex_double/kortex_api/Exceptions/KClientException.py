"""DOUBLE kortex_api.Exceptions.KClientException (tests only): a client-side error
(``KClientException(sub_code, description)``, error code ERROR_PROTOCOL_CLIENT)."""

from kortex_api.autogen.messages import Errors_pb2, Frame_pb2
from kortex_api.Exceptions.KException import KException


class KClientException(KException):
    def __init__(self, sub_code: int, description: str) -> None:
        self.error = Frame_pb2.Error()
        self.error.error_code = Errors_pb2.ERROR_PROTOCOL_CLIENT
        self.error.error_sub_code = sub_code
        self.error.error_sub_string = description
        super().__init__(description)

    def __str__(self) -> str:
        code = Errors_pb2.ErrorCodes.Name(self.error.error_code)
        sub = Errors_pb2.SubErrorCodes.Name(self.error.error_sub_code)
        return (f"Clientside error encountered: Type: {code} -> SUB_NAME: {sub} -> "
                f"{self.error.error_sub_string}")
