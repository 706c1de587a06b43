"""CDA R2 / IHE XDM and the envoi-en-Y bridge.

Safe reading (``read_xdm``) and building (``build_xdm``) of IHE XDM packages
and the CDA R2 header parser (``parse_cda``), all through one XML parser
without entities, DTDs or network, every problem reported as a
:class:`Finding`; the DMP-like document store (``cda.store``: deposit with
versions, visibility, opposition, timers, audit trail); the bridge that the
queue runner hands the bridge address's mail to (``cda.intake`` checks,
``cda.forward`` writes the forwards, ``cda.bridge`` runs it, ``cda.ack``
acknowledges); the Y-5 timer service (``cda.timers``) and the HTTPS view
(``cda.api``). See docs/dmp.md.
"""

from cda.build import XdmDocument, build_xdm
from cda.codes import Code, Visibility, accepted_ins_oids, parse_visibility
from cda.document import CdaHeader, parse_cda
from cda.findings import Finding, Invalid
from cda.xdm import XdmLimits, XdmPackage, read_xdm

__all__ = [
    "CdaHeader",
    "Code",
    "Finding",
    "Invalid",
    "Visibility",
    "XdmDocument",
    "XdmLimits",
    "XdmPackage",
    "accepted_ins_oids",
    "build_xdm",
    "parse_cda",
    "parse_visibility",
    "read_xdm",
]
