"""`DIR/mssante.toml`: one file, validated before anything starts.

The schema is a tree of dataclasses; each field carries its meaning in
``metadata["doc"]`` so that the reference in ``docs/configuration.md`` is
generated from the same source the validator uses. Any wrong key, type or value
raises :class:`ConfigError`, whose one-line message names the file, the dotted
key and what was expected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mssante.errors import OperatorError

CONFIG_NAME = "mssante.toml"

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


class ConfigError(OperatorError):
    """A configuration problem, printable as one line."""

    def __init__(self, file: Path | str, key: str, expected: str) -> None:
        self.file = str(file)
        self.key = key
        self.expected = expected
        super().__init__(f"{self.file}: {key}: {expected}")


def _doc(text: str, check: Callable[[Any], str | None] | None = None) -> dict[str, Any]:
    return {"doc": text, "check": check}


def _domain(value: Any) -> str | None:
    try:
        ascii_name = str(value).encode("idna").decode("ascii").lower()
    except UnicodeError:
        return "a DNS domain name"
    return None if _DOMAIN_RE.match(ascii_name) else "a DNS domain name"


def _domains(value: Any) -> str | None:
    return next((problem for item in value if (problem := _domain(item))), None)


def _address(value: Any) -> str | None:
    if value == "":
        return None
    local, at, domain = str(value).rpartition("@")
    return None if at and local and not _domain(domain) else "an address local@domain, or empty"


def _percent(value: Any) -> str | None:
    return None if 0 <= value <= 100 else "a percentage between 0 and 100"


def _port(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else "a TCP port between 1 and 65535"


def _host(value: Any) -> str | None:
    if value == "localhost":
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return 'an IP address to bind (e.g. "127.0.0.1", "::", "0.0.0.0") or "localhost"'
    return None


def _positive(value: Any) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "a number greater than or equal to 0"


def _database_url(value: Any) -> str | None:
    if value == "":
        return None
    if not re.match(r"^(sqlite|postgresql\+psycopg)://", value):
        return 'empty (SQLite in DIR/mssante.db), "sqlite:///PATH" or "postgresql+psycopg://…"'
    if re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", value):
        return "a URL without a password: put the password in database.password_file"
    return None


@dataclass(frozen=True)
class NodeConfig:
    domain: str = field(
        default="", metadata=_doc("Mail domain this node hosts (required).", _domain)
    )
    hostname: str = field(
        default="",
        metadata=_doc(
            "Host name this node announces (SMTP greeting, certificate). "
            "Empty: the value of `node.domain`."
        ),
    )
    patient_domain: str = field(
        default="patient.mssante.fr",
        metadata=_doc("Domain of patient (MSS-C) addresses `<INS>@domain`.", _domain),
    )
    serves_patient_domain: bool = field(
        default=True,
        metadata=_doc(
            "This node is the patient domain's operator: it hosts the patient spaces and "
            "applies the MSS-C rules. `false` (a professionals' operator): patient mail goes "
            "to the operator the whitelist pairs with the patient domain."
        ),
    )
    extra_domains: list[str] = field(
        default_factory=list,
        metadata=_doc("Other mail domains this node hosts BALs for.", _domains),
    )
    bridge_address: str = field(
        default="",
        metadata=_doc(
            "Address of the envoi-en-Y bridge (XDM deposits); empty: no bridge.", _address
        ),
    )


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = field(
        default="",
        metadata=_doc(
            "SQLAlchemy URL. Empty: SQLite (WAL, synchronous=FULL) in `DIR/mssante.db`. "
            "`postgresql+psycopg://user@host/db` selects PostgreSQL.",
            _database_url,
        ),
    )
    password_file: Path | None = field(
        default=None,
        metadata=_doc("File holding the database password (PostgreSQL). Never in the URL."),
    )
    busy_timeout_ms: int = field(
        default=10000,
        metadata=_doc("SQLite: how long a writer waits for the lock, in ms.", _positive),
    )
    pool_size: int = field(
        default=5, metadata=_doc("PostgreSQL: connections kept per node.", _positive)
    )


@dataclass(frozen=True)
class StoreConfig:
    encrypt: bool = field(
        default=True,
        metadata=_doc(
            "Encrypt message blobs at rest (AES-256-GCM, 64 KiB authenticated segments)."
        ),
    )
    key_file: Path = field(
        default=Path("keys/store.key"),
        metadata=_doc("File holding the 32-byte store key as 64 hex digits (mode 0600)."),
    )
    gc_grace_seconds: int = field(
        default=3600,
        metadata=_doc(
            "GC never removes an unreferenced blob younger than this (it may be "
            "between its fsync and its database commit).",
            _non_negative,
        ),
    )


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path = field(
        default=Path("pki/server.pem"),
        metadata=_doc("This node's certificate followed by its chain (PEM)."),
    )
    key_file: Path = field(
        default=Path("pki/server.key"), metadata=_doc("This node's private key (PEM).")
    )
    ca_file: Path = field(
        default=Path("pki/ca/root.pem"),
        metadata=_doc("Trust anchors for peers and client certificates (PEM bundle or .p7b)."),
    )
    crl_files: list[Path] = field(
        default_factory=list,
        metadata=_doc("CRLs (PEM or DER) checked for peer and client certificates."),
    )


@dataclass(frozen=True)
class WhitelistConfig:
    ca_file: Path | None = field(
        default=None,
        metadata=_doc(
            "Anchors for downloading the list over https (the IGC-Santé chain, PEM or "
            ".p7b). Empty: `tls.ca_file`."
        ),
    )
    max_shrink_percent: float = field(
        default=20.0,
        metadata=_doc(
            "A new list this much smaller than the one in force is refused as suspicious.",
            _percent,
        ),
    )
    refresh_seconds: float = field(
        default=60.0,
        metadata=_doc(
            "How often `serve` looks for a newly imported list (it needs no restart).",
            _positive,
        ),
    )


@dataclass(frozen=True)
class ListenerConfig:
    enabled: bool = field(default=True, metadata=_doc("Bind this listener."))
    host: str = field(default="127.0.0.1", metadata=_doc("Address to bind.", _host))
    port: int = field(default=0, metadata=_doc("TCP port.", _port))


def _listener(port: int, doc: str) -> Any:
    return field(default_factory=lambda: ListenerConfig(port=port), metadata=_doc(doc))


@dataclass(frozen=True)
class ListenersConfig:
    http: ListenerConfig = _listener(8025, "Health and metrics (`/healthz`, `/metrics`):")
    mx: ListenerConfig = _listener(25, "Inter-operator SMTP (trust space, mutual TLS):")
    submission: ListenerConfig = _listener(587, "SMTP submission with STARTTLS:")
    submissions: ListenerConfig = _listener(465, "SMTP submission over implicit TLS:")
    imap: ListenerConfig = _listener(143, "IMAP with STARTTLS:")
    imaps: ListenerConfig = _listener(993, "IMAP over implicit TLS:")
    https: ListenerConfig = _listener(
        8443,
        "HTTPS with authenticated callers, bound only with `dmp.http_views = true` "
        "(the DMP views; `tls` certificate, TLS 1.2+):",
    )


def _size_caps(value: Any) -> str | None:
    for item in value:
        domain, eq, size = str(item).partition("=")
        if not eq or _domain(domain) or not size.isdigit() or int(size) <= 0:
            return 'a list of "domain=bytes" items'
    return None


def _schedule(value: Any) -> str | None:
    if not value or any(v <= 0 for v in value):
        return "a non-empty list of positive numbers of seconds"
    return None


@dataclass(frozen=True)
class SmtpConfig:
    max_message_size: int = field(
        default=50 * 1024 * 1024,
        metadata=_doc("Largest message accepted, in bytes (advertised with SIZE).", _positive),
    )
    domain_size_caps: list[str] = field(
        default_factory=list,
        metadata=_doc(
            'Smaller caps per recipient domain, as "domain=bytes" (LIM-1). The patient '
            "domain is always capped at `patient_max_message_size`.",
            _size_caps,
        ),
    )
    patient_max_message_size: int = field(
        default=25 * 1024 * 1024,
        metadata=_doc("Cap for messages to the patient domain (LIM-1: 25 MB).", _positive),
    )
    max_recipients: int = field(
        default=100, metadata=_doc("Recipients per message; more get 452 4.5.3.", _positive)
    )
    max_command_line: int = field(
        default=2048, metadata=_doc("Longest command line, in bytes.", _positive)
    )
    max_commands: int = field(
        default=2000, metadata=_doc("Commands per session before 421.", _positive)
    )
    max_errors: int = field(
        default=10, metadata=_doc("Syntax or sequence errors per session before 421.", _positive)
    )
    idle_timeout_seconds: float = field(
        default=300.0,
        metadata=_doc("A client silent this long is told 421 and disconnected.", _positive),
    )
    tls_ciphers: str = field(
        default="",
        metadata=_doc(
            "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's); empty: the "
            "hardened default. TLS below 1.2 is never offered."
        ),
    )
    password_auth: bool = field(
        default=True,
        metadata=_doc("Offer AUTH PLAIN and LOGIN (always over TLS only) on submission."),
    )
    oauth_issuer: str = field(
        default="",
        metadata=_doc("OpenID issuer whose JWT access tokens XOAUTH2/OAUTHBEARER accept."),
    )
    oauth_audience: str = field(
        default="", metadata=_doc("The `aud` those tokens must carry (this operator).")
    )
    oauth_jwks_file: Path | None = field(
        default=None, metadata=_doc("The issuer's signing keys as a JWKS file.")
    )
    oauth_jwks_url: str = field(
        default="", metadata=_doc("The issuer's JWKS https URL (when no file is given).")
    )
    auth_max_failures_account: int = field(
        default=10,
        metadata=_doc("Failed logins on one account within 15 minutes before lock-out.", _positive),
    )
    auth_max_failures_client: int = field(
        default=30,
        metadata=_doc(
            "Failed logins from one client address within 15 minutes before lock-out.", _positive
        ),
    )
    auth_lockout_seconds: float = field(
        default=900.0, metadata=_doc("How long a lock-out lasts.", _positive)
    )
    dkim_verify: bool = field(
        default=True,
        metadata=_doc("Verify DKIM on inbound MX mail and add `Authentication-Results`."),
    )
    dkim_key_file: Path = field(
        default=Path("keys/dkim.key"),
        metadata=_doc(
            "DKIM signing key for mail leaving through the notification smarthost "
            "(`init --demo` makes one; `mssante dkim record` prints its DNS record)."
        ),
    )
    dkim_selector: str = field(
        default="mss1", metadata=_doc("DKIM selector published as `SELECTOR._domainkey.DOMAIN`.")
    )


@dataclass(frozen=True)
class QueueConfig:
    retry_schedule_seconds: list[float] = field(
        default_factory=lambda: [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0],
        metadata=_doc(
            "Waits between delivery attempts; the last one repeats. Each wait gets ±10 % jitter.",
            _schedule,
        ),
    )
    max_age_seconds: float = field(
        default=5 * 24 * 3600.0,
        metadata=_doc("A message undelivered this long is returned to its sender.", _positive),
    )
    delay_notice_seconds: float = field(
        default=4 * 3600.0,
        metadata=_doc(
            "Warn the sender (DSN 'delayed') once after this long undelivered; 0: never.",
            _non_negative,
        ),
    )
    lease_seconds: float = field(
        default=300.0,
        metadata=_doc(
            "How long a node owns a delivery it took; a crashed node's rows are taken over "
            "after this.",
            _positive,
        ),
    )
    poll_seconds: float = field(
        default=5.0,
        metadata=_doc("How often the runner looks for due rows it was not told about.", _positive),
    )
    parallel: int = field(
        default=8, metadata=_doc("Deliveries in progress at once on this node.", _positive)
    )


@dataclass(frozen=True)
class ImapConfig:
    append_limit: int = field(
        default=50 * 1024 * 1024,
        metadata=_doc(
            "Largest message APPEND accepts, in bytes (advertised as APPENDLIMIT).", _positive
        ),
    )
    quota_bytes: int = field(
        default=5 * 1024**3,
        metadata=_doc(
            "Storage per mailbox owner (all its folders), in bytes; APPEND and COPY beyond it "
            "get `NO [OVERQUOTA]`.",
            _positive,
        ),
    )
    idle_timeout_seconds: float = field(
        default=30 * 60.0,
        metadata=_doc(
            "A logged-in client silent this long is logged out (RFC 9051 asks for 30 minutes "
            "at least).",
            _positive,
        ),
    )
    idle_poll_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "How often an IDLE session re-reads its mailbox even without a change notification.",
            _positive,
        ),
    )


def _smarthost(value: Any) -> str | None:
    if value == "":
        return None
    host, colon, port = str(value).rpartition(":")
    if colon and host and port.isdigit() and 1 <= int(port) <= 65535:
        return None
    return 'empty (notifications off) or "host:port"'


def _url(value: Any) -> str | None:
    text = str(value)
    if re.match(r"^https?://[^\s]+$", text):
        return None
    return "an http(s) URL without spaces"


@dataclass(frozen=True)
class PatientsConfig:
    retention_days: float = field(
        default=90.0,
        metadata=_doc(
            "MSSC-RETENTION-1: messages in patient mailboxes older than this many days are "
            "deleted (then their blobs collected); 0 keeps them forever.",
            _non_negative,
        ),
    )
    retention_check_seconds: float = field(
        default=3600.0,
        metadata=_doc("How often the retention job looks for expired messages.", _positive),
    )


@dataclass(frozen=True)
class NotificationsConfig:
    smarthost: str = field(
        default="",
        metadata=_doc(
            'MSSC-NOTIF-1: "host:port" of the relay that carries patient notifications to '
            "their personal address — the only mail that leaves the trust space. Empty: no "
            "notifications.",
            _smarthost,
        ),
    )
    tls: Literal["starttls", "implicit", "none"] = field(
        default="starttls",
        metadata=_doc(
            "TLS to the smarthost: `starttls` (required, never falls back to clear text), "
            "`implicit`, or `none` (a local test sink only)."
        ),
    )
    ca_file: Path | None = field(
        default=None,
        metadata=_doc("CA certificates the smarthost's certificate must chain to; empty: system."),
    )
    username: str = field(default="", metadata=_doc("AUTH login at the smarthost, if it asks."))
    password_file: Path | None = field(
        default=None, metadata=_doc("File holding the smarthost password.")
    )
    from_address: str = field(
        default="",
        metadata=_doc(
            "`From:` of notifications (DKIM-signed with `smtp.dkim_key_file` for its domain); "
            "empty: `ne-pas-repondre@` the node domain.",
            _address,
        ),
    )
    url: str = field(
        default="https://www.monespacesante.fr",
        metadata=_doc("Where the notification invites the patient to log in.", _url),
    )
    window_seconds: float = field(
        default=3600.0,
        metadata=_doc("At most one notification per patient within this many seconds.", _positive),
    )


def _addresses(value: Any) -> str | None:
    return next(("addresses local@domain" for item in value if item == "" or _address(item)), None)


@dataclass(frozen=True)
class DmpConfig:
    bridge_clients: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "APP or ORG mailboxes of this node allowed to send XDM packages to "
            "`node.bridge_address` (the hospital software's applicative mailboxes).",
            _addresses,
        ),
    )
    w_mode: bool = field(
        default=False,
        metadata=_doc(
            "Envoi en W: the bridge also mails each document to the patient's MSS-C address "
            "(never a document invisible to the patient). Off: professionals only (Y-1)."
        ),
    )
    patient_replies: bool = field(
        default=False,
        metadata=_doc(
            "In W mode, let the patient reply to the copy; `false` sends it with "
            "`X-MSS-MES: FIN` (MSSC-FIN-1)."
        ),
    )
    test_ins: bool = field(
        default=False,
        metadata=_doc(
            "Accept the test and demonstration NIR OIDs (1.2.250.1.213.1.4.10 and .11) at "
            "the bridge. Never on a production node."
        ),
    )
    http_views: bool = field(
        default=False,
        metadata=_doc(
            "Serve `GET /dmp/patients/{ins}/documents` on `listeners.https` (TLS only, never "
            "on the plain HTTP listener) to authenticated callers: HTTP Basic with a BAL or "
            "patient password, or Bearer with an access token, checked like IMAP and "
            "submission logins. A patient sees their own record, a professional the "
            "professional view as their mailbox."
        ),
    )
    timer_check_seconds: int = field(
        default=3600,
        metadata=_doc(
            "How often the Y-5 timers look for documents still invisible to the patient: "
            "a generic notice to the patient's MSS-C mailbox one month after the deposit, "
            "visible to the patient after three months.",
            _positive,
        ),
    )


@dataclass(frozen=True)
class ServerConfig:
    shutdown_grace_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "On SIGTERM/SIGINT, how long in-flight work may finish before it is cancelled.",
            _non_negative,
        ),
    )


@dataclass(frozen=True)
class LoggingConfig:
    format: Literal["text", "json"] = field(
        default="text", metadata=_doc("`text` for people, `json` for one JSON object a line.")
    )
    level: Literal["debug", "info", "warning", "error"] = field(
        default="info", metadata=_doc("Lowest level written.")
    )


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    whitelist: WhitelistConfig = field(default_factory=WhitelistConfig)
    listeners: ListenersConfig = field(default_factory=ListenersConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    patients: PatientsConfig = field(default_factory=PatientsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    dmp: DmpConfig = field(default_factory=DmpConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    data_dir: Path = field(default=Path("."), metadata={"internal": True})

    def path(self, value: Path) -> Path:
        """A configured path, relative paths being relative to the data directory."""
        return value if value.is_absolute() else self.data_dir / value

    @property
    def hostname(self) -> str:
        return self.node.hostname or self.node.domain

    @property
    def local_domains(self) -> frozenset[str]:
        """Every domain whose BALs this node hosts, lower-case A-labels."""
        names = [self.node.domain, *self.node.extra_domains]
        return frozenset(n.encode("idna").decode("ascii").lower() for n in names)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'mssante.db'}"


# --------------------------------------------------------------------------- loading


def resolve_data_dir(value: str | os.PathLike[str] | None) -> Path:
    """The data directory a command works on: given, else ``$MSSANTE_DATA_DIR``, else ``./data``."""
    return Path(value or os.environ.get("MSSANTE_DATA_DIR") or "./data")


def load(data_dir: Path | str) -> Config:
    """Read and validate ``DATA_DIR/mssante.toml``."""
    data_dir = Path(data_dir)
    file = data_dir / CONFIG_NAME
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(file, "-", "file not found: run `mssante init` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "-", f"a readable UTF-8 file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "-", f"valid TOML ({exc})") from None
    config = typing.cast(Config, _build(Config(), raw, file, ""))
    if not config.node.domain:
        raise ConfigError(file, "node.domain", "the mail domain this node hosts (required)")
    bridge = config.node.bridge_address
    if (
        bridge
        and bridge.rpartition("@")[2].encode("idna").decode().lower() not in config.local_domains
    ):
        raise ConfigError(
            file, "node.bridge_address", "an address in node.domain or node.extra_domains"
        )
    if config.dmp.bridge_clients and not bridge:
        raise ConfigError(file, "dmp.bridge_clients", "node.bridge_address set as well")
    return dataclasses.replace(config, data_dir=data_dir.resolve())


def _build(base: Any, raw: Any, file: Path, prefix: str) -> Any:
    """``base`` (a dataclass instance holding the defaults) overridden by ``raw``."""
    if not isinstance(raw, dict):
        raise ConfigError(file, prefix.rstrip(".") or "-", "a table")
    cls = type(base)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            file, prefix + unknown[0], f"unknown key (known here: {', '.join(sorted(fields))})"
        )
    values: dict[str, Any] = {}
    for name in raw:
        key, hint = prefix + name, hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(getattr(base, name), raw[name], file, key + ".")
            continue
        value = _convert(hint, raw[name], file, key)
        check = fields[name].metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(file, key, f"{problem}, got {raw[name]!r}")
        values[name] = value
    return dataclasses.replace(base, **values)


def _convert(hint: Any, value: Any, file: Path, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            expected = " or ".join(f'"{c}"' for c in choices)
            raise ConfigError(file, key, f"one of {expected}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):  # Path | None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner, value, file, key)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(file, key, f"a list of {_name(item)}, got {value!r}")
        return [_convert(item, v, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(file, key, f"a file path (string), got {value!r}")
        return Path(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(file, key, f"a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {key}")  # a schema bug


def _name(hint: Any) -> str:
    return {Path: "file paths", str: "strings", int: "integers", float: "numbers"}.get(
        hint, str(hint)
    )


# --------------------------------------------------------------------------- reference


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key, in file order."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, instance: Any, prefix: str, context: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            hint, value = hints[f.name], getattr(instance, f.name)
            if dataclasses.is_dataclass(hint):
                context = f.metadata.get("doc", "")
                walk(typing.cast(type, hint), value, f"{prefix}{f.name}.", context)
                continue
            doc = f"{context} {f.metadata['doc']}".strip()
            rows.append((prefix + f.name, _type_label(hint), _toml(value), doc))

    walk(Config, Config(), "", "")
    return rows


def _type_label(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " \\| ".join(f'"{c}"' for c in typing.get_args(hint))
    if origin in (types.UnionType, typing.Union):
        return "path (optional)"
    if origin is list:
        return {Path: "list of paths", str: "list of strings", float: "list of numbers"}[
            typing.get_args(hint)[0]
        ]
    return {Path: "path", bool: "bool", int: "integer", float: "number", str: "string"}[hint]


def _toml(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def reference_markdown() -> str:
    """The key table embedded in ``docs/configuration.md`` (a test keeps them equal)."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{k}` | {t} | `{d}` | {m} |" for k, t, d, m in reference_rows()]
    return "\n".join(lines) + "\n"
