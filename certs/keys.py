"""Private key generation and (de)serialisation.

EC P-256 is the default: fast to generate (tests make many keys) and
accepted by every TLS stack MSSanté operators run. RSA stays available
because IGC-Santé itself still issues RSA certificates.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import ProfileError

__all__ = [
    "KEY_TYPES",
    "KeyType",
    "PrivateKey",
    "generate_private_key",
    "load_private_key_pem",
    "private_key_pem",
]

KeyType: TypeAlias = Literal["ec-p256", "rsa-2048", "rsa-3072"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_private_key(key_type: KeyType = "ec-p256") -> PrivateKey:
    """Generate a fresh key of the given type."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ProfileError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: this is a demo/test CA, protected by file mode 0600."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> PrivateKey:
    """Load an unencrypted PEM key; only EC and RSA keys can sign our certificates."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported key algorithm {type(key).__name__}; expected EC or RSA")
    return key
