"""Exceptions raised by the certs package.

One base class lets callers (CLI, config loading) catch every certificate
problem in one place while each module still raises its own precise type.
"""

from __future__ import annotations

__all__ = ["BundleError", "CAError", "CertsError", "ProfileError", "TLSConfigError"]


class CertsError(Exception):
    """Base class for every error raised on purpose by ``certs``."""


class ProfileError(CertsError, ValueError):
    """A certificate request does not fit its profile (missing identifier, bad SAN…)."""


class CAError(CertsError):
    """The CA directory is missing, unreadable, inconsistent, or an operation is refused."""


class BundleError(CertsError):
    """A certificate or CRL file could not be parsed; the message names the file."""


class TLSConfigError(CertsError):
    """An SSL context could not be built; the message names the offending file."""
