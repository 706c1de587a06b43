"""CDA R2 / IHE XDM and the envoi-en-Y bridge.

Built so far: safe reading (``read_xdm``) and building (``build_xdm``) of IHE
XDM packages, the CDA R2 header parser (``parse_cda``), all through one XML
parser without entities, DTDs or network, every problem reported as a
:class:`Finding`; and the DMP-like document store (``cda.store``: deposit with
versions, visibility, opposition, timers, audit trail). Coming with the rest
of the Y bridge issue: the bridge that deposits documents and fans them out by
MSSanté, its acknowledgements, the CLI and HTTP views.
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
