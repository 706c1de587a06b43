"""Remote delivery to another operator of the trust space (TS-1, TS-3).

One call, :meth:`DeliveryClient.deliver`, takes a message for one remote
domain and returns one :class:`RecipientOutcome` per recipient; it never
raises (except on cancellation), so the queue runner only has to record
outcomes, retry the temporary ones and bounce the permanent ones.

Closed trust space: mail is only sent inside mutual TLS. The peer must offer
STARTTLS (else we do not send, not even the envelope), its chain must verify
against the IGC-Santé anchors (and CRLs), its name must match the MX name
when we found it through DNS, and its certificate DN must be paired with the
recipient domain in the whitelist (``peer_allowed``). Our server certificate
is the TLS client certificate (IGC-Santé server certificates carry
clientAuth).

Target-level failures move on to the next target; once MAIL FROM has been
answered the peer's replies are final for this attempt. Status codes (RFC
3463) chosen for failures of our own:

* 4.4.1 no answer (connection refused, connect or greeting timeout);
* 4.4.2 connection lost or timed out during the session;
* 4.7.4 the peer does not offer STARTTLS (or refuses it): never plaintext;
* 4.7.5 TLS handshake failed, peer chain or name invalid, or the peer
  rejected our certificate: temporary, so an administrator can fix
  certificates or CRLs before messages bounce;
* 4.7.1 the peer's certificate DN is not paired with the domain in the
  whitelist: temporary, because the national list is updated daily and a new
  pair usually appears within the retry period;
* 4.3.5 our own TLS material is unreadable; 4.4.3 DNS did not answer;
* 5.1.2 / 5.1.10 domain missing / null MX; 5.1.3 / 5.1.7 unusable recipient /
  sender address; 5.3.4 message larger than the peer's SIZE; 5.6.7 SMTPUTF8
  needed but not offered (RFC 6531 §3.2).

An 8-bit body is sent even when the peer does not advertise 8BITMIME (every
MSSanté peer does; downgrading would rewrite signed content); ``BODY=8BITMIME``
is only declared to peers that advertise it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import aiosmtplib
from cryptography import x509

from certs import TLSConfigError, client_context, peer_certificate
from mssante.logs import pseudonym
from smtp.resolve import (
    MxResolver,
    PermanentResolveError,
    Target,
    TemporaryResolveError,
    Transport,
    targets_for,
)

__all__ = [
    "DeliveryClient",
    "OutboundMessage",
    "OutboundRecipient",
    "OutcomeKind",
    "PeerAllowed",
    "RecipientOutcome",
    "Timeouts",
]

log = logging.getLogger("mssante.smtp.client")

OutcomeKind: TypeAlias = Literal["delivered", "temporary", "permanent"]
PeerAllowed: TypeAlias = Callable[[str, x509.Certificate], str | None]
"""(recipient domain, peer leaf) -> None when the DN is paired with the domain, else why not."""

StrPath: TypeAlias = str | os.PathLike[str]

MAX_TEXT = 512
"""Reply text kept per outcome: a hostile peer cannot grow the queue rows or the DSNs."""

_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=\s|$)")
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})+")
_NOTIFY = re.compile(r"NEVER|(?:SUCCESS|FAILURE|DELAY)(?:,(?:SUCCESS|FAILURE|DELAY))*")
_MAX_ENVID = 100  # RFC 3461 §4.4
_MAX_ORCPT = 500  # RFC 3461 §4.2

# How far an attempt got: when every target fails, the furthest failure is the
# most useful one to report (a DN mismatch says more than a refused connection).
_STAGE_TCP = 0
_STAGE_SMTP = 1
_STAGE_TLS = 2
_STAGE_TRUSTED = 3


@dataclass(frozen=True)
class OutboundRecipient:
    """One envelope recipient with its RFC 3461 parameters.

    ``notify`` is the NOTIFY value ("SUCCESS,FAILURE", "NEVER"); ``orcpt`` the
    ORCPT value in wire form ("rfc822;jean+40x@example.fr", xtext-encoded).
    """

    address: str
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """The envelope and the exact bytes to relay (CRLF line endings).

    ``sender`` is "" for the null reverse-path; ``envid`` is the ENVID value in
    wire (xtext) form; ``ret`` is "FULL" or "HDRS".
    """

    sender: str
    recipients: tuple[OutboundRecipient, ...]
    data: bytes
    size: int
    envid: str | None = None
    ret: str | None = None
    eight_bit: bool = False
    smtputf8: bool = False


@dataclass(frozen=True)
class RecipientOutcome:
    """What became of one recipient.

    ``code`` is the peer's reply code, or 0 when the outcome is our own
    decision (no usable reply): a DSN's Diagnostic-Code is then omitted, else
    it is ``f"{code} {text}"``. ``status`` is always an RFC 3463 code whose
    class matches ``kind``. ``remote_mta`` names the peer that answered.
    ``relayed`` is True when a peer without the DSN extension accepted the
    message: a success DSN must then say "relayed", not "delivered"
    (RFC 3461 §4.1).
    """

    address: str
    kind: OutcomeKind
    code: int
    status: str
    text: str
    remote_mta: str | None
    relayed: bool = False


@dataclass(frozen=True)
class Timeouts:
    """Seconds; RFC 5321 §4.5.3.2 suggests 5 min per command and 10 min after the final dot."""

    connect: float = 30.0
    command: float = 300.0
    data: float = 600.0


@dataclass(eq=False)
class _TargetFailed(Exception):
    """This target cannot take the message; ``final`` stops trying the others."""

    stage: int
    status: str
    reason: str  # our own words: safe to log
    code: int = 0
    reply: str = ""  # the peer's text, may name recipients: never logged
    remote_mta: str | None = None
    final: bool = False
    kind: OutcomeKind = "temporary"

    @property
    def text(self) -> str:
        """The peer's text when ``code`` is its reply, else our reason (with its reply)."""
        if self.code:
            return _clean(self.reply)
        return _clean(f"{self.reason}: {self.reply}" if self.reply else self.reason)


@dataclass
class _Contexts:
    key: tuple[object, ...] = ()
    by_check_hostname: dict[bool, ssl.SSLContext] = field(default_factory=dict)


def _clean(text: str) -> str:
    """One printable line, bounded."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat[:MAX_TEXT]


def _status(code: int, text: str) -> str:
    """The reply's enhanced status code when present and consistent, else class.0.0."""
    match = _ENHANCED.match(text.lstrip())
    if match is not None and match.group(1) == str(code)[0]:
        return match.group(0)
    return f"{str(code)[0]}.0.0"


def _reply_outcome(
    address: str, code: int, text: str, remote_mta: str, *, relayed: bool = False
) -> RecipientOutcome:
    if 200 <= code < 300:
        kind: OutcomeKind = "delivered"
    elif 500 <= code < 600:
        kind = "permanent"
    elif 400 <= code < 500:
        kind = "temporary"
    else:
        return RecipientOutcome(
            address, "temporary", 0, "4.5.0", _clean(f"unexpected reply {code} {text}"), remote_mta
        )
    return RecipientOutcome(
        address, kind, code, _status(code, text), _clean(text), remote_mta, relayed and code < 300
    )


def _reply_failure(
    stage: int, code: int, text: str, remote_mta: str, what: str, fallback: str
) -> _TargetFailed:
    """A refusal before MAIL: a 4xx is kept as the peer said it, anything else becomes ours."""
    if 400 <= code < 500:
        return _TargetFailed(
            stage, _status(code, text), what, code=code, reply=text, remote_mta=remote_mta
        )
    return _TargetFailed(stage, fallback, f"{what} ({code})", reply=text, remote_mta=remote_mta)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _path(address: str, *, utf8: bool) -> bytes | None:
    """``address`` as a reverse/forward-path body, or None if it could inject or not encode.

    Addresses are sent exactly as given (no parsing that could rewrite the
    local part, RFC 5321 §2.3.11); only what would break the command line is
    refused.
    """
    if any(c in "<>" or not c.isprintable() for c in address):
        return None
    local, _, _domain = address.rpartition("@")
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    if " " in (address[len(local) :] if quoted else address):
        return None
    try:
        return address.encode("utf-8" if utf8 else "ascii")
    except UnicodeEncodeError:
        return None


def _envelope(message: OutboundMessage) -> tuple[bool, bytes | None, list[bytes | None]]:
    """(SMTPUTF8 needed, reverse-path, forward-paths); None where :func:`_path` refuses a path."""
    utf8 = message.smtputf8 or not (
        message.sender.isascii() and all(r.address.isascii() for r in message.recipients)
    )
    sender = _path(message.sender, utf8=utf8)
    paths = [_path(r.address, utf8=utf8) if r.address else None for r in message.recipients]
    return utf8, sender, paths


def _mark_unusable(
    outcomes: list[RecipientOutcome], paths: list[bytes | None]
) -> list[RecipientOutcome]:
    """``outcomes``, with a recipient that had no usable path permanent (5.1.3)."""
    unusable = "unusable recipient address"
    return [
        o
        if path is not None
        else RecipientOutcome(o.address, "permanent", 0, "5.1.3", unusable, None)
        for o, path in zip(outcomes, paths, strict=True)
    ]


def _xtext(value: str | None, limit: int) -> str | None:
    if value is None or len(value) > limit or not _XTEXT.fullmatch(value):
        return None
    return value


class DeliveryClient:
    """mTLS SMTP client for the trust space; one instance per node, safe to share.

    TLS contexts are rebuilt when the anchor, certificate, key or CRL files
    change (checked at each delivery), so a daily CRL refresh or a renewed
    certificate applies without a restart.
    """

    def __init__(
        self,
        *,
        hostname: str,
        cert_file: StrPath,
        key_file: StrPath,
        anchors_file: StrPath,
        crl_files: Sequence[StrPath] = (),
        peer_allowed: PeerAllowed,
        transport: Transport,
        resolver: MxResolver | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._hostname = hostname
        self._cert_file = cert_file
        self._key_file = key_file
        self._anchors_file = anchors_file
        self._crl_files = tuple(crl_files)
        self._peer_allowed = peer_allowed
        self._transport = transport
        self._resolver = resolver
        self.timeouts = timeouts or Timeouts()
        self._contexts = _Contexts()

    # ------------------------------------------------------------ public

    async def deliver(self, domain: str, message: OutboundMessage) -> list[RecipientOutcome]:
        """Resolve ``domain`` (transport map, then MX) and deliver; one outcome per recipient."""
        if not message.recipients:
            return []
        try:
            targets = await targets_for(domain, transport=self._transport, resolver=self._resolver)
        except PermanentResolveError as exc:
            log.info("no route", extra={"fields": {"domain": domain, "status": exc.status}})
            return _everyone(message, "permanent", exc.status, exc.text)
        except TemporaryResolveError as exc:
            log.info("resolve failed", extra={"fields": {"domain": domain, "status": exc.status}})
            return _everyone(message, "temporary", exc.status, exc.text)
        except Exception:
            log.exception("resolve failed", extra={"fields": {"domain": domain}})
            return _everyone(message, "temporary", "4.4.3", "routing lookup failed")
        return await self.deliver_to(domain, targets, message)

    async def deliver_to(
        self, domain: str, targets: Iterable[Target], message: OutboundMessage
    ) -> list[RecipientOutcome]:
        """Deliver through ``targets`` in order (no resolution); one outcome per recipient.

        ``domain`` is the recipient domain the peer's DN must be paired with.
        """
        if not message.recipients:
            return []
        utf8, sender, paths = _envelope(message)
        if sender is None:
            return _everyone(message, "permanent", "5.1.7", "unusable sender address")
        outcomes = await self._deliver_paths(domain, targets, message, utf8, sender, paths)
        return _mark_unusable(outcomes, paths)

    async def _deliver_paths(
        self,
        domain: str,
        targets: Iterable[Target],
        message: OutboundMessage,
        utf8: bool,
        sender: bytes,
        paths: list[bytes | None],
    ) -> list[RecipientOutcome]:
        if all(path is None for path in paths):
            return _everyone(message, "permanent", "5.1.3", "unusable recipient address")
        try:
            contexts = await self._tls_contexts()
        except (TLSConfigError, OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS configuration unusable", extra={"fields": {"error": str(exc)}})
            return _everyone(message, "temporary", "4.3.5", f"local TLS configuration: {exc}")
        best: _TargetFailed | None = None
        for target in targets:
            _raise_if_cancelled()
            try:
                outcomes = await self._attempt(
                    domain, target, message, contexts, utf8, sender, paths
                )
            except _TargetFailed as failure:
                log.info(
                    "target failed",
                    extra={
                        "fields": {
                            "domain": domain,
                            "host": target.host,
                            "port": target.port,
                            "status": failure.status,
                            "code": failure.code,
                            "reason": failure.reason,
                        }
                    },
                )
                if failure.final:
                    return _everyone(message, failure.kind, failure.status, failure.text, failure)
                if best is None or failure.stage >= best.stage:
                    best = failure
                continue
            _log_outcomes(
                log,
                "recipient outcome",
                "delivery done",
                {"domain": domain, "host": target.host},
                outcomes,
            )
            return outcomes
        if best is None:
            return _everyone(message, "temporary", "4.4.3", "no target to deliver to")
        return _everyone(message, best.kind, best.status, best.text, best)

    @property
    def _quit_timeout(self) -> float:
        """QUIT is a courtesy: a peer slow to say goodbye must not delay the next target."""
        return min(self.timeouts.connect, 10.0)

    # ------------------------------------------------------------ TLS material

    def _files(self) -> list[StrPath]:
        return [self._anchors_file, self._cert_file, self._key_file, *self._crl_files]

    def _file_key(self) -> tuple[object, ...]:
        key: list[object] = []
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                key.append((os.fspath(path), None))
            else:
                key.append((os.fspath(path), st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(key)

    def _build_contexts(self) -> dict[bool, ssl.SSLContext]:
        return {
            check: client_context(
                anchors_file=self._anchors_file,
                cert_file=self._cert_file,
                key_file=self._key_file,
                crl_files=self._crl_files,
                check_hostname=check,
            )
            for check in (True, False)
        }

    async def _tls_contexts(self) -> dict[bool, ssl.SSLContext]:
        """Cached contexts, rebuilt off the event loop when a file changed (CRLs can be big)."""
        key = self._file_key()
        if key != self._contexts.key or not self._contexts.by_check_hostname:
            built = await asyncio.to_thread(self._build_contexts)
            self._contexts = _Contexts(key, built)
        return self._contexts.by_check_hostname

    # ------------------------------------------------------------ one target

    async def _attempt(
        self,
        domain: str,
        target: Target,
        message: OutboundMessage,
        contexts: dict[bool, ssl.SSLContext],
        utf8: bool,
        sender: bytes,
        paths: list[bytes | None],
    ) -> list[RecipientOutcome]:
        log.info(
            "delivery attempt",
            extra={
                "fields": {
                    "domain": domain,
                    "host": target.host,
                    "port": target.port,
                    "tls_name": target.tls_name,
                }
            },
        )
        smtp = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            local_hostname=self._hostname,
            timeout=self.timeouts.command,
            use_tls=False,
            start_tls=False,
        )
        peer = _Peer(
            where=_where(target),
            mta=target.tls_name or target.host,
            host=target.host,
            noun="peer",
            limit="the peer's limit",
            log=log,
            prefix="",
            quit_timeout=self._quit_timeout,
            data_timeout=self.timeouts.data,
            quit_after_mail_refused=False,
        )
        opening = functools.partial(self._open, smtp, peer, domain, target, contexts)
        return await _session(smtp, peer, opening, message, utf8, sender, paths)

    async def _open(
        self,
        smtp: aiosmtplib.SMTP,
        peer: _Peer,
        domain: str,
        target: Target,
        contexts: dict[bool, ssl.SSLContext],
    ) -> None:
        """Connect, STARTTLS, check the peer, EHLO again; raise _TargetFailed on any refusal."""
        where = peer.where
        mta = peer.mta
        await _connect(smtp, peer, self.timeouts.connect, tls_lost=None)
        await _ehlo(smtp, peer, _STAGE_SMTP, _refused_our_certificate)
        if not smtp.supports_extension("starttls"):
            raise _TargetFailed(
                _STAGE_SMTP,
                "4.7.4",
                f"{where}: peer does not offer STARTTLS; mail is never sent in plaintext",
                remote_mta=mta,
            )
        context = contexts[target.tls_name is not None]
        try:
            await smtp.starttls(
                tls_context=context,
                server_hostname=target.tls_name or target.host,
                timeout=self.timeouts.connect,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_failure(
                _STAGE_SMTP, exc.code, exc.message, mta, f"{where}: STARTTLS refused", "4.7.4"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise _TargetFailed(
                _STAGE_TLS,
                "4.7.5",
                f"{where}: peer certificate rejected ({exc.verify_message})",
                remote_mta=mta,
            ) from exc
        except ssl.SSLError as exc:
            raise _TargetFailed(
                _STAGE_TLS,
                "4.7.5",
                f"{where}: TLS handshake failed ({exc.reason or exc})",
                remote_mta=mta,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _TargetFailed(
                _STAGE_TLS, "4.7.5", f"{where}: TLS handshake failed", remote_mta=mta
            ) from exc
        _raise_if_cancelled()
        ssl_object = smtp.get_transport_info("ssl_object")
        cert = peer_certificate(ssl_object) if ssl_object is not None else None
        if cert is None:
            raise _TargetFailed(
                _STAGE_TLS, "4.7.5", f"{where}: peer sent no certificate", remote_mta=mta
            )
        log.info(
            "tls established",
            extra={
                "fields": {
                    "host": target.host,
                    "tls_version": ssl_object.version(),
                    "cipher": (ssl_object.cipher() or ("?",))[0],
                    "peer_subject": cert.subject.rfc4514_string(),
                }
            },
        )
        try:
            refusal = self._peer_allowed(domain, cert)
        except Exception as exc:
            log.exception("whitelist check failed", extra={"fields": {"domain": domain}})
            raise _TargetFailed(
                _STAGE_TRUSTED,
                "4.3.0",
                f"{where}: whitelist check failed ({type(exc).__name__})",
                remote_mta=mta,
                final=True,
            ) from exc
        if refusal is not None:
            raise _TargetFailed(
                _STAGE_TRUSTED,
                "4.7.1",
                f"{where}: peer certificate not paired with {domain} in the MSSanté whitelist"
                f" ({_clean(refusal)})",
                remote_mta=mta,
            )
        await _ehlo(smtp, peer, _STAGE_TRUSTED, _refused_our_certificate)


# ---------------------------------------------------------------- one SMTP session
#
# Shared with smtp.notify (the smarthost client): what differs between the two
# callers is carried by _Peer, so both send, classify and log alike.


@dataclass(frozen=True)
class _Peer:
    """The other end of one session, and how the shared steps name it and treat it.

    ``where`` ("host:port") opens our reasons and ``mta`` is the outcomes'
    ``remote_mta``; ``host`` is the log field. ``noun`` ("peer", "smarthost")
    and ``limit`` ("the peer's limit") name it in reasons. ``log`` and
    ``prefix`` ("" or "smarthost ") keep each caller's logger and messages.
    ``quit_after_mail_refused`` says QUIT when MAIL is refused (else the
    connection is just closed).
    """

    where: str
    mta: str
    host: str
    noun: str
    limit: str
    log: logging.Logger
    prefix: str
    quit_timeout: float
    data_timeout: float
    quit_after_mail_refused: bool


_TlsLost: TypeAlias = Callable[[_Peer, int, BaseException], _TargetFailed | None]
"""(peer, stage, error on connecting or at EHLO) -> the failure if it says TLS broke, else None."""


async def _session(
    smtp: aiosmtplib.SMTP,
    peer: _Peer,
    opening: Callable[[], Awaitable[None]],
    message: OutboundMessage,
    utf8: bool,
    sender: bytes,
    paths: list[bytes | None],
) -> list[RecipientOutcome]:
    """``opening`` (connect, TLS, EHLO...), then :func:`_transaction`; always closes ``smtp``.

    Raises _TargetFailed; a failure while opening says QUIT if still connected.
    """
    try:
        try:
            await opening()
        except _TargetFailed:
            if smtp.is_connected:
                await _quit(smtp, peer.quit_timeout)
            raise
        except Exception as exc:
            peer.log.exception(
                f"{peer.prefix}session failed", extra={"fields": {"host": peer.host}}
            )
            raise _TargetFailed(
                _STAGE_SMTP, "4.4.2", f"{peer.where}: session failed ({type(exc).__name__})"
            ) from exc
        try:
            return await _transaction(smtp, peer, message, utf8, sender, paths)
        except _TargetFailed:
            raise
        except Exception as exc:
            # Unforeseen once MAIL may have been sent: final, another target could duplicate.
            peer.log.exception(
                f"{peer.prefix}transaction failed", extra={"fields": {"host": peer.host}}
            )
            raise _TargetFailed(
                _STAGE_TRUSTED,
                "4.4.2",
                f"{peer.where}: transaction failed ({type(exc).__name__})",
                final=True,
            ) from exc
    finally:
        smtp.close()


async def _connect(
    smtp: aiosmtplib.SMTP, peer: _Peer, timeout: float, *, tls_lost: _TlsLost | None
) -> None:
    """Connect and read the greeting; a refusal or no connection raises _TargetFailed.

    ``tls_lost`` (implicit TLS: the handshake is part of connecting) turns an
    error that says the TLS handshake failed into its own failure.
    """
    try:
        await smtp.connect(timeout=timeout)
    except aiosmtplib.SMTPConnectResponseError as exc:
        raise _reply_failure(
            _STAGE_SMTP, exc.code, exc.message, peer.mta, f"{peer.where}: greeting refused", "4.4.2"
        ) from exc
    except aiosmtplib.SMTPTimeoutError as exc:
        raise _TargetFailed(_STAGE_TCP, "4.4.1", f"{peer.where}: no answer (timeout)") from exc
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        failure = tls_lost(peer, _STAGE_TCP, exc) if tls_lost is not None else None
        if failure is not None:
            raise failure from exc
        raise _TargetFailed(_STAGE_TCP, "4.4.1", f"{peer.where}: cannot connect") from exc
    _raise_if_cancelled()


async def _ehlo(smtp: aiosmtplib.SMTP, peer: _Peer, stage: int, tls_lost: _TlsLost) -> None:
    """EHLO; a refusal or a lost connection raises _TargetFailed at ``stage``.

    ``tls_lost`` turns an error that says the TLS session broke into its own failure.
    """
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPResponseException as exc:
        raise _reply_failure(
            stage, exc.code, exc.message, peer.mta, f"{peer.where}: EHLO refused", "4.5.0"
        ) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        failure = tls_lost(peer, stage, exc)
        if failure is not None:
            raise failure from exc
        raise _TargetFailed(
            stage, "4.4.2", f"{peer.where}: connection lost at EHLO", remote_mta=peer.mta
        ) from exc


def _refused_our_certificate(peer: _Peer, stage: int, exc: BaseException) -> _TargetFailed | None:
    """TLS 1.3: the peer checks our certificate after our side of the handshake is done.

    Its refusal arrives as an alert, or (asyncio peers) as a bare close, on the
    first read: the EHLO that follows STARTTLS.
    """
    cause = _ssl_cause(exc)
    first_over_tls = stage == _STAGE_TRUSTED and isinstance(exc, ConnectionError)
    if cause is None and not first_over_tls:
        return None
    detail = f" ({cause.reason or cause})" if cause is not None else ""
    return _TargetFailed(
        _STAGE_TLS,
        "4.7.5",
        f"{peer.where}: peer closed the TLS session{detail}; it may have refused our certificate",
        remote_mta=peer.mta,
    )


async def _transaction(
    smtp: aiosmtplib.SMTP,
    peer: _Peer,
    message: OutboundMessage,
    utf8: bool,
    sender: bytes,
    paths: list[bytes | None],
) -> list[RecipientOutcome]:
    """MAIL, RCPT per recipient, DATA; from MAIL on, outcomes are final for this attempt."""
    where = peer.where
    mta = peer.mta
    if utf8 and not smtp.supports_extension("smtputf8"):
        raise _TargetFailed(
            _STAGE_TRUSTED,
            "5.6.7",
            f"{where}: the message needs SMTPUTF8, which the {peer.noun} does not offer",
            remote_mta=mta,
            final=True,
            kind="permanent",
        )
    limit = _size_limit(smtp)
    if limit and message.size > limit:
        raise _TargetFailed(
            _STAGE_TRUSTED,
            "5.3.4",
            f"{where}: message of {message.size} bytes exceeds {peer.limit} of {limit}",
            remote_mta=mta,
            final=True,
            kind="permanent",
        )
    dsn = smtp.supports_extension("dsn")
    mail_options = _mail_options(smtp, message, utf8, dsn)
    outcomes: dict[int, RecipientOutcome] = {}
    _raise_if_cancelled()
    try:
        reply = await smtp.execute_command(b"MAIL", b"FROM:<" + sender + b">", *mail_options)
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _TargetFailed(
            _STAGE_TRUSTED, "4.4.2", f"{where}: connection lost at MAIL", remote_mta=mta
        ) from exc
    if reply.code != 250:
        if peer.quit_after_mail_refused:
            await _quit(smtp, peer.quit_timeout)
        return [
            _reply_outcome(r.address, reply.code, reply.message, mta) for r in message.recipients
        ]
    accepted: list[int] = []
    try:
        for index, (rcpt, path) in enumerate(zip(message.recipients, paths, strict=True)):
            if path is None:
                outcomes[index] = RecipientOutcome(
                    rcpt.address, "permanent", 0, "5.1.3", "unusable recipient address", None
                )
                continue
            options = _rcpt_options(rcpt) if dsn else []
            reply = await smtp.execute_command(b"RCPT", b"TO:<" + path + b">", *options)
            if 200 <= reply.code < 300:
                accepted.append(index)
            else:
                outcomes[index] = _reply_outcome(rcpt.address, reply.code, reply.message, mta)
        if not accepted:
            await _quit(smtp, peer.quit_timeout)
            return [outcomes[i] for i in range(len(message.recipients))]
        _raise_if_cancelled()
        try:
            reply = await smtp.data(message.data, timeout=peer.data_timeout)
        except aiosmtplib.SMTPDataError as exc:
            reply = aiosmtplib.SMTPResponse(exc.code, exc.message)
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Lost mid-transaction: after the final dot this may duplicate (RFC 5321 §6.1),
        # which at-least-once delivery accepts.
        peer.log.info(
            f"{peer.prefix}connection lost in transaction",
            extra={"fields": {"host": peer.host, "error": type(exc).__name__}},
        )
        lost = RecipientOutcome("", "temporary", 0, "4.4.2", f"{where}: connection lost", mta)
        return [
            outcomes.get(i) or _with_address(lost, r.address)
            for i, r in enumerate(message.recipients)
        ]
    for index in accepted:
        outcomes[index] = _reply_outcome(
            message.recipients[index].address, reply.code, reply.message, mta, relayed=not dsn
        )
    await _quit(smtp, peer.quit_timeout)
    return [outcomes[i] for i in range(len(message.recipients))]


def _mail_options(
    smtp: aiosmtplib.SMTP, message: OutboundMessage, utf8: bool, dsn: bool
) -> list[bytes]:
    options: list[str] = []
    if smtp.supports_extension("size"):
        options.append(f"SIZE={message.size}")
    if message.eight_bit and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if utf8:
        options.append("SMTPUTF8")
    if dsn:
        ret = (message.ret or "").upper()
        if ret in ("FULL", "HDRS"):
            options.append(f"RET={ret}")
        envid = _xtext(message.envid, _MAX_ENVID)
        if envid is not None:
            options.append(f"ENVID={envid}")
    return [o.encode("ascii") for o in options]


def _log_outcomes(
    logger: logging.Logger,
    each: str,
    done: str,
    fields: Mapping[str, object],
    outcomes: list[RecipientOutcome],
) -> None:
    """``each`` per recipient (pseudonymised), then ``done`` with ``fields`` and the counts."""
    for outcome in outcomes:
        logger.info(
            each,
            extra={
                "fields": {
                    "rcpt": pseudonym(outcome.address),
                    "kind": outcome.kind,
                    "code": outcome.code,
                    "status": outcome.status,
                }
            },
        )
    counts = Counter(f"{o.code} {o.status}" for o in outcomes)
    logger.info(done, extra={"fields": {**fields, "outcomes": dict(sorted(counts.items()))}})


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that Python 3.11's ``asyncio.wait_for`` swallowed.

    aiosmtplib waits with ``wait_for``; before 3.12 it drops a cancellation
    that lands just as the awaited step completes, and the session would go
    on. The task still counts the request, so we check between steps.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _where(target: Target) -> str:
    return f"{target.host}:{target.port}"


def _size_limit(smtp: aiosmtplib.SMTP) -> int:
    """The peer's SIZE (RFC 1870), 0 when absent, unparsable or unlimited."""
    value = smtp.esmtp_extensions.get("size", "").strip()
    return int(value) if value.isdigit() and len(value) < 19 else 0


def _rcpt_options(rcpt: OutboundRecipient) -> list[bytes]:
    options: list[str] = []
    if rcpt.notify is not None and _NOTIFY.fullmatch(rcpt.notify.upper()):
        options.append(f"NOTIFY={rcpt.notify.upper()}")
    orcpt = _xtext(rcpt.orcpt, _MAX_ORCPT)
    if orcpt is not None and ";" in orcpt:
        options.append(f"ORCPT={orcpt}")
    return [o.encode("ascii") for o in options]


def _with_address(outcome: RecipientOutcome, address: str) -> RecipientOutcome:
    return RecipientOutcome(
        address, outcome.kind, outcome.code, outcome.status, outcome.text, outcome.remote_mta
    )


def _everyone(
    message: OutboundMessage,
    kind: OutcomeKind,
    status: str,
    text: str,
    failure: _TargetFailed | None = None,
) -> list[RecipientOutcome]:
    code = failure.code if failure is not None else 0
    mta = failure.remote_mta if failure is not None else None
    return [
        RecipientOutcome(r.address, kind, code, status, _clean(text), mta)
        for r in message.recipients
    ]


async def _quit(smtp: aiosmtplib.SMTP, timeout: float) -> None:
    """Polite QUIT; the outcome is already known, so any failure here is ignored."""
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await smtp.quit(timeout=timeout)
