"""The on-disk layout of a CA directory.

Other code (server config, CLI) locates ``root.pem`` or ``crl.pem`` through
this class instead of hard-coding names, and never needs the CA keys for it.

::

    DIR/root.pem            root certificate (what peers and clients trust)
    DIR/root.key            root key, PKCS#8 PEM, mode 0600
    DIR/intermediate.pem    issuing CA certificate
    DIR/intermediate.key    issuing CA key, PKCS#8 PEM, mode 0600
    DIR/issued/<SERIAL>.pem every issued leaf, named by upper-case hex serial
    DIR/revoked.json        {"<SERIAL>": {"revoked_at", "reason", "crl"}}
    DIR/crl.pem             CRL of the intermediate (leaf revocations)
    DIR/root-crl.pem        CRL of the root (empty unless the intermediate is revoked)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CALayout", "serial_hex"]


def serial_hex(serial: int) -> str:
    """Upper-case, even-length hex as printed by ``openssl x509 -serial``."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


@dataclass(frozen=True)
class CALayout:
    """Paths inside one CA directory."""

    directory: Path

    @classmethod
    def at(cls, directory: str | os.PathLike[str]) -> CALayout:
        return cls(Path(directory))

    @property
    def root_cert(self) -> Path:
        return self.directory / "root.pem"

    @property
    def root_key(self) -> Path:
        return self.directory / "root.key"

    @property
    def intermediate_cert(self) -> Path:
        return self.directory / "intermediate.pem"

    @property
    def intermediate_key(self) -> Path:
        return self.directory / "intermediate.key"

    @property
    def issued_dir(self) -> Path:
        return self.directory / "issued"

    @property
    def revoked(self) -> Path:
        return self.directory / "revoked.json"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def root_crl(self) -> Path:
        return self.directory / "root-crl.pem"

    def issued_cert(self, serial: int) -> Path:
        return self.issued_dir / f"{serial_hex(serial)}.pem"
