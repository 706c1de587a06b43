"""SMTP for the MSSanté operator (coming with the SMTP issue).

What will live here: the trust-space MX listener (port 25, mutual TLS with
IGC-Santé certificates, whitelist checks), authenticated submission (587/465),
the durable queue and its runner, the mTLS delivery client and the DSN/bounce
builder. The protocol core will be sans-IO; asyncio code only moves bytes.
"""
