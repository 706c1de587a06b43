"""Message size caps per recipient domain (LIM-1): one place for the MX and submission.

The node-wide cap is what SIZE advertises; some domains get a smaller one
(the patient domain is always capped at 25 MB by default). A declared SIZE is
checked at RCPT, the real size at the end of DATA, except for the patient
domain on the node that serves it: there a message over the cap that did
not declare its size is accepted and answered by the MSS-C automatic return
*taille maximale dépassée* (MSSC-RET-1 c), which the queue sends instead of
delivering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from annuaire import AddressError, normalise_domain, split_address
from mssante.config import Config
from smtp.protocol import MailFrom, RcptTo, Reply

__all__ = ["SizeCaps"]


@dataclass(frozen=True)
class SizeCaps:
    default: int
    per_domain: Mapping[str, int] = field(default_factory=dict)
    #: Domains whose cap the MSS-C rules enforce after acceptance (the patient domain).
    returned: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Config) -> SizeCaps:
        caps: dict[str, int] = {}
        for item in config.smtp.domain_size_caps:
            domain, _, size = item.partition("=")
            caps[normalise_domain(domain)] = int(size)
        patient = normalise_domain(config.node.patient_domain)
        caps[patient] = min(
            caps.get(patient, config.smtp.patient_max_message_size),
            config.smtp.patient_max_message_size,
        )
        # Only the patient domain's operator sends the MSS-C returns; elsewhere the cap
        # is enforced at DATA like any other.
        returned = frozenset({patient}) if config.node.serves_patient_domain else frozenset()
        return cls(config.smtp.max_message_size, caps, returned)

    def for_address(self, address: str) -> tuple[str, int]:
        try:
            _, domain = split_address(address)
        except AddressError:
            return "", self.default
        domain = normalise_domain(domain)
        return domain, min(self.default, self.per_domain.get(domain, self.default))

    def refuse_declared(self, address: str, mail: MailFrom | None) -> Reply | None:
        """At RCPT: a declared SIZE over this recipient's domain cap."""
        if mail is None or mail.size is None:
            return None
        domain, cap = self.for_address(address)
        if mail.size > cap:
            return _too_big(domain, cap)
        return None

    def refuse_actual(self, recipients: Sequence[RcptTo], size: int) -> Reply | None:
        """At the end of DATA: the real size against every recipient's cap."""
        for rcpt in recipients:
            domain, cap = self.for_address(rcpt.address)
            if size > cap and domain not in self.returned:
                return _too_big(domain, cap)
        return None


def _too_big(domain: str, cap: int) -> Reply:
    return Reply(
        552,
        "5.3.4",
        f"Message too big for {domain}: the limit there is {cap} bytes ({cap // (1024 * 1024)} MB)",
    )
