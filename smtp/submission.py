"""Submission (587 STARTTLS, 465 implicit TLS): mail from our own users and software.

* AUTH only inside TLS: PLAIN/LOGIN against Argon2 hashes (unless the
  operator disables them), EXTERNAL with a client certificate bound to a BAL
  (the national model for APP mailboxes), XOAUTH2/OAUTHBEARER with a JWT from
  the configured OpenID issuer bound to a BAL. Failures are slowed down and
  locked out per account and per client address.
* The envelope sender and every ``From:`` address must be the authenticated
  mailbox or one it is a member of (``553 5.7.1``).
* Recipients must be ours or in the trust space (``550 5.7.1`` naming the
  domain outside it), within their domain's size cap.
* ``Message-ID`` and ``Date`` are added when missing, with a ``Received``
  line; the body is never touched.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from email.message import Message
from email.utils import format_datetime, formataddr, getaddresses

from annuaire import Bridge, InsError, Refused, address_key, get_patient, parse_patient_address
from cda.bridge import is_bridge_client
from mssante import sasl
from mssante.authn import Attempt, Authenticator, Refusal
from policies import patient_display_name
from smtp.accept import field_name
from smtp.endpoint import Endpoint
from smtp.protocol import Auth, AuthResponse, MailFrom, RcptTo, Reply
from smtp.session import Session

__all__ = ["SubmissionPolicy"]

FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
LOCKED = Reply(454, "4.7.0", "Too many failed authentications; try again later")


class SubmissionPolicy:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        name: str,
        implicit_tls: bool,
        auth: Authenticator,
        bridge_clients: frozenset[str] = frozenset(),
    ) -> None:
        self.endpoint = endpoint
        #: Address keys of the mailboxes that may send to the envoi-en-Y bridge (Y-2).
        self.bridge_clients = bridge_clients
        self.name = name
        self.implicit_tls = implicit_tls
        self.normalise_bare_lf = True  # mail clients mean CRLF when they send LF
        self.auth = auth

    def server_context(self) -> ssl.SSLContext:
        """Client certificates are asked for (EXTERNAL), never required."""
        return self.endpoint.server_context()

    # ------------------------------------------------------------------ TLS, AUTH

    async def on_tls(self, session: Session) -> None:
        external = False
        if session.peer_cert is not None:
            result = await self.endpoint.verify_client(session.peer_cert, session.context.clock)
            external = result.ok
            if not result.ok:
                assert result.reason is not None
                session.log("client certificate not usable", reason=result.reason.value)
        session.conn.auth_mechanisms = tuple(
            sasl.advertised(
                tls=True,
                password_enabled=self.auth.password_auth,
                external_available=external,
                oauth_enabled=self.auth.tokens is not None,
            )
        )

    async def on_auth(self, session: Session, event: Auth | AuthResponse) -> None:
        conn = session.conn
        try:
            if isinstance(event, Auth):
                exchange = sasl.start(event.mechanism, event.initial)
                session.state["sasl"] = exchange
                result = exchange.step(None)
            else:
                exchange = session.state["sasl"]  # type: ignore[assignment]
                assert isinstance(exchange, sasl.SaslExchange)
                if event.data is None:
                    conn.respond(Reply(501, "5.0.0", "Authentication cancelled"))
                    return
                result = exchange.step(event.data)
        except sasl.SaslError as exc:
            session.state.pop("sasl", None)
            if "authentication failed" in str(exc):
                conn.respond(FAILED)
            else:
                conn.respond(Reply(501, "5.5.2", f"Authentication exchange refused: {exc}"))
            return
        if isinstance(result, sasl.Challenge):
            conn.challenge(result.data)
            return
        identity = await self._check(session, result)
        if isinstance(identity, Reply):
            if isinstance(result, sasl.BearerCredentials) and identity is FAILED:
                # RFC 7628 §3.2.2: send the error as a challenge, fail on the dummy reply.
                conn.challenge(exchange.fail_challenge(sasl.bearer_error()).data)
                return
            session.state.pop("sasl", None)
            conn.respond(identity)
            return
        session.state.pop("sasl", None)
        session.identity = identity
        conn.authenticated = identity
        session.log("authenticated", mechanism=exchange.mechanism)
        conn.respond(Reply(235, "2.7.0", "Authentication successful"))

    async def _check(self, session: Session, creds: sasl.Credentials) -> str | Reply:
        """The mailbox the credentials open, or the refusal (after the throttle's pause)."""
        attempt = Attempt(
            creds,
            session.peer_ip,
            session.peer_cert,
            external_allowed="EXTERNAL" in session.conn.auth_mechanisms,
        )
        outcome = await self.auth.authenticate(attempt, session.log)
        if outcome is Refusal.LOCKED:
            return LOCKED
        if outcome is Refusal.FAILED:
            return FAILED
        assert isinstance(outcome, str)
        return outcome

    # ------------------------------------------------------------------ envelope

    async def on_mail(self, session: Session, event: MailFrom) -> Reply:
        if session.identity is None:
            return Reply(530, "5.7.0", "Authentication required")
        if not event.address:
            return Reply(553, "5.7.1", "A null sender is not allowed on submission")
        identity = session.identity
        if self._plainly_own(identity, event.address):
            owned = session.state.setdefault("owns", {})
            assert isinstance(owned, dict)
            owned[event.address.lower()] = True
            return Reply(250, "2.1.0", "Sender OK")

        def check() -> tuple[bool, str | None]:  # one trip off the event loop for both
            if not self._owns(session, event.address):
                return False, None
            return True, self._patient_from(identity)

        allowed, patient_from = await asyncio.to_thread(check)
        if not allowed:
            return Reply(
                553,
                "5.7.1",
                f"Sender address not owned by the authenticated user {session.identity}",
            )
        if patient_from is not None:
            session.state["patient_from"] = patient_from
        return Reply(250, "2.1.0", "Sender OK")

    def _plainly_own(self, identity: str, address: str) -> bool:
        """The login's own address, and not a patient's: nothing to look up."""
        try:
            if address_key(address) != identity:
                return False
            patient_domain = self.endpoint.routing.patient_domain
            return parse_patient_address(identity, patient_domain) is None
        except (InsError, ValueError):
            return False

    def _patient_from(self, identity: str) -> str | None:
        """The ``From:`` the server writes for a patient (MSSC-FROM-1), None for others."""
        try:
            ins = parse_patient_address(identity, self.endpoint.routing.patient_domain)
        except InsError:
            return None
        if ins is None:
            return None
        with self.auth.db.read() as conn:
            patient = get_patient(conn, ins)
        return formataddr((patient_display_name(patient) or "", identity), charset="utf-8")

    def _bridge_client(self, sender: str) -> bool:
        with self.auth.db.read() as conn:
            return is_bridge_client(conn, self.bridge_clients, sender)

    def _owns(self, session: Session, address: str) -> bool:
        """Whether the login may send as ``address``; remembered for the session's life
        (the envelope sender is usually the ``From:`` checked again at DATA)."""
        assert session.identity is not None
        owned = session.state.setdefault("owns", {})
        assert isinstance(owned, dict)
        key = address.lower()
        if key not in owned:
            owned[key] = self.auth.owns(session.identity, address)
        return bool(owned[key])

    async def on_rcpt(self, session: Session, event: RcptTo) -> Reply:
        found = await self.endpoint.route(session.context.db, event.address)
        if isinstance(found, Refused):
            return Reply(found.code, found.status, found.reason)
        if isinstance(found, Bridge) and not await asyncio.to_thread(
            self._bridge_client, session.mail.address if session.mail else ""
        ):
            return Reply(
                550, "5.7.1", "Only the bridge's client mailboxes (APP or ORG) may send to it"
            )
        too_big = self.endpoint.caps.refuse_declared(event.address, session.mail)
        if too_big is not None:
            return too_big
        return Reply(250, "2.1.5", "Recipient OK")

    def trace_headers(self, session: Session, headers: Message, queue_id: str) -> bytes:
        out = session.received_header(queue_id, with_auth=True)
        patient_from = session.state.get("patient_from")
        if isinstance(patient_from, str):
            out += f"From: {patient_from}\r\n".encode()
        if headers.get("Message-ID") is None:
            token = secrets.token_hex(12)
            out += f"Message-ID: <{queue_id}.{token}@{session.context.hostname}>\r\n".encode()
        if headers.get("Date") is None:
            out += f"Date: {format_datetime(session.context.clock.now())}\r\n".encode()
        return out

    def drop_field(self, session: Session, field: bytes) -> bool:
        """A patient's ``From:`` is replaced by the registry's name (MSSC-FROM-1)."""
        return "patient_from" in session.state and field_name(field) == b"from"

    def wants_whole_message(self, headers: Message) -> bool:
        return False

    async def whole_message(self, session: Session, data: bytes) -> bytes:
        return b""

    def unverified_note(self, session: Session) -> bytes:
        return b""

    async def on_message(self, session: Session, headers: Message, size: int) -> Reply | None:
        too_big = self.endpoint.caps.refuse_actual(session.recipients, size)
        if too_big is not None:
            return too_big
        addresses = [addr for _, addr in getaddresses(headers.get_all("From", [])) if addr]
        if not addresses:
            return Reply(550, "5.6.0", "The message has no From: header")
        owned = session.state.get("owns", {})
        assert isinstance(owned, dict)
        for address in addresses:
            if owned.get(address.lower()) is True:
                continue  # checked at MAIL FROM in this session
            if not await asyncio.to_thread(self._owns, session, address):
                return Reply(
                    553,
                    "5.7.1",
                    f"From: address not owned by the authenticated user {session.identity}",
                )
        return None
