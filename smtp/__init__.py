"""SMTP for the MSSanté operator.

The trust-space MX (mutual TLS with IGC-Santé certificates, whitelist checks),
authenticated submission (587/465), the durable queue and its runner, the mTLS
delivery client, DSNs, DKIM, and the MSS-C executors (``smtp.patients``,
``smtp.mdn``, ``smtp.notify``). See docs/smtp.md. Exported here: the RFC 3461
/ 3464 DSN helpers other packages use.
"""

from smtp.dsn import (
    RecipientStatus,
    Report,
    build_dsn,
    must_not_send_dsn,
    notify_wants,
    parse_notify,
    parse_ret,
    xtext_decode,
    xtext_encode,
)

__all__ = [
    "RecipientStatus",
    "Report",
    "build_dsn",
    "must_not_send_dsn",
    "notify_wants",
    "parse_notify",
    "parse_ret",
    "xtext_decode",
    "xtext_encode",
]
