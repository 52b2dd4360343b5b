"""Named QoS profiles of the driver's topics (shared by the driver and its clients)."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Joint velocity commands: only the newest one matters, and it must not be lost
# silently (a lost zero would leave the arm moving until the watchdog fires).
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# The driver's side of the command topic: several sources' messages queue side by side,
# so each is seen and the owner's are not overwritten by another source's (one source
# at a time, see driver_node).
COMMAND_READER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Joint and task states: reliable so a recorder (babbler, rosbag2) gets every
# sample; a short queue absorbs a subscriber's scheduling hiccups.
STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# A recorder keeps a deeper queue than the publisher so none of its samples drop.
RECORD_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Safety status: latched (a late subscriber gets the current state), only the newest matters.
SAFETY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
