"""DOUBLE kortex_api.autogen.messages.Base_pb2 (tests only): the Base messages and enums
the gen3 backend uses, with the names and values of Kinova's API reference
(enm_Base_ServoingMode, enm_Base_ActionType) and of ros_kortex's ActionEvent
(including the pre-/post-processing events that Kinova's Python reference omits)."""

from kortex_api.autogen.messages._message import EnumType, Field, Message
from kortex_api.autogen.messages.Common_pb2 import (  # noqa: F401 - Base_pb2 exposes them
    NotificationHandle,
    NotificationOptions,
    Timestamp,
)

ServoingMode = EnumType("ServoingMode", {
    "UNSPECIFIED_SERVOING_MODE": 0, "MULTI_LEVEL_SERVOING": 1, "SINGLE_LEVEL_SERVOING": 2,
    "LOW_LEVEL_SERVOING": 3, "BYPASS_SERVOING": 4})

ActionType = EnumType("ActionType", {
    "UNSPECIFIED_ACTION": 0, "SEND_TWIST_COMMAND": 1, "SEND_JOINT_SPEEDS": 4,
    "REACH_POSE": 6, "REACH_JOINT_ANGLES": 7, "TOGGLE_ADMITTANCE_MODE": 13,
    "APPLY_EMERGENCY_STOP": 28, "CLEAR_FAULTS": 29, "TIME_DELAY": 31, "EXECUTE_ACTION": 32,
    "SEND_GRIPPER_COMMAND": 33, "STOP_ACTION": 35})

ActionEvent = EnumType("ActionEvent", {
    "UNSPECIFIED_ACTION_EVENT": 0, "ACTION_END": 1, "ACTION_ABORT": 2, "ACTION_PAUSE": 3,
    "ACTION_START": 4, "ACTION_PREPROCESS_START": 5, "ACTION_PREPROCESS_ABORT": 6,
    "ACTION_PREPROCESS_END": 7, "ACTION_POSTPROCESS_START": 8, "ACTION_POSTPROCESS_ABORT": 9,
    "ACTION_POSTPROCESS_END": 10})

for _enum in (ServoingMode, ActionType, ActionEvent):
    globals().update(_enum.items())


class ServoingModeInformation(Message):
    FIELDS = {"servoing_mode": Field("enum")}


class ArmStateInformation(Message):
    FIELDS = {"active_state": Field("enum"), "connection": Field("string")}


class ActuatorInformation(Message):
    FIELDS = {"count": Field("uint32")}


class JointSpeed(Message):
    FIELDS = {"joint_identifier": Field("uint32"), "value": Field("float"),
              "duration": Field("uint32")}


class JointSpeeds(Message):
    FIELDS = {"joint_speeds": Field(JointSpeed, repeated=True), "duration": Field("uint32")}


class JointAngle(Message):
    FIELDS = {"joint_identifier": Field("uint32"), "value": Field("float")}


class JointAngles(Message):
    FIELDS = {"joint_angles": Field(JointAngle, repeated=True)}


class JointTrajectoryConstraint(Message):
    FIELDS = {"type": Field("enum"), "value": Field("float")}


class ConstrainedJointAngles(Message):
    FIELDS = {"joint_angles": Field(JointAngles),
              "constraint": Field(JointTrajectoryConstraint)}


class RequestedActionType(Message):
    FIELDS = {"action_type": Field("enum")}


class ActionHandle(Message):
    FIELDS = {"identifier": Field("uint32"), "action_type": Field("enum"),
              "permission": Field("uint32")}


class Action(Message):
    FIELDS = {"handle": Field(ActionHandle), "name": Field("string"),
              "application_data": Field("string"),
              "reach_joint_angles": Field(ConstrainedJointAngles)}


class ActionList(Message):
    FIELDS = {"action_list": Field(Action, repeated=True)}


class ActionNotification(Message):
    FIELDS = {"action_event": Field("enum"), "handle": Field(ActionHandle),
              "timestamp": Field(Timestamp), "abort_details": Field("enum"),
              "connection": Field("string")}
