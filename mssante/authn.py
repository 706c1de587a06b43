"""Who the SASL credentials open: the one credential check of submission and IMAP.

Both protocols decode the SASL exchange with :mod:`mssante.sasl`, then hand the
credentials here, so a password, a client certificate or a bearer token opens
exactly the same mailbox over SMTP and IMAP, with the same throttle:

* PLAIN/LOGIN: an Argon2 hash of the BAL (unless the operator turned passwords off),
  or for ``<INS>@<patient domain>`` the patient registry's (open spaces only);
* EXTERNAL: the TLS client certificate's fingerprint bound to a BAL;
* XOAUTH2/OAUTHBEARER: a JWT from the configured issuer, ``"issuer subject"``
  bound to a BAL.

An authorization identity other than the login (PLAIN's authzid, IMAP's
``user*mailbox``) must be a mailbox the login may open (an ORG or APP BAL it
is a member of). Failures are slowed down and, past a limit, locked out per
account and per client address.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from annuaire import (
    Bal,
    InsError,
    address_key,
    bals_for,
    may_open,
    parse_patient_address,
    verify_patient_password,
)
from annuaire import verify_password as check_password
from annuaire.bal import certificate_fingerprint
from mssante import sasl
from mssante.clock import Clock
from mssante.db import Database
from mssante.lockout import FailureThrottle
from mssante.oauth import TokenError, TokenVerifier

__all__ = ["Attempt", "Authenticator", "Refusal"]

#: ``log(message, level, **fields)`` of the calling session.
Log = Callable[..., None]


class Refusal(enum.Enum):
    FAILED = "credentials invalid"
    LOCKED = "too many failed authentications"


@dataclass(frozen=True)
class Attempt:
    """The credentials and what the connection knows about the client."""

    credentials: sasl.Credentials
    peer_ip: str
    peer_cert: x509.Certificate | None
    #: EXTERNAL was offered: the certificate verified against our trust anchors.
    external_allowed: bool


class Authenticator:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        throttle: FailureThrottle,
        *,
        password_auth: bool = True,
        tokens: TokenVerifier | None = None,
        patient_domain: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.throttle = throttle
        self.password_auth = password_auth
        self.tokens = tokens
        #: Logins in this domain are patients (``<INS>@domain``), checked against the registry.
        self.patient_domain = patient_domain

    async def authenticate(self, attempt: Attempt, log: Log) -> str | Refusal:
        """The address key of the mailbox opened, or why not (after the throttle's pause)."""
        account, authzid = self._claim(attempt)
        verdict = self.throttle.check(account, attempt.peer_ip)
        if not verdict.allowed:
            log("authentication refused", logging.WARNING, reason=verdict.reason)
            return Refusal.LOCKED
        identity = await asyncio.to_thread(self._verify, attempt, log)
        if identity is not None and authzid is not None:
            identity = await asyncio.to_thread(self._act_as, identity, authzid)
        if identity is None:
            self.throttle.failed(account, attempt.peer_ip)
            if verdict.delay_seconds:
                await self.clock.sleep(verdict.delay_seconds)
            mechanism = type(attempt.credentials).__name__
            log("authentication failed", logging.WARNING, mechanism=mechanism)
            return Refusal.FAILED
        self.throttle.succeeded(account, attempt.peer_ip)
        return identity

    @staticmethod
    def _claim(attempt: Attempt) -> tuple[str, str | None]:
        """The throttle's account key and the authorization identity asked for."""
        creds = attempt.credentials
        if isinstance(creds, sasl.PasswordCredentials):
            return creds.authcid, creds.authzid
        if isinstance(creds, sasl.ExternalCredentials):
            cert = attempt.peer_cert
            return f"cert:{_fingerprint(cert) if cert else 'none'}", creds.authzid
        return f"bearer:{creds.user or '?'}", creds.user

    def _verify(self, attempt: Attempt, log: Log) -> str | None:
        creds = attempt.credentials
        if isinstance(creds, sasl.PasswordCredentials):
            if not self.password_auth:
                return None
            ins = self._patient(creds.authcid)
            with self.db.read() as conn:
                if ins is not None:
                    ok = verify_patient_password(conn, ins, creds.password)
                else:
                    ok = check_password(conn, creds.authcid, creds.password)
            return address_key(creds.authcid) if ok else None
        if isinstance(creds, sasl.ExternalCredentials):
            if attempt.peer_cert is None or not attempt.external_allowed:
                return None
            with self.db.read() as conn:
                bound = bals_for(conn, "certificate", _fingerprint(attempt.peer_cert))
            return _pick(bound, creds.authzid)
        if self.tokens is None:
            return None
        try:
            claims = self.tokens.verify(creds.token)
        except TokenError as exc:
            log("bearer token refused", logging.WARNING, reason=exc.reason)
            return None
        with self.db.read() as conn:
            bound = bals_for(conn, "oauth", f"{claims.issuer} {claims.subject}")
        return _pick(bound, creds.user)

    def _patient(self, login: str) -> str | None:
        """The INS of a patient login (MSS-C), None for any other login."""
        if self.patient_domain is None:
            return None
        try:
            return parse_patient_address(login, self.patient_domain)
        except InsError:
            return None

    def _act_as(self, identity: str, authzid: str) -> str | None:
        """An authzid other than the login must be a mailbox the login may open."""
        try:
            wanted = address_key(authzid)
        except ValueError:
            return None
        if wanted == identity:
            return identity
        with self.db.read() as conn:
            return wanted if may_open(conn, authzid, identity) else None

    def owns(self, identity: str, address: str) -> bool:
        """May the mailbox ``identity`` use ``address`` (its own, or one it is member of)?"""
        try:
            if address_key(address) == identity:
                return True
        except ValueError:
            return False
        with self.db.read() as conn:
            return may_open(conn, address, identity)


def _fingerprint(cert: x509.Certificate) -> str:
    return certificate_fingerprint(cert.public_bytes(Encoding.DER))


def _pick(bound: list[Bal], authzid: str | None) -> str | None:
    """The BAL a certificate or token opens: the one asked for, or the only one."""
    keys = [b.address_key for b in bound]
    if authzid is not None:
        try:
            key = address_key(authzid)
        except ValueError:
            return None
        return key if key in keys else None
    return keys[0] if len(keys) == 1 else None
