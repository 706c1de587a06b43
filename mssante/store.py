"""Immutable message blobs under ``DIR/blobs/``, content-addressed by SHA-256.

A blob is written to ``blobs/tmp/``, fsynced, renamed to
``blobs/ab/cd/<sha256>`` and its directory fsynced: only after :meth:`BlobWriter.commit`
returns may a database row name it (invariant 1). A crash at any step leaves at
worst an unreferenced temporary or blob file, which :meth:`BlobStore.gc` removes.

At rest a blob is encrypted with AES-256-GCM in 64 KiB segments (a STREAM-like
construction): each segment is authenticated before a single byte of it is
released, and the nonce carries the segment counter and a "last segment" bit,
so reordering, truncation and extension are all detected. The SHA-256 of the
content is checked against the blob's name as it is read, which also catches
a file swapped for another valid blob. A tampered blob raises
:class:`BlobCorrupted`; it is never returned silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mssante.errors import OperatorError
from mssante.files import fsync_directory

SEGMENT = 64 * 1024
_TAG = 16
_MAGIC = b"MSSBLOB1"
_PREFIX_LEN = 7  # + 4-byte counter + 1-byte last flag = 12-byte GCM nonce
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")

#: Named points of a write, in order; tests kill a process at each of them.
WRITE_STEPS = ("tmp-written", "tmp-synced", "renamed", "dir-synced")


class StoreError(OperatorError):
    """The store cannot do what was asked (missing blob, bad key file...)."""


class BlobCorrupted(StoreError):
    """A blob failed its integrity check: it was altered or truncated on disk."""


@dataclass(frozen=True)
class BlobRef:
    """What a database row records about a blob."""

    sha256: str
    size: int


@dataclass(frozen=True)
class GCReport:
    removed: tuple[str, ...]
    temporary_removed: int
    kept_young: int


def load_key(path: Path) -> bytes:
    """Read a 32-byte store key written as 64 hex digits."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the store key ({exc})") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IRWXO):
        raise StoreError(f"{path}: the store key must not be accessible to others (chmod 600)")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise StoreError(f"{path}: expected 64 hex digits (a 256-bit key)")
    return bytes.fromhex(text)


def generate_key(path: Path) -> None:
    """Write a fresh random store key, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    fsync_directory(path.parent)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 2**32:
        raise StoreError("blob too large for one encryption stream")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


@dataclass
class BlobStore:
    """The blob directory. Thread-safe: every write has its own temporary file."""

    root: Path
    key: bytes | None = None
    #: Test hook called with each name of :data:`WRITE_STEPS` (crash injection).
    checkpoint: Callable[[str], None] = field(default=lambda step: None)

    def __post_init__(self) -> None:
        if self.key is not None and len(self.key) != 32:
            raise StoreError("the store key must be 32 bytes (AES-256)")
        (self.root / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)

    # ------------------------------------------------------------------ paths

    def path(self, sha256: str) -> Path:
        if not _DIGEST_RE.match(sha256):
            raise StoreError(f"not a SHA-256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    # ------------------------------------------------------------------ write

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put(self, data: bytes | Iterable[bytes]) -> BlobRef:
        """Store ``data`` (bytes or an iterable of chunks) durably."""
        with self.writer() as writer:
            for chunk in [data] if isinstance(data, bytes | bytearray | memoryview) else data:
                writer.write(chunk)
            return writer.commit()

    # ------------------------------------------------------------------ read

    def open(self, sha256: str) -> Iterator[bytes]:
        """Yield the blob's content in chunks, each verified before it is yielded.

        Unencrypted blobs can only be checked once fully read: the digest
        mismatch is raised after the last chunk, so a consumer that streams
        must treat an exception as "discard what you got".
        """
        path = self.path(sha256)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise StoreError(f"blob {sha256} is missing") from None
        with fh:
            head = fh.read(len(_MAGIC))
            if head == _MAGIC:
                yield from self._decrypt(sha256, fh)
            else:
                # Written before encryption was turned on: the digest still
                # guards its integrity.
                yield from self._plain(sha256, head, fh)

    def read(self, sha256: str) -> bytes:
        """The whole blob, verified."""
        return b"".join(self.open(sha256))

    def _plain(self, sha256: str, head: bytes, fh: BinaryIO) -> Iterator[bytes]:
        digest = hashlib.sha256(head)
        if head:
            yield head
        while chunk := fh.read(SEGMENT):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != sha256:
            raise BlobCorrupted(f"blob {sha256}: content does not match its digest")

    def _decrypt(self, sha256: str, fh: BinaryIO) -> Iterator[bytes]:
        if self.key is None:
            raise StoreError(f"blob {sha256} is encrypted and no store key is configured")
        aead = AESGCM(self.key)
        prefix = fh.read(_PREFIX_LEN)
        if len(prefix) != _PREFIX_LEN:
            raise BlobCorrupted(f"blob {sha256}: truncated header")
        aad = _MAGIC + prefix
        digest = hashlib.sha256()
        counter = 0
        segment = fh.read(SEGMENT + _TAG)
        while True:
            following = fh.read(SEGMENT + _TAG)
            last = not following
            try:
                plain = aead.decrypt(_nonce(prefix, counter, last), segment, aad)
            except InvalidTag:
                raise BlobCorrupted(
                    f"blob {sha256}: segment {counter} failed authentication"
                ) from None
            digest.update(plain)
            if plain:
                yield plain
            if last:
                break
            segment, counter = following, counter + 1
        if digest.hexdigest() != sha256:
            raise BlobCorrupted(f"blob {sha256}: content does not match its digest")

    # ------------------------------------------------------------------ GC

    def iter_digests(self) -> Iterator[str]:
        for first in sorted(self.root.iterdir()):
            if first.name == "tmp" or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for entry in second.iterdir():
                    if _DIGEST_RE.match(entry.name):
                        yield entry.name

    def gc(self, referenced: set[str], *, now: datetime, grace_seconds: float) -> GCReport:
        """Remove blobs nobody references, and abandoned temporary files.

        A file younger than ``grace_seconds`` is kept: it may belong to a write
        that has fsynced its blob and not yet committed the row naming it.
        """
        cutoff = now.timestamp() - grace_seconds
        removed: list[str] = []
        young = 0
        for digest in list(self.iter_digests()):
            if digest in referenced:
                continue
            path = self.path(digest)
            if path.stat().st_mtime > cutoff:
                young += 1
                continue
            path.unlink(missing_ok=True)
            removed.append(digest)
        temporary = 0
        for tmp in (self.root / "tmp").iterdir():
            if tmp.stat().st_mtime <= cutoff:
                tmp.unlink(missing_ok=True)
                temporary += 1
        return GCReport(tuple(removed), temporary, young)


class BlobWriter:
    """Streams one blob to a temporary file; :meth:`commit` makes it durable.

    The content is hashed as it arrives and, with encryption, sealed segment
    by segment, so memory stays bounded and no plaintext touches the disk.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._digest = hashlib.sha256()
        self._size = 0
        self._pending = bytearray()
        self._counter = 0
        self._tmp = store.root / "tmp" / f"{secrets.token_hex(16)}.part"
        self._fh = self._tmp.open("xb")
        self._done = False
        self._aead: AESGCM | None = None
        if store.key is not None:
            self._aead = AESGCM(store.key)
            self._prefix = secrets.token_bytes(_PREFIX_LEN)
            self._fh.write(_MAGIC + self._prefix)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise StoreError("write after commit or abort")
        self._digest.update(data)
        self._size += len(data)
        if self._aead is None:
            self._fh.write(data)
            return
        self._pending += data
        # Keep up to one segment back: only at commit do we know which is last.
        while len(self._pending) > SEGMENT:
            self._seal(bytes(self._pending[:SEGMENT]), last=False)
            del self._pending[:SEGMENT]

    def _seal(self, plain: bytes, *, last: bool) -> None:
        assert self._aead is not None
        nonce = _nonce(self._prefix, self._counter, last)
        self._fh.write(self._aead.encrypt(nonce, plain, _MAGIC + self._prefix))
        self._counter += 1

    def commit(self) -> BlobRef:
        """fsync, rename into place, fsync the directory; then return the ref."""
        store = self._store
        try:
            if self._aead is not None:
                self._seal(bytes(self._pending), last=True)
                self._pending.clear()
            self._fh.flush()
            store.checkpoint("tmp-written")
            os.fsync(self._fh.fileno())
            self._fh.close()
            store.checkpoint("tmp-synced")
            sha256 = self._digest.hexdigest()
            final = store.path(sha256)
            created = _makedirs(final.parent)
            if final.exists():
                self._tmp.unlink()  # the same content is already stored durably
            else:
                os.replace(self._tmp, final)
            store.checkpoint("renamed")
            for directory in [final.parent, *created]:
                fsync_directory(directory)
            store.checkpoint("dir-synced")
        except BaseException:
            self.abort()
            raise
        self._done = True
        return BlobRef(sha256, self._size)

    def abort(self) -> None:
        self._done = True
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def _makedirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its parents; return the parents whose entries changed."""
    changed: list[Path] = []
    for level in (directory.parent, directory):
        if not level.exists():
            with contextlib.suppress(FileExistsError):
                level.mkdir(mode=0o700)
            changed.append(level.parent)
    return changed
