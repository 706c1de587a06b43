"""Read a whitelist source: a local file, or an https URL checked against our anchors.

The national list is served over HTTPS with an IGC-Santé chain, which public
trust stores do not contain: the download is verified against the configured
anchors only, with the host name checked, and bounded in size and time.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from certs import client_context

MAX_BYTES = 64 * 1024 * 1024
TIMEOUT = 60.0


class FetchError(Exception):
    pass


def read_source(source: str, *, anchors_file: Path, max_bytes: int = MAX_BYTES) -> bytes:
    if source.startswith("http://"):
        raise FetchError("refusing plain http: the whitelist is fetched over https only")
    if not source.startswith("https://"):
        try:
            with open(source, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise FetchError(f"cannot read {source}: {exc.strerror}") from None
    else:
        context = client_context(anchors_file=anchors_file)
        # Only https reaches here (checked above), so no file: or custom scheme is opened.
        request = urllib.request.Request(source, headers={"User-Agent": "mssante-operator"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:  # noqa: S310
                data = response.read(max_bytes + 1)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"cannot download {source}: {reason}") from None
    if len(data) > max_bytes:
        raise FetchError(f"{source} is larger than {max_bytes} bytes")
    return data
