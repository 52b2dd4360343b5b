"""DOUBLE kortex_api.autogen.messages.Frame_pb2 (tests only): the Error carried by an error
frame, which KServerException and KClientException hold."""

from kortex_api.autogen.messages._message import Field, Message


class Error(Message):
    FIELDS = {"error_code": Field("uint32"), "error_sub_code": Field("uint32"),
              "error_sub_string": Field("string")}
