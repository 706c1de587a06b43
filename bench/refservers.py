"""Throwaway Postfix and Dovecot instances on 127.0.0.1, the benchmarks' reference servers.

    .venv/bin/python bench/refservers.py        # smoke run: both servers, then stopped

Both run on this machine beside the system's own configuration, which they
never read or change: each instance has its configuration, queue or mail
store, pid files, sockets and log file in its own temporary directory (under
``bench/.work`` by default, i.e. on the repository's disk, like the other
benchmarks' data) and listens on 127.0.0.1 only, on ports the caller picks
(:func:`free_port`). Stopping an instance stops every process it started and
removes the directory.

* :func:`ensure_installed` installs the Debian packages ``postfix`` and
  ``dovecot-imapd`` when absent, and stops any system daemon the install
  itself started on the SMTP/IMAP ports (none here: Debian's ``policy-rc.d``
  in this image forbids it, but the check is cheap).
* :class:`PostfixInstance`: durable acceptance only; see its docstring for
  how accepted mail is parked in the queue.
* :class:`DovecotInstance`: IMAP with STARTTLS and implicit TLS, users from a
  passwd-file, ``sdbox`` mail storage by default; :meth:`~DovecotInstance.
  append_messages` fills a mailbox quickly for the IMAP benchmark.

Everything runs as root (the bench machine has no systemd); Postfix's daemons
drop to the ``postfix`` user, Dovecot's to ``dovecot``/``dovenull``, and the
mail is owned by the system ``mail`` user (uid 8: Dovecot refuses uid 0).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from benchlib import client_context, work_dir

POSTFIX = "/usr/sbin/postfix"
POSTSUPER = "/usr/sbin/postsuper"
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
MAIL_USER = "mail"  # owns Dovecot's mail store (uid 8 on Debian)
BENCH_DOMAIN = "bench.mssante.test"

# package -> a file it installs that the benchmarks run
PACKAGES = {
    "postfix": "/usr/sbin/smtp-source",
    "dovecot-imapd": "/usr/lib/dovecot/imap",
}


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_cert(directory: Path, name: str = "refserver") -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate for 127.0.0.1 / localhost: (cert, key) paths.

    Both files are world-readable (key included: it protects nothing), since
    Postfix's and Dovecot's unprivileged processes may read them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.chmod(0o644)
    key_path.chmod(0o644)
    return cert_path, key_path


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command``; raise with its output if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done


def _listeners(ports: Iterable[int]) -> dict[int, str]:
    """``ss -ltnp`` lines of the TCP listeners on ``ports``, by port."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=False).stdout
    found = {}
    wanted = set(ports)
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            port = fields[3].rpartition(":")[2]
            if port.isdigit() and int(port) in wanted:
                found[int(port)] = line
    return found


def _pids_in(line: str) -> list[int]:
    return [int(p) for p in re.findall(r"pid=(\d+)", line)]


def _workspace(prefix: str, parent: Path | None) -> Path:
    """A fresh directory every daemon user can traverse (mkdtemp makes it 0700)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent or work_dir()))
    base.chmod(0o755)
    for up in base.parents:  # the daemons' users must reach it
        if up.stat().st_mode & 0o005 != 0o005:
            raise RuntimeError(f"{up} is not world-searchable: daemons could not reach {base}")
        if up == Path("/"):
            break
    return base


# --------------------------------------------------------------------------- packages


def ensure_installed(packages: Iterable[str] = PACKAGES) -> None:
    """Install the missing packages with apt-get, non-interactively; one line per install.

    ``apt-get update`` runs only when the first attempt fails (stale lists).
    If the install starts a daemon on the SMTP/IMAP/POP ports (a package's
    postinst does so where ``policy-rc.d`` allows it), that daemon is stopped:
    the benchmarks run private instances and nothing else should compete for
    the CPU. A daemon that was already listening before is left alone.
    """
    missing = [p for p in packages if not _is_installed(p)]
    if not missing:
        return
    watched = (25, 110, 143, 465, 587, 993, 995)
    before = _listeners(watched)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    for package in missing:
        print(f"installing {package} (apt-get install)", flush=True)
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        _run(["apt-get", "update"], env=env)
        _run(install, env=env)
    still = [p for p in missing if not _is_installed(p)]
    if still:
        raise RuntimeError(f"apt-get did not install {still}")
    for port, line in _listeners(watched).items():
        if port in before:
            continue
        pids = _pids_in(line)
        print(f"the install started a daemon on port {port}; stopping it: {line}", flush=True)
        if "dovecot" in line:
            subprocess.run([DOVEADM, "stop"], capture_output=True, check=False)
        elif "master" in line:
            subprocess.run([POSTFIX, "stop"], capture_output=True, check=False)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    _wait(lambda: not (_listeners(watched).keys() - before.keys()), 10, "daemons to stop")


def _is_installed(package: str) -> bool:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", package],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return status == "installed" and Path(PACKAGES.get(package, "/")).exists()


def _wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- Postfix

# Debian's master.cf services, without chroot (a chroot would need copies of
# /etc files in the queue directory) and without the pipe(8) examples.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# where a queued message may sit; "hold" is where PARK_HOLD puts them
_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

PARK_HOLD = "hold"
PARK_DEFER = "defer"
PARK_DELIVER = "deliver"  # nothing parked: relayed (``relay_to``) or delivered (``mailboxes``)


class _Daemon:
    """``with`` starts the instance and stops it (nothing left running) on the way out."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PostfixInstance(_Daemon):
    """A private Postfix (its own config_directory, queue and log) accepting mail on 127.0.0.1.

    ``with PostfixInstance(port, cert, key) as pf: ...`` starts it with
    ``postfix -c DIR start`` and stops it (``postfix -c DIR stop``, then the
    directory is removed) on exit. smtpd listens on ``127.0.0.1:port`` only,
    offers STARTTLS (``smtpd_tls_security_level = may``, TLS 1.2 or later) and
    accepts mail for ``domain`` (``relay_domains``; ``mydestination`` is
    empty, so nothing is local) from anyone, and for any domain from
    ``mynetworks = 127.0.0.0/8`` (Postfix's usual ``permit_mynetworks,
    reject_unauth_destination``). Logging goes to ``DIR/maillog``
    (``maillog_file``), never to syslog.

    Accepted mail stays in the queue and nothing is delivered, so that a
    benchmark measures durable acceptance only. The 250 reply to DATA comes
    after cleanup(8) has written and fsynced the queue file, whatever
    happens to it next; what differs is the work done *after* the reply,
    which competes for the same two cores:

    * ``park="hold"`` (default): every message goes to the **hold queue**
      (``smtpd_data_restrictions = check_client_access static:HOLD``).
      cleanup(8) writes, fsyncs and renames the file straight into ``hold/``
      and does not wake the queue manager, so after the 250 there is no
      further work at all: the closest Postfix gets to "accepted, stored,
      nothing else", which is what our server's accept path does (the
      delivery that follows it is another benchmark). The cost is one
      restriction lookup in a ``static:`` table and one log line per message.
      Postfix's ``in_flow_delay`` (cleanup pauses when mail arrives faster
      than qmgr takes it in) is left at its default: measured with
      smtp-source (8 sessions, 2,000 messages of 4 KB) it made no difference
      here (hold 658-706 msg/s with 1 s or 0 s, defer 483 msg/s).
    * ``park="defer"``: ``defer_transports`` lists every transport, so the
      message goes to ``incoming/``, qmgr moves it to ``active/``, asks the
      defer service to write a ``defer/`` log record and moves it to
      ``deferred/`` ("deferred transport"). That is real post-acceptance
      work (two renames, a defer logfile, qmgr/bounce CPU) in the
      measurement: a heavier, arguably more "production-like" option.
      Retries are pushed back by a day so the queue is not rescanned.

    * ``park="deliver"``: nothing is parked; mail goes where it is
      addressed. With ``mailboxes`` (addresses in ``domain``), Postfix
      delivers them itself: ``domain`` becomes a virtual mailbox domain
      (``relay_domains`` empty), each address a Maildir under ``DIR/mail``
      written by virtual(8) as the ``postfix`` user (fsynced, as Postfix
      always does); :meth:`delivered` counts the files there. With
      ``relay_to`` (a port on 127.0.0.1), ``domain`` is relayed there by
      smtp(8) with TLS required (``smtp_tls_security_level = encrypt``) and
      this instance's certificate presented as client certificate; a
      receiving instance asks for it (``smtpd_tls_ask_ccert``) and checks it
      against ``client_ca`` when given. Used by the relay benchmark
      (Postfix → Postfix).

    No option discards anything: ``queue_count()`` counts the files in
    ``maildrop``, ``incoming``, ``active``, ``deferred`` and ``hold``.
    Postfix's own durability settings are left at their defaults (queue
    files are fsynced before the 250). ``parent`` is where the instance
    directory goes (default ``bench/.work``).
    """

    def __init__(
        self,
        port: int,
        cert: Path,
        key: Path,
        *,
        domain: str = BENCH_DOMAIN,
        park: str = PARK_HOLD,
        parent: Path | None = None,
        extra_main_cf: dict[str, str] | None = None,
        mailboxes: Iterable[str] = (),
        relay_to: int | None = None,
        client_ca: Path | None = None,
    ) -> None:
        if park not in (PARK_HOLD, PARK_DEFER, PARK_DELIVER):
            raise ValueError(f"park must be {PARK_HOLD!r}, {PARK_DEFER!r} or {PARK_DELIVER!r}")
        self.mailboxes = tuple(mailboxes)
        if (self.mailboxes or relay_to is not None) and park != PARK_DELIVER:
            raise ValueError("mailboxes and relay_to need park='deliver'")
        if self.mailboxes and relay_to is not None:
            raise ValueError("an instance either delivers (mailboxes) or relays (relay_to)")
        for address in self.mailboxes:
            if not re.fullmatch(r"[A-Za-z0-9._+-]+@" + re.escape(domain), address):
                raise ValueError(f"unsupported mailbox {address!r} (must be in {domain})")
        self.relay_to = relay_to
        self.client_ca = Path(client_ca).resolve() if client_ca is not None else None
        self.port = port
        self.cert, self.key = Path(cert).resolve(), Path(key).resolve()
        self.domain = domain
        self.park = park
        self._parent = parent
        self._extra = dict(extra_main_cf or {})
        self.base: Path | None = None
        self._master_pid: int | None = None

    # -- paths
    @property
    def config_dir(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "etc"

    @property
    def queue_dir(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "spool"

    @property
    def log_file(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "maillog"

    @property
    def mail_dir(self) -> Path:
        """Where ``park="deliver"`` puts the ``mailboxes`` (one Maildir each)."""
        assert self.base is not None, "not started"
        return self.base / "mail"

    def main_cf(self) -> dict[str, str]:
        """The main.cf parameters (written from scratch, nothing inherited from /etc/postfix)."""
        assert self.base is not None
        tag = self.base.name.rsplit("-", 1)[-1]
        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.base / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": f"postfix-ref-{tag}",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.base),
            "myhostname": f"postfix-ref.{self.domain}",
            "mydomain": self.domain,
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "relay_domains": self.domain,
            "mynetworks": "127.0.0.0/8",
            "mynetworks_style": "host",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "message_size_limit": str(50 * 1024 * 1024),
            # STARTTLS offered, TLS 1.2+
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(self.cert),
            "smtpd_tls_key_file": str(self.key),
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
            "smtpd_tls_loglevel": "0",
            "smtpd_tls_received_header": "no",
            "tls_random_source": "dev:/dev/urandom",
            # retries, if anything were ever deferred: not during a benchmark
            "queue_run_delay": "1d",
            "minimal_backoff_time": "1d",
            "maximal_backoff_time": "2d",
            "maximal_queue_lifetime": "5d",
            "bounce_queue_lifetime": "5d",
            "delay_warning_time": "0h",
        }
        if self.park == PARK_HOLD:
            params["smtpd_data_restrictions"] = "check_client_access static:HOLD"
        elif self.park == PARK_DEFER:
            params["defer_transports"] = "smtp relay local virtual lmtp error retry discard"
        else:
            params.update(self._deliver_params())
        params.update(self._extra)
        return params

    def _deliver_params(self) -> dict[str, str]:
        """``park="deliver"``: virtual mailboxes, or a TLS relay to ``relay_to``."""
        params = {"smtpd_tls_ask_ccert": "yes"}
        if self.client_ca is not None:
            params["smtpd_tls_CAfile"] = str(self.client_ca)
        if self.mailboxes:
            owner = pwd.getpwnam("postfix")
            maps = ", ".join(f"{a}={a}/" for a in self.mailboxes)  # trailing /: Maildir
            params.update(
                {
                    "relay_domains": "",
                    "virtual_mailbox_domains": self.domain,
                    "virtual_mailbox_base": str(self.mail_dir),
                    "virtual_mailbox_maps": f"inline:{{ {maps} }}",
                    "virtual_uid_maps": f"static:{owner.pw_uid}",
                    "virtual_gid_maps": f"static:{owner.pw_gid}",
                    "virtual_minimum_uid": str(owner.pw_uid),
                    "virtual_mailbox_limit": "0",  # no cap (must not be below message_size_limit)
                }
            )
        if self.relay_to is not None:
            params.update(
                {
                    "transport_maps": (
                        f"inline:{{ {self.domain}=smtp:[127.0.0.1]:{self.relay_to} }}"
                    ),
                    "smtp_tls_security_level": "encrypt",
                    "smtp_tls_cert_file": str(self.cert),
                    "smtp_tls_key_file": str(self.key),
                    "smtp_tls_protocols": ">=TLSv1.2",
                    "smtp_tls_mandatory_protocols": ">=TLSv1.2",
                    "smtp_tls_loglevel": "0",
                }
            )
        return params

    # -- lifecycle
    def start(self) -> PostfixInstance:
        if not Path(POSTFIX).exists():
            raise RuntimeError("postfix is not installed: call ensure_installed()")
        if _listeners([self.port]):
            raise RuntimeError(f"port {self.port} is already in use")
        self.base = _workspace("postfix-", self._parent)
        try:
            self._configure()
            _run([POSTFIX, "-c", str(self.config_dir), "check"])
            _run([POSTFIX, "-c", str(self.config_dir), "start"])
            pid_file = self.queue_dir / "pid" / "master.pid"
            _wait(pid_file.exists, 10, "master.pid")
            self._master_pid = int(pid_file.read_text().split()[0])
            _wait(lambda: bool(_listeners([self.port])), 10, f"postfix on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self) -> None:
        self.config_dir.mkdir(mode=0o755)
        self.queue_dir.mkdir(mode=0o755)
        if self.mailboxes:
            owner = pwd.getpwnam("postfix")
            self.mail_dir.mkdir(mode=0o700)
            os.chown(self.mail_dir, owner.pw_uid, owner.pw_gid)
        lines = [f"{k} = {v}" for k, v in self.main_cf().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        # data_directory and the queue's subdirectories (owned by postfix,
        # maildrop/public group postdrop) are created by "postfix check",
        # which runs post-install create-missing on *this* configuration.

    def stop(self) -> None:
        """Stop the master and all its children, then remove the instance directory."""
        if self.base is not None:
            _stop_master(self._master_pid, [POSTFIX, "-c", str(self.config_dir), "stop"], "postfix")
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        self._master_pid = None

    # -- the queue
    def queue_count(self) -> int:
        """Messages in the queue (files under maildrop, incoming, active, deferred, hold)."""
        count = 0
        for queue in _QUEUES:
            for _, _, files in os.walk(self.queue_dir / queue):
                count += len(files)
        return count

    def flush_queue(self) -> None:
        """Delete every queued message (``postsuper -d ALL``)."""
        _run([POSTSUPER, "-c", str(self.config_dir), "-d", "ALL"])

    def pids(self) -> list[int]:
        """Every process of the instance (the master's session): for memory figures."""
        return _session_members(self._master_pid) if self._master_pid is not None else []

    def delivered(self, address: str) -> int:
        """Messages delivered to one of the ``mailboxes`` (files in its Maildir new/ and cur/)."""
        count = 0
        for sub in ("new", "cur"):
            try:
                with os.scandir(self.mail_dir / address / sub) as entries:
                    count += sum(1 for _ in entries)
            except FileNotFoundError:
                pass
        return count

    def empty_mailboxes(self) -> None:
        """Remove every delivered message (the Maildirs stay)."""
        for address in self.mailboxes:
            for sub in ("new", "cur"):
                folder = self.mail_dir / address / sub
                if folder.is_dir():
                    for entry in folder.iterdir():
                        entry.unlink(missing_ok=True)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _stop_master(sid: int | None, stop: list[str], name: str) -> None:
    """Ask a daemon's master to stop (``stop``), kill its session if it does not, and
    wait until none of its processes is left (they all share the master's session)."""
    if sid is None:
        return
    if _pid_alive(sid):
        subprocess.run(stop, capture_output=True, check=False)
        try:
            _wait(lambda: not _pid_alive(sid), 15, f"{name} master to exit")
        except RuntimeError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGKILL)
    _wait(lambda: not _session_members(sid), 10, f"{name} processes to exit")


def _session_members(sid: int) -> list[int]:
    """PIDs in session ``sid``: a daemonized master calls setsid(), its children inherit it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[3]) == sid:  # pid (comm) state ppid pgrp session
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- Dovecot

# Maildir flag letters (the ":2," suffix) for the IMAP system flags
_MAILDIR_FLAGS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}


@dataclass(frozen=True)
class Stored:
    """A message for :meth:`DovecotInstance.append_messages`, with its flags and internal date."""

    raw: bytes
    flags: tuple[str, ...] = ()  # system flags only: \\Seen, \\Flagged, \\Answered, ...
    date: dt.datetime | None = None  # INTERNALDATE; now if None


class DovecotInstance(_Daemon):
    """A private Dovecot IMAP server (``dovecot -c FILE``) in its own directory.

    ``with DovecotInstance(port_imap, port_imaps, cert, key, {"user": "pw"}) as dc: ...``

    Everything lives under the instance directory: the configuration file,
    ``base_dir`` (sockets, master.pid), ``state_dir``, the log file and the
    mail. It listens on 127.0.0.1 only: ``port_imap`` (STARTTLS offered) and
    ``port_imaps`` (implicit TLS), TLS 1.2 or later; ``protocols = imap``.
    Users come from a passwd-file (``{PLAIN}`` passwords by default, or any
    scheme ``doveadm pw`` knows with ``password_scheme``, e.g. ``"ARGON2ID"``
    to cost a login what ours costs; a plain ``LOGIN``/``AUTHENTICATE PLAIN``
    is allowed before STARTTLS, acceptable on loopback only) with a static
    userdb: every user's mail belongs to the system ``mail`` user (uid/gid
    8; Dovecot refuses to access mail as root, and ``first_valid_uid``/
    ``first_valid_gid`` are lowered to 8 to allow it).

    Mail storage: ``mail_format="sdbox"`` (default) or ``"maildir"``, at
    ``DIR/mail/USER``. Both keep one file per message and answer FLAGS,
    flag/date/UID searches from ``dovecot.index``/``dovecot.index.cache``;
    sdbox is Dovecot's own format, where the index is authoritative (flags
    live only in the index, no directory scan or uidlist to reconcile on
    SELECT), which is how our store works (an index in the database, one blob
    per message) and how a tuned Dovecot is deployed: the fairer opponent for
    100,000-message FETCH/SEARCH. maildir is kept for comparison; a maildir
    SELECT also stats ``cur/`` and re-reads ``dovecot-uidlist`` whenever the
    directory changed. Durability settings are Dovecot's defaults
    (``mail_fsync = optimized``). ``parent``: where the instance directory
    goes (default ``bench/.work``). :meth:`restart` stops and starts the
    processes and keeps the mail (a cold start for the benchmarks).
    """

    def __init__(
        self,
        port_imap: int,
        port_imaps: int,
        cert: Path,
        key: Path,
        users: dict[str, str],
        *,
        mail_format: str = "sdbox",
        parent: Path | None = None,
        extra_conf: str = "",
        password_scheme: str = "PLAIN",
    ) -> None:
        if not re.fullmatch(r"[A-Z0-9-]+", password_scheme):
            raise ValueError(f"unsupported password scheme {password_scheme!r}")
        if mail_format not in ("sdbox", "maildir"):
            raise ValueError("mail_format must be 'sdbox' or 'maildir'")
        for name, password in users.items():
            if not re.fullmatch(r"[A-Za-z0-9._@+-]+", name) or re.search(r"[:\n]", password):
                raise ValueError(f"unsupported user name or password for {name!r}")
        self.port_imap, self.port_imaps = port_imap, port_imaps
        self.cert, self.key = Path(cert).resolve(), Path(key).resolve()
        self.users = dict(users)
        self.mail_format = mail_format
        self._parent = parent
        self._extra = extra_conf
        self.password_scheme = password_scheme
        self.base: Path | None = None
        self._master_pid: int | None = None
        mail = pwd.getpwnam(MAIL_USER)
        self.uid, self.gid = mail.pw_uid, mail.pw_gid

    @property
    def config_file(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "dovecot.log"

    def mail_dir(self, user: str) -> Path:
        assert self.base is not None, "not started"
        return self.base / "mail" / user

    def config(self) -> str:
        assert self.base is not None
        b = self.base
        return f"""\
# written by bench/refservers.py; nothing is read from /etc/dovecot
instance_name = dovecot-ref-{b.name.rsplit("-", 1)[-1]}
base_dir = {b}/run
state_dir = {b}/state
log_path = {self.log_file}
info_log_path = {self.log_file}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
first_valid_gid = {self.gid}
last_valid_gid = {self.gid}
mail_location = {self.mail_format}:{b}/mail/%u
mail_uid = {self.uid}
mail_gid = {self.gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {b}/users
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={b}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port_imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port_imaps}
    ssl = yes
  }}
}}
{self._extra}
"""

    # -- lifecycle
    def start(self) -> DovecotInstance:
        if not Path(DOVECOT).exists():
            raise RuntimeError("dovecot is not installed: call ensure_installed()")
        if _listeners([self.port_imap, self.port_imaps]):
            raise RuntimeError(f"port {self.port_imap} or {self.port_imaps} is already in use")
        self.base = _workspace("dovecot-", self._parent)
        try:
            for sub in ("mail", "home"):
                (self.base / sub).mkdir(mode=0o700)
                os.chown(self.base / sub, self.uid, self.gid)
            self.config_file.write_text(self.config())
            passwd = self.base / "users"
            entries = (f"{u}:{self._hash(p)}::::::\n" for u, p in self.users.items())
            passwd.write_text("".join(entries))
            passwd.chmod(0o640)  # read by the auth process, as user dovecot
            os.chown(passwd, 0, pwd.getpwnam("dovecot").pw_gid)
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _hash(self, password: str) -> str:
        if self.password_scheme == "PLAIN":
            return f"{{PLAIN}}{password}"
        out = self.doveadm("pw", "-s", self.password_scheme, "-p", password)
        return out.strip()

    def _launch(self) -> None:
        assert self.base is not None
        # dovecot daemonizes (setsid); its children keep stdout/stderr, so
        # they go to a file rather than to pipes nobody would close
        startup = self.base / "startup.log"
        with startup.open("wb") as out:
            code = subprocess.call([DOVECOT, "-c", str(self.config_file)], stdout=out, stderr=out)
        if code != 0:
            raise RuntimeError(f"dovecot exited {code}: {startup.read_text()}{self.log()}")
        pid_file = self.base / "run" / "master.pid"
        _wait(pid_file.exists, 10, "dovecot master.pid")
        self._master_pid = int(pid_file.read_text().split()[0])
        ports = [self.port_imap, self.port_imaps]
        _wait(lambda: len(_listeners(ports)) == 2, 10, f"dovecot on ports {ports}")

    def restart(self) -> None:
        """Stop every process of the instance and start it again; the mail stays."""
        assert self.base is not None, "not started"
        _stop_master(self._master_pid, [DOVEADM, "-c", str(self.config_file), "stop"], "dovecot")
        self._master_pid = None
        (self.base / "run" / "master.pid").unlink(missing_ok=True)
        self._launch()

    def pids(self) -> list[int]:
        """Every process of the instance (the master's session): for memory figures."""
        return _session_members(self._master_pid) if self._master_pid is not None else []

    def stop(self) -> None:
        """Stop the master and its children, then remove the instance directory."""
        if self.base is not None:
            _stop_master(
                self._master_pid, [DOVEADM, "-c", str(self.config_file), "stop"], "dovecot"
            )
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        self._master_pid = None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        done = subprocess.run(
            [DOVEADM, "-c", str(self.config_file), *args],
            input=stdin,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"doveadm {' '.join(args)} exited {done.returncode}: {done.stderr.decode()}"
            )
        return done.stdout.decode()

    def message_count(self, user: str, mailbox: str = "INBOX") -> int:
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, "messages", mailbox)
        return int(out.split("=")[1])

    # -- filling a mailbox
    def append_messages(
        self,
        user: str,
        mailbox: str,
        messages: Iterable[bytes | Stored],
        *,
        method: str = "auto",
    ) -> int:
        """Store ``messages`` in ``user``'s ``mailbox`` (created if needed), in order; how many.

        UIDs follow the order of ``messages``; a :class:`Stored` item carries
        system flags and an internal date. Methods (``auto``: the fastest one
        that fits the mail format):

        * ``direct`` (maildir only; ``auto`` with maildir): the files are
          written straight into the mailbox's ``cur/``, named so that
          Dovecot's sort of new files keeps their order, flags in the
          ``:2,`` suffix and INTERNALDATE as mtime, then ``doveadm
          force-resync`` assigns UIDs and builds the index, as Dovecot would
          on the next SELECT. Not fsynced: this is preparation, not a
          measured accept.
        * ``import`` (``auto`` with sdbox): the same files go to a scratch
          maildir that ``doveadm import`` copies into the mailbox in one
          process, through Dovecot's own save path (fsync at commit); the
          scratch copy is removed afterwards.
        * ``save``: one ``doveadm save`` process per message (no flags or
          dates): the slow reference, for checking the others.
        """
        if method == "auto":
            method = "direct" if self.mail_format == "maildir" else "import"
        if method not in ("direct", "import", "save"):
            raise ValueError(f"unknown method {method!r}")
        if user not in self.users:
            raise ValueError(f"unknown user {user!r}")
        if mailbox.upper() == "INBOX":
            mailbox = "INBOX"
        elif not re.fullmatch(r"[A-Za-z0-9 _-]+", mailbox):
            raise ValueError(f"mailbox name {mailbox!r}: letters, digits, space, _ and - only")
        if method == "direct" and self.mail_format != "maildir":
            raise ValueError("method 'direct' needs mail_format='maildir'")
        items = (m if isinstance(m, Stored) else Stored(m) for m in messages)
        if method == "save":
            count = 0
            for item in items:
                self.doveadm("save", "-u", user, "-m", mailbox, stdin=item.raw)
                count += 1
            return count
        assert self.base is not None
        if mailbox != "INBOX":
            with contextlib.suppress(RuntimeError):  # exists already
                self.doveadm("mailbox", "create", "-u", user, mailbox)
        if method == "direct":
            root = self.mail_dir(user)
            target = root if mailbox == "INBOX" else root / f".{mailbox}"
            count = self._write_maildir(target, items)
            self.doveadm("force-resync", "-u", user, mailbox)
            return count
        scratch = self.base / f"import-{secrets.token_hex(4)}"
        try:
            target = scratch if mailbox == "INBOX" else scratch / f".{mailbox}"
            count = self._write_maildir(target, items)
            self._chown_tree(scratch)
            source = f"maildir:{scratch}:INDEX=MEMORY"
            # preparation, not a measured accept: no fsync (the files are
            # flushed by the kernel long before a benchmark reads them)
            self.doveadm(
                "-o",
                "mail_fsync=never",
                "import",
                "-u",
                user,
                source,
                "",
                "mailbox",
                mailbox,
                "all",
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return count

    def _write_maildir(self, directory: Path, items: Iterable[Stored]) -> int:
        """Write ``items`` as maildir files in ``directory/cur``, owned by the mail user."""
        for sub in ("", "cur", "new", "tmp"):
            path = directory / sub
            if not path.exists():
                path.mkdir(mode=0o700, parents=True)
                os.chown(path, self.uid, self.gid)
        cur = directory / "cur"
        tag = secrets.token_hex(4)
        now = time.time()
        count = 0
        for item in items:
            # Dovecot gives new files UIDs in order of the seconds and
            # microseconds ("M") fields of their names: keep them increasing
            self._sequence = getattr(self, "_sequence", 0) + 1
            seconds, micros = divmod(self._sequence, 1_000_000)
            flags = "".join(sorted(_MAILDIR_FLAGS[f] for f in item.flags))
            name = f"{1_000_000_000 + seconds}.M{micros}P{os.getpid()}Q{tag}.refbench"
            path = cur / f"{name},S={len(item.raw)}:2,{flags}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(item.raw)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, self.uid, self.gid)
                stamp = item.date.timestamp() if item.date else now
                os.utime(fd, (stamp, stamp))
            finally:
                os.close(fd)
            count += 1
        return count

    def _chown_tree(self, top: Path) -> None:
        for dirpath, _, _ in os.walk(top):
            os.chown(dirpath, self.uid, self.gid)


# --------------------------------------------------------------------------- smoke run


def _smoke_message(i: int) -> bytes:
    return (
        f"From: Dr Expediteur <expediteur@hopital.test>\r\n"
        f"To: alice@{BENCH_DOMAIN}\r\n"
        f"Subject: message de test {i}\r\n"
        f"Message-ID: <smoke.{i}.{secrets.token_hex(4)}@hopital.test>\r\n"
        "Date: Mon, 01 Dec 2025 10:00:00 +0000\r\n"
        "\r\n" + "Compte rendu de consultation, ligne de texte.\r\n" * 20
    ).encode()


def main() -> int:
    ensure_installed()
    context = client_context()
    with tempfile.TemporaryDirectory(dir=work_dir()) as scratch:
        cert, key = demo_cert(Path(scratch))
        with PostfixInstance(free_port(), cert, key) as postfix:
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
                smtp.starttls(context=context)
                refused = smtp.sendmail(
                    "expediteur@hopital.test", [f"alice@{BENCH_DOMAIN}"], _smoke_message(0)
                )
            queued = postfix.queue_count()
            print(f"postfix 127.0.0.1:{postfix.port}: 1 message over STARTTLS, queue {queued}")
            if refused or queued != 1:
                print(f"FAILED: refused {refused}, queue {queued}\n{postfix.log()}")
                return 1
            postfix_sid = postfix._master_pid
        users = {"alice": "mot de passe de banc"}
        with DovecotInstance(free_port(), free_port(), cert, key, users) as dovecot:
            imap = imaplib.IMAP4("127.0.0.1", dovecot.port_imap, timeout=30)
            imap.starttls(context)
            imap.login("alice", users["alice"])
            imap.select("INBOX")
            typ, _ = imap.append("INBOX", None, None, _smoke_message(1))
            imap.logout()
            print(f"dovecot 127.0.0.1:{dovecot.port_imap}/{dovecot.port_imaps}: APPEND {typ}")
            count = 10_000
            messages = [_smoke_message(i) for i in range(2, count + 2)]
            start = time.perf_counter()
            dovecot.append_messages("alice", "INBOX", messages)
            elapsed = time.perf_counter() - start
            total = dovecot.message_count("alice")
            print(
                f"dovecot ({dovecot.mail_format}): {count:,} messages appended in {elapsed:.1f} s"
                f" ({count / elapsed:,.0f} messages/s); INBOX now holds {total:,}"
            )
            if typ != "OK" or total != count + 1:
                print(f"FAILED\n{dovecot.log()}")
                return 1
            dovecot_sid = dovecot._master_pid
    left = [pid for sid in (postfix_sid, dovecot_sid) if sid for pid in _session_members(sid)]
    if left:
        print(f"FAILED: processes left running: {left}")
        return 1
    print("both stopped, nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
