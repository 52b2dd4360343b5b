"""DOUBLE kortex_api.autogen.messages.ControlConfig_pb2 (tests only): the tool configuration
(Kinova's ControlConfig reference: ToolConfiguration, CartesianTransform m / deg, Position)."""

from kortex_api.autogen.messages._message import Field, Message


class CartesianTransform(Message):
    FIELDS = {name: Field("float") for name in ("x", "y", "z", "theta_x", "theta_y", "theta_z")}


class Position(Message):
    FIELDS = {name: Field("float") for name in ("x", "y", "z")}


class ToolConfiguration(Message):
    FIELDS = {"tool_transform": Field(CartesianTransform), "tool_mass": Field("float"),
              "tool_mass_center": Field(Position)}
