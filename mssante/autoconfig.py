"""Mail client autoconfiguration: Thunderbird's ``config-v1.1.xml``, built from the node's config.

A client asking for it sets up IMAP and submission by itself, implicit TLS
first (RFC 8314) then STARTTLS, never plain text; so users do not type host
names and ports, nor pick an unencrypted setting by mistake. Passwords go in
clear only inside TLS. Thunderbird also sends ``?emailaddress=``: the answer is
the same for every address of the node's domains.
"""

from __future__ import annotations

from lxml import etree  # type: ignore[import-untyped]

from mssante.config import Config, ListenerConfig

__all__ = ["PATHS", "client_config"]

#: Where clients look: on the mail domain, and on the ``autoconfig.`` host of the domain.
PATHS = ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml")


def client_config(config: Config) -> bytes:
    """The XML document (UTF-8) describing the node's enabled IMAP and submission listeners."""
    domain = config.node.domain.encode("idna").decode("ascii").lower()
    root = etree.Element("clientConfig", version="1.1")
    provider = etree.SubElement(root, "emailProvider", id=domain)
    for name in [domain, *sorted(config.local_domains - {domain})]:
        etree.SubElement(provider, "domain").text = name
    etree.SubElement(provider, "displayName").text = config.node.domain
    etree.SubElement(provider, "displayShortName").text = config.node.domain
    listeners = config.listeners
    servers: list[tuple[str, str, ListenerConfig, str]] = [
        ("incomingServer", "imap", listeners.imaps, "SSL"),
        ("incomingServer", "imap", listeners.imap, "STARTTLS"),
        ("outgoingServer", "smtp", listeners.submissions, "SSL"),
        ("outgoingServer", "smtp", listeners.submission, "STARTTLS"),
    ]
    for element, kind, listener, socket_type in servers:
        if not listener.enabled:
            continue
        server = etree.SubElement(provider, element, type=kind)
        etree.SubElement(server, "hostname").text = config.hostname
        etree.SubElement(server, "port").text = str(listener.port)
        etree.SubElement(server, "socketType").text = socket_type
        etree.SubElement(server, "username").text = "%EMAILADDRESS%"
        etree.SubElement(server, "authentication").text = "password-cleartext"
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
