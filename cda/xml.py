"""The one way the bridge parses XML: no entities, no DTD, no network, bounded size.

CDA documents and METADATA.XML come from other systems; an XML parser left
at its defaults resolves external entities (XXE), expands entity bombs
(billion laughs) and fetches DTDs. This parser does none of that, and refuses
a document larger than the caller's cap before parsing it. Level-1 CDA
documents carry a base64 PDF in one text node, so ``huge_tree`` is enabled
only because the size is capped first.
"""

from __future__ import annotations

from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from cda.findings import Finding, Invalid

__all__ = ["DEFAULT_MAX_XML", "parse_xml"]

#: A document above this is refused unparsed (the patient domain's cap is 25 MB).
DEFAULT_MAX_XML = 30 * 1024 * 1024


def _parser() -> Any:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,  # safe: the size is capped before parsing
        remove_blank_text=False,
    )


def parse_xml(data: bytes, *, where: str, max_size: int = DEFAULT_MAX_XML) -> Any:
    """The root element of ``data``; :class:`Invalid` with one finding otherwise.

    A DOCTYPE is refused outright: no CDA or XDS document needs one, and it is
    where entity declarations (XXE, billion laughs) live.
    """
    if len(data) > max_size:
        raise Invalid([Finding(where, f"at most {max_size} bytes", f"{len(data)} bytes")])
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise Invalid([Finding(where, "well-formed XML", _message(exc))]) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise Invalid([Finding(where, "no DOCTYPE (entities and DTDs are refused)", "a DOCTYPE")])
    return root


def _message(exc: Any) -> str:
    return str(getattr(exc, "msg", exc))
