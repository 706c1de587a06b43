"""The trust-space MX: mail from other MSSanté operators, for domains we host.

The rules, in the order a session meets them:

1. TLS first (the core answers ``530 5.7.0`` to MAIL in plaintext);
2. a client certificate that verifies (chain to the anchors, dates,
   revocation, clientAuth) — else ``530 5.7.0`` (none) or ``554 5.7.1`` naming
   the reason;
3. the certificate's subject DN paired in the whitelist with the domain of
   ``MAIL FROM`` (``550 5.7.1``), and later with the domain of ``From:``;
4. recipients in domains we host (no relay: ``550 5.7.1``), under the size
   cap of their domain (LIM-1).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import Message
from email.utils import getaddresses

from annuaire import (
    AddressError,
    Bridge,
    LocalMailbox,
    PatientMailbox,
    Refused,
    Remote,
    Responder,
    dn_from_x509,
    is_listed,
    pair_matches,
    split_address,
)
from certs.formatting import format_name
from smtp import dkim
from smtp.accept import field_name
from smtp.endpoint import Endpoint
from smtp.protocol import Auth, AuthResponse, MailFrom, RcptTo, Reply
from smtp.session import Session

__all__ = ["MxPolicy"]


class MxPolicy:
    name = "mx"
    implicit_tls = False
    normalise_bare_lf = False  # peers are MTAs: a bare LF is refused (smuggling)

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        dkim_verify: bool = True,
        dkim_dns: dkim.DnsLookup | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._dkim_verify = dkim_verify
        self._dkim_dns = dkim_dns

    def server_context(self) -> ssl.SSLContext:
        return self.endpoint.server_context()

    async def on_tls(self, session: Session) -> None:
        cert = session.peer_cert
        if cert is None:
            session.state["refusal"] = Reply(
                530, "5.7.0", "A client certificate (IGC-Santé) is required on the MSSanté MX"
            )
            session.log("peer sent no client certificate", logging.WARNING)
            return
        result = await self.endpoint.verify_client(cert, session.context.clock)
        subject = format_name(cert.subject)
        if not result.ok:
            assert result.reason is not None
            session.state["refusal"] = Reply(
                554, "5.7.1", f"Client certificate refused ({result.reason.value}): {result.detail}"
            )
            session.log(
                "peer certificate refused",
                logging.WARNING,
                reason=result.reason.value,
                subject=subject,
            )
            return
        session.state["dn"] = dn_from_x509(cert.subject)
        session.identity = subject
        session.log("peer certificate verified", subject=subject, tls=session.tls_version)

    async def on_auth(self, session: Session, event: Auth | AuthResponse) -> None:
        raise AssertionError("the MX advertises no AUTH")  # the core refuses AUTH (504)

    def _refusal(self, session: Session) -> Reply | None:
        refusal = session.state.get("refusal")
        if isinstance(refusal, Reply):
            return refusal
        if "dn" not in session.state:
            return Reply(530, "5.7.0", "Must issue a STARTTLS command first")
        return None

    async def _paired(self, session: Session, domain: str) -> Reply | None:
        """The whitelist's verdict on (domain, peer certificate), once per domain and
        session: a peer's session sends many messages from the same domains."""
        verdicts = session.state.setdefault("paired", {})
        assert isinstance(verdicts, dict)
        key = domain.lower()
        if key not in verdicts:
            verdicts[key] = await self._pairing(session, domain)
        verdict = verdicts[key]
        assert verdict is None or isinstance(verdict, Reply)
        return verdict

    async def _pairing(self, session: Session, domain: str) -> Reply | None:
        dn = session.state["dn"]

        def check() -> Reply | None:
            with session.context.db.read() as conn:
                if not is_listed(conn, domain):
                    return Reply(550, "5.7.1", f"Domain {domain} is not in the MSSanté trust space")
                if not pair_matches(conn, domain, dn):  # type: ignore[arg-type]
                    return Reply(
                        550,
                        "5.7.1",
                        f"Certificate {session.identity} is not paired with domain {domain} "
                        "in the MSSanté whitelist",
                    )
            return None

        return await asyncio.to_thread(check)

    async def on_mail(self, session: Session, event: MailFrom) -> Reply:
        refusal = self._refusal(session)
        if refusal is not None:
            return refusal
        if event.address:  # a null sender (a DSN) is checked on its From: header
            try:
                _, domain = split_address(event.address)
            except AddressError as exc:
                return Reply(553, "5.1.7", f"Bad sender address: {exc}")
            refusal = await self._paired(session, domain)
            if refusal is not None:
                session.log("sender refused", logging.WARNING, reply=str(refusal))
                return refusal
        return Reply(250, "2.1.0", "Sender OK")

    async def on_rcpt(self, session: Session, event: RcptTo) -> Reply:
        found = await self.endpoint.route(session.context.db, event.address)
        relay = Reply(550, "5.7.1", "Relaying denied: this MX only accepts mail for its domains")
        if isinstance(found, Refused):
            # Outside the trust space is, for the MX, a relay attempt like any remote domain.
            return (
                relay if found.status == "5.7.1" else Reply(found.code, found.status, found.reason)
            )
        if isinstance(found, Remote):
            return relay
        if isinstance(found, Bridge):
            # Its clients are mailboxes of this node: they submit, they never arrive by MX.
            return Reply(
                550,
                "5.7.1",
                "The envoi-en-Y bridge takes documents by authenticated submission only",
            )
        assert isinstance(found, LocalMailbox | PatientMailbox | Responder)
        too_big = self.endpoint.caps.refuse_declared(event.address, session.mail)
        if too_big is not None:
            return too_big
        return Reply(250, "2.1.5", "Recipient OK")

    def trace_headers(self, session: Session, headers: Message, queue_id: str) -> bytes:
        return session.received_header(queue_id, with_auth=False)

    def drop_field(self, session: Session, field: bytes) -> bool:
        """RFC 8601 §5: an Authentication-Results naming us arrived forged; it goes."""
        if field_name(field) != b"authentication-results":
            return False
        value = field.partition(b":")[2]
        authserv = value.split(b";", 1)[0].strip().split(b" ", 1)[0].lower()
        return authserv == self.endpoint.hostname.lower().encode("ascii", "replace")

    def wants_whole_message(self, headers: Message) -> bool:
        return self._dkim_verify and headers.get("DKIM-Signature") is not None

    async def whole_message(self, session: Session, data: bytes) -> bytes:
        """Verify the DKIM signatures (DNS may block: in a thread) into Authentication-Results."""
        results = await asyncio.to_thread(dkim.verify, data, dns=self._dkim_dns)
        session.log("dkim", results=",".join(r.result for r in results))
        return dkim.authentication_results(results, session.context.hostname)

    def unverified_note(self, session: Session) -> bytes:
        too_big = dkim.DkimResult("none", reason="too large")
        return dkim.authentication_results([too_big], session.context.hostname)

    async def on_message(self, session: Session, headers: Message, size: int) -> Reply | None:
        too_big = self.endpoint.caps.refuse_actual(session.recipients, size)
        if too_big is not None:
            return too_big
        senders = getaddresses(headers.get_all("From", []))
        addresses = [addr for _, addr in senders if addr]
        if not addresses:
            return Reply(550, "5.6.0", "The message has no From: header")
        for address in addresses:
            try:
                _, domain = split_address(address)
            except AddressError:
                return Reply(550, "5.6.0", "The From: header holds no valid address")
            refusal = await self._paired(session, domain)
            if refusal is not None:
                session.log("From: header refused", logging.WARNING, reply=str(refusal))
                return refusal
        return None
