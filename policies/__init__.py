"""MSSanté and MSS-C rules as pure decision functions.

Facts in, decision out: accept, or refuse with an enhanced status code and a
human text, plus the side effects the caller must run (deliver, send an
automatic return, notify, open or close a conversation). Protocol modules
never re-implement a rule; they call these.
"""

from policies.attachments import check_patient_attachments
from policies.envoi_y import (
    X_MSS_CODECDA,
    X_MSS_INS,
    X_MSS_MES,
    XDM_SUBJECT_MARKER,
    FanOut,
    FanOutReason,
    fan_out,
    forwarded_headers,
    xdm_subject,
)
from policies.mssc import (
    REPLY_MARKER,
    AttachmentsCheck,
    Deliver,
    Drop,
    Effect,
    MessageFacts,
    Notify,
    SendAck,
    SendReturn,
    SetConversation,
    closes_exchange,
    decide_from_patient,
    decide_test_responder,
    decide_to_patient,
    mdn_recipient,
    notification_due,
    patient_copy,
    patient_display_name,
    professional_display_name,
)
from policies.texts import ReturnKind

__all__ = [
    "REPLY_MARKER",
    "XDM_SUBJECT_MARKER",
    "X_MSS_CODECDA",
    "X_MSS_INS",
    "X_MSS_MES",
    "AttachmentsCheck",
    "Deliver",
    "Drop",
    "Effect",
    "FanOut",
    "FanOutReason",
    "MessageFacts",
    "Notify",
    "ReturnKind",
    "SendAck",
    "SendReturn",
    "SetConversation",
    "check_patient_attachments",
    "closes_exchange",
    "decide_from_patient",
    "decide_test_responder",
    "decide_to_patient",
    "fan_out",
    "forwarded_headers",
    "mdn_recipient",
    "notification_due",
    "patient_copy",
    "patient_display_name",
    "professional_display_name",
    "xdm_subject",
]
