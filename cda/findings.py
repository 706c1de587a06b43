"""What is wrong with a package or a document, said precisely: never a stack trace.

Every check of the bridge reports :class:`Finding` records: where (a path in
the zip, an XPath-like location in the XML), what was expected and what was
found. The acknowledgement to the sender lists them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Finding", "Invalid"]


@dataclass(frozen=True)
class Finding:
    path: str  # "IHE_XDM/SUBSET01/METADATA.XML", "ClinicalDocument/recordTarget/…/id"
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, found {self.found}"


class Invalid(ValueError):
    """Raised with the findings that make a package or document unusable."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("; ".join(str(f) for f in findings))
        self.findings = findings
