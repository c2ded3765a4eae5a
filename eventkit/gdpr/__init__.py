"""GDPR erasure: forget a subject or a message, per-subject keys for crypto-shredding.

::

    from eventkit.gdpr import KeyStore, forget_subject

    report = await forget_subject(app, store, engine, "bank.customer.c-1")
"""

from eventkit.gdpr.erasure_rows import audit_entries
from eventkit.gdpr.forget import (
    CANNOT_ERASE,
    ForgetReport,
    MessageForgetReport,
    forget_message,
    forget_pattern,
    forget_subject,
    replay_command,
    subjects_matching,
)
from eventkit.gdpr.keys import KeyStore, derive_key
from eventkit.gdpr.notice import (
    ForgottenNotice,
    apply_notice,
    decode_notice,
    is_notice,
    is_system_subject,
    notice_subject,
)

__all__ = [
    "CANNOT_ERASE",
    "ForgetReport",
    "ForgottenNotice",
    "KeyStore",
    "MessageForgetReport",
    "apply_notice",
    "audit_entries",
    "decode_notice",
    "derive_key",
    "forget_message",
    "forget_pattern",
    "forget_subject",
    "is_notice",
    "is_system_subject",
    "notice_subject",
    "replay_command",
    "subjects_matching",
]
