"""The patient notification sender: the one way out of the trust space (MSSC-NOTIF-1, TS-3).

MSSanté is closed; the only mail that may leave it is the generic notification
telling a patient, at their personal address, that a message awaits them. It
does not go to the recipient's MX: it is handed to one separately configured
*smarthost* (:class:`SmarthostSettings`), which relays it to ordinary Internet
providers. The queue runner calls :meth:`NotificationSender.deliver` for the
queue rows whose origin is "notification"; like
:meth:`smtp.client.DeliveryClient.deliver` it returns one
:class:`~smtp.client.RecipientOutcome` per recipient and never raises (except on
cancellation).

Transport security, per ``SmarthostSettings.tls``:

* ``"starttls"`` (default): STARTTLS is required. A smarthost that does not
  offer it, or refuses it, gets nothing, not even the envelope (4.7.4).
* ``"implicit"``: TLS from the first byte (submissions port 465).
* ``"none"``: plain TCP, **insecure**: the notification and the envelope (the
  patient's address) cross the network in clear. Only for a local sink in
  tests or labs; AUTH is refused in this mode so no password is sent in clear.

With TLS: version 1.2 at least, the smarthost's chain verified against
``ca_file`` (or the system trust store) and its name against
``SmarthostSettings.host``. A failed handshake or an untrusted certificate is
temporary (4.7.5): an administrator can fix the CA file before messages expire.

DKIM: providers file unsigned mail as spam, so :meth:`~NotificationSender.deliver`
signs each message just before sending (:func:`sign_notification`). The queued
blob stays unsigned, so a rotated key applies to notifications already queued
and a retry carries a fresh ``t=``.

Status codes of our own (RFC 3463), as in :mod:`smtp.client`: 4.4.1 no answer
(refused, connect or greeting timeout); 4.4.2 connection lost or timed out in
the session; 4.7.4 no STARTTLS; 4.7.5 TLS failed or certificate not trusted;
4.7.8 AUTH refused (a credentials problem is ours to fix: temporary); 4.7.0 no
usable AUTH mechanism; 4.3.5 local configuration unusable (CA file, password
file, DKIM key); 5.6.0 the message cannot be DKIM-signed (no single From).

Logs carry the smarthost, the status codes and pseudonymised recipients
(:func:`mssante.logs.pseudonym`), never an address in clear, the smarthost's
reply texts (they may quote the address) or any content.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeAlias

import aiosmtplib
from cryptography.hazmat.primitives import serialization

from certs import BundleError, load_certificates
from mssante.errors import OperatorError
from smtp.client import (
    _STAGE_SMTP,
    _STAGE_TCP,
    _STAGE_TLS,
    _STAGE_TRUSTED,
    OutboundMessage,
    RecipientOutcome,
    _connect,
    _ehlo,
    _envelope,
    _everyone,
    _log_outcomes,
    _mark_unusable,
    _Peer,
    _raise_if_cancelled,
    _reply_failure,
    _session,
    _ssl_cause,
    _TargetFailed,
)
from smtp.dkim import DkimError, DkimKey, sign

__all__ = [
    "NotificationSender",
    "SmarthostError",
    "SmarthostSettings",
    "TlsMode",
    "sign_notification",
]

log = logging.getLogger("mssante.smtp.notify")

TlsMode: TypeAlias = Literal["starttls", "implicit", "none"]
_TLS_MODES = ("starttls", "implicit", "none")


class SmarthostError(OperatorError):
    """The smarthost settings are unusable (one line, CLI exit 2)."""


@dataclass(frozen=True)
class SmarthostSettings:
    """Where notifications leave the trust space.

    ``tls``: ``"starttls"`` (required, never downgraded), ``"implicit"`` (TLS
    on connect, usually port 465) or ``"none"`` — **insecure**, plain TCP, for a
    local sink in tests or labs only. ``ca_file`` holds the anchors the
    smarthost's chain must reach (PEM, DER or .p7b); ``None`` means the system
    trust store. ``password_file`` is read at each delivery and stripped, so a
    rotated secret applies without a restart; it goes with ``username``.
    ``timeout`` (seconds) bounds the connection, each command and the data.
    """

    host: str
    port: int
    tls: TlsMode = "starttls"
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() or not c.isprintable() for c in self.host):
            raise SmarthostError(f"invalid smarthost host {self.host!r}")
        if not 0 < self.port < 65536:
            raise SmarthostError(f"invalid smarthost port {self.port!r}: 1 to 65535")
        if self.tls not in _TLS_MODES:
            raise SmarthostError(f"invalid smarthost tls {self.tls!r}: starttls, implicit or none")
        if not self.timeout > 0:
            raise SmarthostError(f"invalid smarthost timeout {self.timeout!r}: must be positive")
        if (self.username is None) != (self.password_file is None):
            raise SmarthostError("smarthost username and password_file go together")
        if self.username is not None and self.tls == "none":
            raise SmarthostError("smarthost AUTH needs TLS: the password would be sent in clear")


def sign_notification(data: bytes, key: DkimKey, *, now: datetime | None = None) -> bytes:
    """``data`` with a ``DKIM-Signature`` prepended (:func:`smtp.dkim.sign`, relaxed/relaxed).

    Signs :data:`smtp.dkim.DEFAULT_SIGNED_HEADERS` (From, To, Subject, Date,
    Message-ID, MIME-Version, Content-Type... each once more than present).
    Raises ``ValueError`` if the header is malformed or has no single From,
    :class:`smtp.dkim.DkimError` if the key is unusable.
    """
    return sign(data, key, now=now) + data


@dataclass(frozen=True)
class _Contexts:
    key: tuple[object, ...]
    context: ssl.SSLContext


class NotificationSender:
    """Sends queued notifications through the smarthost; one instance per node, safe to share.

    ``hostname`` is said in EHLO. ``dkim_key`` signs every message at send
    time; ``None`` sends unsigned (labs only: providers will file it as spam).
    The TLS context is rebuilt when ``ca_file`` changes.
    """

    def __init__(
        self, settings: SmarthostSettings, *, hostname: str, dkim_key: DkimKey | None
    ) -> None:
        if not hostname or any(c.isspace() or not c.isprintable() for c in hostname):
            raise SmarthostError(f"invalid local host name {hostname!r} for EHLO")
        self.settings = settings
        self._hostname = hostname
        self._dkim_key = dkim_key
        self._contexts: _Contexts | None = None

    # ------------------------------------------------------------ public

    async def deliver(self, message: OutboundMessage) -> list[RecipientOutcome]:
        """Sign, then send through the smarthost; one outcome per recipient, in order."""
        if not message.recipients:
            return []
        utf8, sender, paths = _envelope(message)
        if sender is None:
            return _everyone(message, "permanent", "5.1.7", "unusable sender address")
        if all(path is None for path in paths):
            return _everyone(message, "permanent", "5.1.3", "unusable recipient address")
        try:
            outcomes = await self._prepare_and_send(message, utf8, sender, paths)
        except _TargetFailed as failure:
            log.info(
                "notification not sent",
                extra={
                    "fields": {
                        "host": self.settings.host,
                        "port": self.settings.port,
                        "status": failure.status,
                        "code": failure.code,
                        "reason": failure.reason,
                    }
                },
            )
            outcomes = _everyone(message, failure.kind, failure.status, failure.text, failure)
        except Exception:
            log.exception("notification failed", extra={"fields": {"host": self.settings.host}})
            outcomes = _everyone(message, "temporary", "4.3.0", "notification sender failed")
        else:
            fields = {"host": self.settings.host}
            _log_outcomes(log, "notification outcome", "notification done", fields, outcomes)
        return _mark_unusable(outcomes, paths)

    # ------------------------------------------------------------ local material

    async def _prepare_and_send(
        self, message: OutboundMessage, utf8: bool, sender: bytes, paths: list[bytes | None]
    ) -> list[RecipientOutcome]:
        """Sign, read the TLS context and the password, then one session; _TargetFailed if not."""
        data = message.data
        if self._dkim_key is not None:
            try:
                data = await asyncio.to_thread(sign_notification, data, self._dkim_key)
            except DkimError as exc:
                log.error("DKIM key unusable", extra={"fields": {"error": str(exc)}})
                raise _TargetFailed(_STAGE_TCP, "4.3.5", f"local DKIM key: {exc}") from exc
            except ValueError as exc:
                # Our own builder made this message: retrying will not fix it.
                log.error(
                    "notification cannot be DKIM-signed", extra={"fields": {"error": str(exc)}}
                )
                raise _TargetFailed(
                    _STAGE_TCP, "5.6.0", str(exc), final=True, kind="permanent"
                ) from exc
        context: ssl.SSLContext | None = None
        if self.settings.tls != "none":
            try:
                context = await self._tls_context()
            except (BundleError, OSError, ssl.SSLError, ValueError) as exc:
                log.error(
                    "smarthost TLS configuration unusable", extra={"fields": {"error": str(exc)}}
                )
                raise _TargetFailed(_STAGE_TCP, "4.3.5", f"local TLS configuration: {exc}") from exc
        password: str | None = None
        if self.settings.password_file is not None:
            password = await asyncio.to_thread(_read_password, self.settings.password_file)
        signed = replace(message, data=data, size=len(data))
        return await self._session(signed, context, password, utf8, sender, paths)

    def _ca_key(self) -> tuple[object, ...]:
        ca_file = self.settings.ca_file
        if ca_file is None:
            return ()
        try:
            st = os.stat(ca_file)
        except OSError:
            return (os.fspath(ca_file), None)
        return (os.fspath(ca_file), st.st_mtime_ns, st.st_size, st.st_ino)

    def _build_context(self) -> ssl.SSLContext:
        if self.settings.ca_file is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        else:
            # Only the configured anchors, not the system store as well.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            anchors = load_certificates(self.settings.ca_file)
            ctx.load_verify_locations(
                cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in anchors)
            )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        return ctx

    async def _tls_context(self) -> ssl.SSLContext:
        """Cached; rebuilt off the event loop when the CA file changed."""
        key = self._ca_key()
        if self._contexts is None or self._contexts.key != key:
            self._contexts = _Contexts(key, await asyncio.to_thread(self._build_context))
        return self._contexts.context

    # ------------------------------------------------------------ the session

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def _quit_timeout(self) -> float:
        return min(self.settings.timeout, 10.0)

    async def _session(
        self,
        message: OutboundMessage,
        context: ssl.SSLContext | None,
        password: str | None,
        utf8: bool,
        sender: bytes,
        paths: list[bytes | None],
    ) -> list[RecipientOutcome]:
        settings = self.settings
        log.info(
            "notification attempt",
            extra={"fields": {"host": settings.host, "port": settings.port, "tls": settings.tls}},
        )
        implicit = settings.tls == "implicit"
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self._hostname,
            timeout=settings.timeout,
            use_tls=implicit,
            start_tls=False,
            tls_context=context if implicit else None,
        )
        peer = _Peer(
            where=self._where,
            mta=settings.host,
            host=settings.host,
            noun="smarthost",
            limit="the smarthost limit",
            log=log,
            prefix="smarthost ",
            quit_timeout=self._quit_timeout,
            data_timeout=settings.timeout,
            quit_after_mail_refused=True,
        )
        opening = functools.partial(self._open, smtp, peer, context, password)
        return await _session(smtp, peer, opening, message, utf8, sender, paths)

    async def _open(
        self,
        smtp: aiosmtplib.SMTP,
        peer: _Peer,
        context: ssl.SSLContext | None,
        password: str | None,
    ) -> None:
        """Connect, TLS as configured, EHLO, AUTH; raise _TargetFailed on any refusal."""
        settings = self.settings
        where = peer.where
        mta = peer.mta
        # With implicit TLS the handshake is part of connecting: _tls_lost reports its failure.
        await _connect(smtp, peer, settings.timeout, tls_lost=_tls_lost)
        await _ehlo(smtp, peer, _STAGE_SMTP, _tls_lost)
        _raise_if_cancelled()
        if settings.tls == "starttls":
            assert context is not None  # built whenever tls is not "none"
            await self._starttls(smtp, context)
            await _ehlo(smtp, peer, _STAGE_TLS, _tls_lost)
            _raise_if_cancelled()
        if settings.tls != "none":
            ssl_object = smtp.get_transport_info("ssl_object")
            if ssl_object is None:
                raise _TargetFailed(_STAGE_TLS, "4.7.5", f"{where}: no TLS session", remote_mta=mta)
            log.info(
                "tls established",
                extra={
                    "fields": {
                        "host": settings.host,
                        "tls_version": ssl_object.version(),
                        "cipher": (ssl_object.cipher() or ("?",))[0],
                    }
                },
            )
        if settings.username is not None and password is not None:
            await self._auth(smtp, settings.username, password)

    async def _starttls(self, smtp: aiosmtplib.SMTP, context: ssl.SSLContext) -> None:
        where = self._where
        mta = self.settings.host
        if not smtp.supports_extension("starttls"):
            raise _TargetFailed(
                _STAGE_SMTP,
                "4.7.4",
                f"{where}: smarthost does not offer STARTTLS; mail is never sent in plaintext",
                remote_mta=mta,
            )
        try:
            await smtp.starttls(tls_context=context, server_hostname=self.settings.host)
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_failure(
                _STAGE_SMTP, exc.code, exc.message, mta, f"{where}: STARTTLS refused", "4.7.4"
            ) from exc
        except ssl.SSLError as exc:
            raise _tls_failure(where, mta, exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            cause = _ssl_cause(exc)
            if cause is not None:
                raise _tls_failure(where, mta, cause) from exc
            raise _TargetFailed(
                _STAGE_TLS, "4.7.5", f"{where}: TLS handshake failed", remote_mta=mta
            ) from exc
        _raise_if_cancelled()

    async def _auth(self, smtp: aiosmtplib.SMTP, username: str, password: str) -> None:
        where = self._where
        mta = self.settings.host
        if not smtp.supports_extension("auth") or not smtp.supported_auth_methods:
            raise _TargetFailed(
                _STAGE_TRUSTED,
                "4.7.0",
                f"{where}: smarthost offers no usable AUTH mechanism",
                remote_mta=mta,
            )
        try:
            await smtp.login(username, password)
        except aiosmtplib.SMTPResponseException as exc:
            # Credentials are ours to fix: temporary, whatever class the reply has.
            raise _reply_failure(
                _STAGE_TRUSTED, exc.code, exc.message, mta, f"{where}: AUTH refused", "4.7.8"
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _TargetFailed(
                _STAGE_TRUSTED, "4.4.2", f"{where}: connection lost at AUTH", remote_mta=mta
            ) from exc
        _raise_if_cancelled()


def _read_password(path: Path) -> str:
    """The smarthost password, stripped; _TargetFailed (4.3.5) if unreadable or empty."""
    try:
        password = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        log.error(
            "smarthost password file unreadable",
            extra={"fields": {"path": os.fspath(path), "error": reason}},
        )
        raise _TargetFailed(
            _STAGE_TCP, "4.3.5", f"cannot read the smarthost password file {path}: {reason}"
        ) from None
    if not password:
        log.error("smarthost password file empty", extra={"fields": {"path": os.fspath(path)}})
        raise _TargetFailed(_STAGE_TCP, "4.3.5", f"the smarthost password file {path} is empty")
    return password


def _tls_lost(peer: _Peer, stage: int, exc: BaseException) -> _TargetFailed | None:
    """On connecting or at EHLO: a TLS error underneath is reported as such (4.7.5)."""
    cause = _ssl_cause(exc)
    return _tls_failure(peer.where, peer.mta, cause) if cause is not None else None


def _tls_failure(where: str, mta: str, exc: ssl.SSLError) -> _TargetFailed:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _TargetFailed(
            _STAGE_TLS,
            "4.7.5",
            f"{where}: smarthost certificate not trusted ({exc.verify_message})",
            remote_mta=mta,
        )
    return _TargetFailed(
        _STAGE_TLS, "4.7.5", f"{where}: TLS handshake failed ({exc.reason or exc})", remote_mta=mta
    )
