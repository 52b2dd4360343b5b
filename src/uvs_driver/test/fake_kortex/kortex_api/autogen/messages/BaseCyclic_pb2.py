"""FAKE kortex_api.autogen.messages.BaseCyclic_pb2 (tests only)."""

from kortex_api.autogen.messages._repeated import Message, Repeated


class ActuatorFeedback(Message):
    _fields = {"position": 0.0, "velocity": 0.0, "torque": 0.0, "fault_bank_a": 0,
               "fault_bank_b": 0}


class BaseFeedback(Message):
    _fields = {"active_state": 0, "tool_pose_x": 0.0, "tool_pose_y": 0.0, "tool_pose_z": 0.0}


class Feedback(Message):
    _fields = {"frame_id": 0, "base": BaseFeedback, "actuators": lambda: Repeated(ActuatorFeedback)}
