"""DOUBLE kortex_api.Exceptions.KServerException (tests only).

Shaped like the real one: built from the error frame the arm answered with, it holds
``frame``, ``error`` (Frame_pb2.Error), ``error_code`` and ``error_sub_code``, answers
``get_error_code()`` / ``get_error_sub_code()``, and prints the enum names.
"""

from kortex_api.autogen.messages import Errors_pb2, Frame_pb2
from kortex_api.Exceptions.KException import KException


class KServerException(KException):
    def __init__(self, frame) -> None:
        self.frame = frame
        self.error = Frame_pb2.Error()
        self.error.CopyFrom(frame.payload)
        self.error_code = self.error.error_code
        self.error_sub_code = self.error.error_sub_code
        super().__init__(self.error.error_sub_string)

    def __str__(self) -> str:
        code = Errors_pb2.ErrorCodes.Name(self.error.error_code)
        sub = Errors_pb2.SubErrorCodes.Name(self.error.error_sub_code)
        return f"Server error name={code}, sub name={sub} => {self.error.error_sub_string} \n"

    def get_error_code(self) -> int:
        return self.error_code

    def get_error_sub_code(self) -> int:
        return self.error_sub_code
