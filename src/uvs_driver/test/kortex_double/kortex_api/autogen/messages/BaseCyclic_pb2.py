"""DOUBLE kortex_api.autogen.messages.BaseCyclic_pb2 (tests only): the feedback messages
with the fields of Kinova's BaseCyclic reference (positions deg in [0, 360), velocities
deg/s, tool pose m / deg, fault banks)."""

from kortex_api.autogen.messages._message import Field, Message


class ActuatorFeedback(Message):
    FIELDS = {"command_id": Field("uint32"), "status_flags": Field("uint32"),
              "jitter_comm": Field("uint32"), "position": Field("float"),
              "velocity": Field("float"), "torque": Field("float"),
              "current_motor": Field("float"), "voltage": Field("float"),
              "temperature_motor": Field("float"), "temperature_core": Field("float"),
              "fault_bank_a": Field("uint32"), "fault_bank_b": Field("uint32"),
              "warning_bank_a": Field("uint32"), "warning_bank_b": Field("uint32")}


class BaseFeedback(Message):
    FIELDS = {"active_state_connection_identifier": Field("uint32"),
              "active_state": Field("enum"), "arm_voltage": Field("float"),
              "arm_current": Field("float"), "temperature_cpu": Field("float"),
              "temperature_ambient": Field("float"),
              **{f"tool_pose_{a}": Field("float")
                 for a in ("x", "y", "z", "theta_x", "theta_y", "theta_z")},
              **{f"tool_twist_{k}_{a}": Field("float")
                 for k in ("linear", "angular") for a in ("x", "y", "z")},
              "fault_bank_a": Field("uint32"), "fault_bank_b": Field("uint32"),
              "warning_bank_a": Field("uint32"), "warning_bank_b": Field("uint32")}


class Feedback(Message):
    FIELDS = {"frame_id": Field("uint32"), "base": Field(BaseFeedback),
              "actuators": Field(ActuatorFeedback, repeated=True)}
