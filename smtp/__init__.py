"""SMTP for the MSSanté operator (being built with the SMTP issue).

What will live here: the trust-space MX listener (port 25, mutual TLS with
IGC-Santé certificates, whitelist checks), authenticated submission (587/465),
the durable queue and its runner, the mTLS delivery client and the DSN/bounce
builder.

Built so far: :mod:`smtp.dsn`, RFC 3464 delivery status notifications
(bilingual human part, machine part, returned headers or message) and the
RFC 3461 NOTIFY/RET/xtext parameter parsing the server and the queue will use.
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
