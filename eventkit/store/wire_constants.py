"""JetStream header names and server error codes eventkit depends on, in one place."""

from __future__ import annotations

# headers the server reads
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"

# headers the server writes (direct get)
SUBJECT = "Nats-Subject"
SEQUENCE = "Nats-Sequence"
TIME_STAMP = "Nats-Time-Stamp"
NUM_PENDING = "Nats-Num-Pending"
LAST_SEQUENCE = "Nats-Last-Sequence"
STATUS = "Status"
DESCRIPTION = "Description"

# headers eventkit writes
EVENT_TYPE = "Eventkit-Type"
SCHEMA_VERSION = "Eventkit-Schema"
SYSTEM = "Eventkit-System"
"""On eventkit's own events (no ``Eventkit-Type``): their kind, e.g. ``forgotten``."""
ENCRYPTION = "Eventkit-Enc"
"""Present when the payload is encrypted: the key id it was sealed with."""
CHAIN = "Eventkit-Chain"
"""This event's link in its subject's hash chain (see :mod:`eventkit.store.chain`)."""
CHAIN_PREV = "Eventkit-Chain-Prev"
"""The link of the chained message before it on the subject (64 zeros for the first)."""

# JetStream err_code values
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_STREAM_NOT_FOUND = 10059
ERR_CONSUMER_NOT_FOUND = 10014
ERR_CONSUMER_ALREADY_EXISTS = 10013
ERR_CONSUMER_EXISTS_CHANGED = 10012
ERR_CONSUMER_LIMIT = 10026
ERR_BATCH_DISABLED = 10174
ERR_BATCH_GAP = 10176
ERR_BATCH_TOO_LARGE = 10199
ERR_BATCH_BAD_COMMIT = 10200
ERR_BATCH_DUPLICATE_MSG_ID = 10201
ERR_WRONG_LAST_SEQUENCE_CONSTANT = 10164
"""``wrong last sequence`` without the number: a second expectation on a subject inside one
batch, or, on a replicated stream, an expectation while another one on the subject is in
flight. Either way nothing was stored."""
ERR_EXPECTED_SUBJECT_WITHOUT_SEQUENCE = 10193
ERR_MESSAGE_NOT_FOUND = 10037
ERR_MESSAGE_DELETE_FAILED = 10057
"""With description ``stream store EOF`` (a sequence past the stream's end) or ``no message
found`` (deleted a moment before, by another delete): either way the message is not there."""
ERR_SEQUENCE_NOT_FOUND = 10043

MAX_BATCH = 1000
"""Most messages the server takes in one atomic batch."""

ATOMIC_BATCH_SERVER = "2.12.0"
RESET_CONSUMER_SERVER = "2.14.0"


SYSTEM_TOKEN = "_eventkit"
"""The subject token under a stream that eventkit reserves for its own events."""


def system_prefix(stream: str) -> str:
    """``<stream>._eventkit.``: subjects of eventkit's own events, passed over by ``read_all``."""
    return f"{stream}.{SYSTEM_TOKEN}."


__all__ = [
    "ATOMIC_BATCH_SERVER",
    "BATCH_COMMIT",
    "BATCH_ID",
    "BATCH_SEQUENCE",
    "CHAIN",
    "CHAIN_PREV",
    "DESCRIPTION",
    "ENCRYPTION",
    "ERR_BATCH_BAD_COMMIT",
    "ERR_BATCH_DISABLED",
    "ERR_BATCH_DUPLICATE_MSG_ID",
    "ERR_BATCH_GAP",
    "ERR_BATCH_TOO_LARGE",
    "ERR_CONSUMER_ALREADY_EXISTS",
    "ERR_CONSUMER_EXISTS_CHANGED",
    "ERR_CONSUMER_LIMIT",
    "ERR_CONSUMER_NOT_FOUND",
    "ERR_EXPECTED_SUBJECT_WITHOUT_SEQUENCE",
    "ERR_MESSAGE_DELETE_FAILED",
    "ERR_MESSAGE_NOT_FOUND",
    "ERR_SEQUENCE_NOT_FOUND",
    "ERR_STREAM_NOT_FOUND",
    "ERR_WRONG_LAST_SEQUENCE",
    "ERR_WRONG_LAST_SEQUENCE_CONSTANT",
    "EVENT_TYPE",
    "EXPECTED_LAST_SUBJECT_SEQUENCE",
    "EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT",
    "LAST_SEQUENCE",
    "MAX_BATCH",
    "MSG_ID",
    "NUM_PENDING",
    "RESET_CONSUMER_SERVER",
    "SCHEMA_VERSION",
    "SEQUENCE",
    "STATUS",
    "SUBJECT",
    "SYSTEM",
    "SYSTEM_TOKEN",
    "TIME_STAMP",
    "system_prefix",
]
