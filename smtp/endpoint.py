"""What the MX and submission policies share: this node's TLS identity and its lookups.

One TLS context per listener (built on first use), certificate checks at the
injected clock's time, and the directory's ``route()`` run off the event loop.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from annuaire import Route, RoutingContext, route
from certs.verify import VerifyResult
from mssante.clock import Clock
from mssante.db import Database
from smtp.limits import SizeCaps
from smtp.peers import TrustStore, client_cert_server_context

__all__ = ["Endpoint"]


@dataclass
class Endpoint:
    cert_file: Path
    key_file: Path
    trust: TrustStore
    routing: RoutingContext
    caps: SizeCaps
    hostname: str
    ciphers: str = ""
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    def server_context(self) -> ssl.SSLContext:
        """Asks for a client certificate; dates and revocation are judged by :meth:`verify`."""
        if self._context is None:
            self._context = client_cert_server_context(
                self.cert_file, self.key_file, self.trust, ciphers=self.ciphers
            )
        return self._context

    async def verify_client(self, cert: x509.Certificate, clock: Clock) -> VerifyResult:
        return await asyncio.to_thread(self.trust.verify, cert, purpose="client", at=clock.now())

    async def route(self, db: Database, address: str) -> Route:
        def lookup() -> Route:
            with db.read() as conn:
                return route(conn, address, self.routing)

        return await asyncio.to_thread(lookup)
