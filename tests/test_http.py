"""The operations HTTP core without sockets, and the metrics text format."""

import pytest

from mssante.http import Request, Response, builtin_routes, parse_request_head, respond
from mssante.metrics import Metrics


def test_get_and_head_are_parsed_with_their_query():
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_request_head(head) == Request("GET", "/healthz")
    head = b"HEAD /metrics?x=1&x=2&q=%C3%A9t%C3%A9+x HTTP/1.0\r\n\r\n"
    assert parse_request_head(head) == Request("HEAD", "/metrics", {"x": "2", "q": "été x"})


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /healthz HTTP/1.1\r\n\r\n", 405),
        (b"GET /healthz\r\n\r\n", 400),
        (b"GET /healthz SMTP/1.0\r\n\r\n", 400),
        (b"\xff\xfe / HTTP/1.1\r\n\r\n", 400),
        (b"\r\n\r\n", 400),
    ],
)
def test_malformed_or_unsupported_requests_are_refused(head, status):
    response = parse_request_head(head)
    assert isinstance(response, Response) and response.status == status


async def test_healthz_follows_readiness_and_unknown_paths_are_404():
    ready = False
    routes = builtin_routes(lambda: ready, Metrics().render)
    assert (await respond(Request("GET", "/healthz"), routes)).status == 503
    ready = True
    assert (await respond(Request("GET", "/healthz"), routes)).status == 200
    assert (await respond(Request("GET", "/etc/passwd"), routes)).status == 404


async def test_a_failing_route_is_a_500_not_a_dropped_connection():
    async def broken(_: dict[str, str]) -> Response:
        raise RuntimeError("bug")

    assert (await respond(Request("GET", "/x"), {"/x": broken})).status == 500


def test_head_response_has_no_body():
    encoded = Response(200, b"ok\n").encode(head_only=True)
    assert encoded.endswith(b"\r\n\r\n") and b"Content-Length: 3" in encoded


def test_metrics_render_in_prometheus_text_format():
    metrics = Metrics()
    connections = metrics.counter("mssante_connections_total", "Connections accepted.")
    connections.inc(listener="http")
    connections.inc(2, listener="http")
    metrics.gauge("mssante_ready", "Ready.").set(1)
    metrics.gauge("odd", "Label escaping.").set(0.5, name='a"b\\c\nd')
    text = metrics.render()
    assert "# TYPE mssante_connections_total counter" in text
    assert 'mssante_connections_total{listener="http"} 3\n' in text
    assert "mssante_ready 1\n" in text
    assert 'odd{name="a\\"b\\\\c\\nd"} 0.5\n' in text
    assert metrics.counter("mssante_connections_total", "again") is connections
