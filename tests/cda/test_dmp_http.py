# covers: Y-4, Y-6
"""`GET /dmp/patients/{ins}/documents`: the views over HTTPS, to authenticated callers.

A node's HTTP services run in the test's event loop on 127.0.0.1, with the
certificates `mssante init --demo` issues from our PKI, a real SQLite file
and a fake clock: the views as a patient, a professional who deposited a
masked document and one who did not, and every way in without credentials.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from annuaire import patients
from annuaire.bal import BalSpec, add_bal, bind, set_password
from annuaire.ins import ins_key
from cda import api as cda_api
from cda import store as dmp
from cda.codes import Visibility
from cda.document import parse_cda
from mssante import config as cfg
from mssante import http, sasl
from mssante.app import Runtime, Service, http_services
from mssante.clock import FakeClock
from mssante.listener import TcpListener

from cdagen import DOC_ROOT, INS, INS_BODY, SET_ROOT, make_cda
from nodes import add_config, free_port_offset, mssante, rpps

DOMAIN = "demo.mssante.test"
PATIENT_DOMAIN = "patient.mssante.fr"
PASSWORD = "correct horse battery staple"
AUTHOR = f"dr.auteur@{DOMAIN}"
COLLEAGUE = f"dr.confrere@{DOMAIN}"
PATIENT = f"{INS}@{PATIENT_DOMAIN}"
ISSUER = "https://psc.example.test/auth/realms/esante-wallet"
AUDIENCE = "mssante-dmp-test"
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def other_ins() -> str:
    """A valid INS of someone else (no record, no login)."""
    body = INS_BODY[:-1] + ("1" if INS_BODY[-1] != "1" else "2")
    return body + ins_key(body)


# --------------------------------------------------------------------------- unit


def test_pattern_routes_capture_segments() -> None:
    assert http.match_path("/dmp/patients/{ins}/documents", "/dmp/patients/1%202/documents") == {
        "ins": "1 2"
    }
    for path in ("/dmp/patients//documents", "/dmp/patients/a/b/documents", "/dmp/patients/a"):
        assert http.match_path("/dmp/patients/{ins}/documents", path) is None
    assert http.match_path("/dmp/patients/{ins}/documents", "/dmp/patients/a%2Fb/documents") is None


async def test_respond_passes_captured_segments_over_the_query() -> None:
    async def echo(params: dict[str, str]) -> http.Response:
        return http.json_response(200, params)

    routes = {"/x/{id}": echo, "/x/fixed": echo}
    answer = await http.respond(http.Request("GET", "/x/7", {"id": "0", "q": "1"}), routes)
    assert json.loads(answer.body) == {"id": "7", "q": "1"}
    answer = await http.respond(http.Request("GET", "/x/fixed", {"q": "1"}), routes)
    assert json.loads(answer.body) == {"q": "1"}
    assert (await http.respond(http.Request("GET", "/y/7"), routes)).status == 404


def test_authorization_fields_give_credentials_and_never_show_them() -> None:
    basic = base64.b64encode(f"{AUTHOR}:pa:ss é".encode()).decode()
    creds = http.parse_authorization(f"Basic {basic}")
    assert creds == sasl.PasswordCredentials(AUTHOR, None, "pa:ss é")
    assert "pa:ss" not in repr(creds)
    bearer = http.parse_authorization("bearer abc.DEF-_~+/=")
    assert isinstance(bearer, sasl.BearerCredentials) and bearer.token == "abc.DEF-_~+/="
    for bad in (
        "Basic",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":password").decode(),
        "Basic " + base64.b64encode(b"user:").decode(),
        "Basic " + base64.b64encode(b"us\x00er:pw").decode(),
        "Basic " + base64.b64encode(b"\xff:pw").decode(),
        "Bearer a b",
        "Digest username=x",
    ):
        assert http.parse_authorization(bad) is None, bad
    head = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c2VjcmV0\r\n\r\n"
    request = http.parse_request_head(head)
    assert isinstance(request, http.Request)
    assert request.headers["authorization"] == "Basic c2VjcmV0" and "c2VjcmV0" not in repr(request)
    for bad_head in (
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
    ):
        answer = http.parse_request_head(bad_head)
        assert isinstance(answer, http.Response) and answer.status == 400


# --------------------------------------------------------------------------- node


@dataclass
class DmpNode:
    runtime: Runtime
    clock: FakeClock
    ports: dict[str, int]
    ids: dict[str, int]
    tls: ssl.SSLContext

    def audit_reads(self) -> list[tuple[str, str, int]]:
        with self.runtime.db.read() as conn:
            entries = [e for e in dmp.audit_trail(conn, INS) if e.action == "dmp.read"]
        return [(e.actor, str(e.details["view"]), int(e.details["count"])) for e in entries]


def deposit(runtime: Runtime, clock: FakeClock, name: str, flags: frozenset[Visibility]) -> int:
    data = make_cda(doc_id=(DOC_ROOT, name), set_id=(SET_ROOT, name), title=f"Document {name}")
    with runtime.db.transaction() as conn:
        result = dmp.deposit(
            conn,
            runtime.store,
            parse_cda(data, test_mode=True),
            data,
            visibility=flags,
            author=AUTHOR,
            now=clock.now(),
            test_mode=True,
        )
    assert result.kind == "deposited" and result.document_id is not None
    return result.document_id


def make_node(
    tmp_path: Path, extra: str = "[dmp]\nhttp_views = true\n"
) -> tuple[Runtime, FakeClock]:
    data = tmp_path / "node"
    made = mssante(
        "init", "--demo", "--data-dir", str(data), "--port-offset", str(free_port_offset())
    )
    assert made.returncode == 0, made.stderr
    add_config(data / cfg.CONFIG_NAME, extra)
    clock = FakeClock()
    return Runtime.open(cfg.load(data), clock), clock


async def start(runtime: Runtime) -> tuple[list[Service], dict[str, int]]:
    services = http_services(runtime)
    for service in services:
        await service.start()
    return services, {s.name: s.bound_port for s in services if isinstance(s, TcpListener)}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[DmpNode]:
    jwks = tmp_path / "jwks.json"
    key = RSAAlgorithm.to_jwk(SIGNER.public_key(), as_dict=True)
    jwks.write_text(json.dumps({"keys": [{**key, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    runtime, clock = make_node(
        tmp_path,
        "[dmp]\nhttp_views = true\n"
        f'[smtp]\noauth_issuer = "{ISSUER}"\noauth_audience = "{AUDIENCE}"\n'
        f'oauth_jwks_file = "{jwks}"\n',
    )
    now = clock.now()
    with runtime.db.transaction() as conn:
        for n, address in enumerate((AUTHOR, COLLEAGUE), start=1):
            add_bal(
                conn, BalSpec(address, "PER", person_id_type="RPPS", person_id=rpps(n)), now=now
            )
            set_password(conn, address, PASSWORD, now=now)
        bind(conn, COLLEAGUE, "oauth", f"{ISSUER} f:confrere", now=now)
        patients.upsert_patient(conn, INS, now=now, status="open")
        patients.set_password(conn, INS, PASSWORD, now=now)
    ids = {
        "plain": deposit(runtime, clock, "plain", frozenset()),
        "invisible": deposit(
            runtime, clock, "invisible", frozenset({Visibility.INVISIBLE_PATIENT})
        ),
        "masked": deposit(runtime, clock, "masked", frozenset({Visibility.MASQUE_PS})),
    }
    services, ports = await start(runtime)
    tls = ssl.create_default_context(cafile=str(runtime.config.path(runtime.config.tls.ca_file)))
    tls.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    try:
        yield DmpNode(runtime, clock, ports, ids, tls)
    finally:
        await asyncio.gather(*(s.stop(2) for s in services))
        runtime.db.dispose()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: Any


async def exchange(
    port: int, request: bytes, tls: ssl.SSLContext | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        writer.write(request)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = [(n.lower(), v.strip()) for n, _, v in (f.partition(":") for f in fields)]
    return int(status_line.split()[1]), headers, body


def basic(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def get(
    node: DmpNode, ins: str = INS, authorization: str | None = None, **params: str
) -> Answer:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    lines = [f"GET /dmp/patients/{ins}/documents{query} HTTP/1.1", "Host: localhost"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    status, headers, body = await exchange(node.ports["https"], request, node.tls)
    return Answer(status, headers, json.loads(body) if body else None)


def shown(answer: Answer) -> set[int]:
    assert answer.status == 200, answer
    return {d["id"] for d in answer.body["documents"]}


# covers: Y-4
async def test_a_patient_reads_their_own_record_without_invisible_documents(
    node: DmpNode,
) -> None:
    answer = await get(node, authorization=basic(PATIENT))
    assert answer.body["view"] == "patient"
    assert shown(answer) == {node.ids["plain"], node.ids["masked"]}
    first = answer.body["documents"][0]
    assert first == {
        "id": node.ids["plain"],
        "unique_id": f"{DOC_ROOT}^plain",
        "set_id": f"{SET_ROOT}^plain",
        "version": 1,
        "status": "current",
        "type_code": "11490-0",
        "type_system": "2.16.840.1.113883.6.1",
        "title": "Document plain",
        "deposited_at": node.clock.now().isoformat(),
        "flags": [],
    }
    # The login's case does not matter; asking for the patient view changes nothing.
    assert shown(await get(node, authorization=basic(PATIENT.upper()), view="patient")) == {
        node.ids["plain"],
        node.ids["masked"],
    }


# covers: Y-4
async def test_a_patient_cannot_read_another_record_nor_widen_the_view(node: DmpNode) -> None:
    for ins in (other_ins(), INS):
        params = {"view": "professional"} if ins == INS else {}
        answer = await get(node, ins, authorization=basic(PATIENT), **params)
        assert answer.status == 403, answer
        assert "documents" not in answer.body
    # Another INS is refused the same way whether or not it has a record.
    assert (await get(node, other_ins(), authorization=basic(PATIENT))).body == {
        "error": "a patient reads their own record only"
    }


# covers: Y-4
async def test_a_masked_document_shows_only_to_the_professional_who_deposited_it(
    node: DmpNode,
) -> None:
    everything = set(node.ids.values())
    answer = await get(node, authorization=basic(AUTHOR))
    assert answer.body["view"] == "professional" and shown(answer) == everything
    colleague = await get(node, authorization=basic(COLLEAGUE))
    assert shown(colleague) == {node.ids["plain"], node.ids["invisible"]}
    # The query cannot borrow another identity or the patient's view.
    for params in ({"reader": AUTHOR}, {"view": "patient"}):
        refused = await get(node, authorization=basic(COLLEAGUE), **params)
        assert refused.status == 403, refused
    assert shown(await get(node, authorization=basic(COLLEAGUE), reader=COLLEAGUE.upper())) == {
        node.ids["plain"],
        node.ids["invisible"],
    }
    # A professional with a record-less INS sees an empty list, as with no documents.
    assert shown(await get(node, other_ins(), authorization=basic(AUTHOR))) == set()
    for bad in ("123", INS[:-2] + "00"):
        answer = await get(node, bad, authorization=basic(AUTHOR))
        assert answer.status == 400 and answer.body["error"].startswith("invalid INS")


# covers: Y-4
async def test_a_bearer_token_opens_the_mailbox_it_is_bound_to(node: DmpNode) -> None:
    now = int(node.clock.now().timestamp())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "f:confrere", "iat": now, "exp": now + 300}
    good = jwt.encode(claims, SIGNER, algorithm="RS256", headers={"kid": "k1"})
    answer = await get(node, authorization=f"Bearer {good}")
    assert shown(answer) == {node.ids["plain"], node.ids["invisible"]}
    unbound = jwt.encode(
        {**claims, "sub": "f:nobody"}, SIGNER, algorithm="RS256", headers={"kid": "k1"}
    )
    assert (await get(node, authorization=f"Bearer {unbound}")).status == 401


# covers: Y-4
async def test_no_or_wrong_credentials_get_a_401_that_reveals_nothing(node: DmpNode) -> None:
    missing = await get(node)
    assert missing.status == 401 and missing.body == {"error": "authentication required"}
    challenges = [v for n, v in missing.headers if n == "www-authenticate"]
    assert challenges == [
        'Basic realm="mssante-dmp", charset="UTF-8"',
        'Bearer realm="mssante-dmp"',
    ]
    for authorization in ("Basic !!!", "Negotiate abc"):
        assert (await get(node, authorization=authorization)) == missing
    # A wrong password: the same 401 for an existing record and for any INS.
    wrong = await get(node, authorization=basic(AUTHOR, "not the password"))
    assert wrong == missing
    # Unknown paths answer 401 too: nothing is served before authentication.
    status, _, _ = await exchange(
        node.ports["https"], b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", node.tls
    )
    assert status == 401
    # The failure counts in the node's one throttle (the one IMAP and submission use).
    assert node.runtime.authenticator is not None
    verdict = node.runtime.authenticator.throttle.check(AUTHOR, "127.0.0.1")
    assert verdict.allowed and verdict.delay_seconds > 0
    assert node.audit_reads() == []


# covers: Y-6
async def test_every_read_is_audited_by_the_authenticated_identity(node: DmpNode) -> None:
    await get(node, authorization=basic(PATIENT))
    node.clock.advance(timedelta(minutes=1))
    await get(node, authorization=basic(AUTHOR))
    await get(node, authorization=basic(COLLEAGUE))
    await get(node, other_ins(), authorization=basic(PATIENT))  # refused: no read
    assert node.audit_reads() == [
        (cda_api.PATIENT_ACTOR, "patient", 2),
        (AUTHOR, "professional", 3),
        (COLLEAGUE, "professional", 2),
    ]
    with node.runtime.db.read() as conn:
        actors = {e.actor for e in dmp.audit_trail(conn, INS)}
    assert not any(INS in actor for actor in actors)  # the INS never goes in the log


# covers: Y-4
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_plain_http_never_reaches_the_view(node: DmpNode) -> None:
    request = (
        f"GET /dmp/patients/{INS}/documents HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {basic(PATIENT)}\r\n\r\n"
    ).encode()
    # The plain listener has no such route, credentials or not.
    status, _, _ = await exchange(node.ports["http"], request)
    assert status == 404
    # Plain text to the HTTPS port gets no HTTP answer.
    try:
        status_line = (await exchange(node.ports["https"], request))[0]
    except (ValueError, IndexError, ConnectionError):
        status_line = None
    assert status_line is None
    # Nor does TLS below 1.2.
    old = ssl.create_default_context(
        cafile=str(node.runtime.config.path(node.runtime.config.tls.ca_file))
    )
    old.check_hostname = False
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await exchange(node.ports["https"], request, old)
    assert node.audit_reads() == []


async def test_without_http_views_no_listener_serves_a_record(tmp_path: Path) -> None:
    runtime, _ = make_node(tmp_path, "")
    assert not runtime.config.dmp.http_views
    services, ports = await start(runtime)
    try:
        assert set(ports) == {"http"}
        request = f"GET /dmp/patients/{INS}/documents HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        assert (await exchange(ports["http"], request))[0] == 404
    finally:
        await asyncio.gather(*(s.stop(2) for s in services))
        runtime.db.dispose()
