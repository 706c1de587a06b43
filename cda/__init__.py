"""CDA R2 / IHE XDM and the envoi-en-Y bridge.

Built so far: safe reading (``read_xdm``) and building (``build_xdm``) of IHE
XDM packages, and the CDA R2 header parser (``parse_cda``), all through one
XML parser without entities, DTDs or network, every problem reported as a
:class:`Finding`. Coming with the rest of the Y bridge issue: the DMP-like
document store with versions and visibility, and the bridge that deposits
documents and fans them out by MSSanté.
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
