# covers: TS-3
"""`mssante transport …`, `mssante queue …` refusals and `mssante dkim …` on a demo node."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtp.transport import TransportError, parse_target

from nodes import free_port_offset, mssante


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "node"
    result = mssante(
        "init", "--demo", "--data-dir", str(data), "--port-offset", str(free_port_offset())
    )
    assert result.returncode == 0, result.stderr
    return data


def run(node: Path, *args: str) -> tuple[int, str, str]:
    result = mssante(*args, "--data-dir", str(node))
    return result.returncode, result.stdout, result.stderr


def test_transport_map_round_trip(node: Path) -> None:
    assert run(node, "transport", "set", "Hopital.Example.FR", "10.0.0.5:2525")[0] == 0
    assert run(node, "transport", "set", "v6.example.fr", "[2001:db8::1]:25")[0] == 0
    code, out, _ = run(node, "transport", "list")
    assert "hopital.example.fr\t10.0.0.5:2525" in out
    assert "v6.example.fr\t[2001:db8::1]:25" in out
    assert run(node, "transport", "remove", "hopital.example.fr")[0] == 0
    code, _, err = run(node, "transport", "remove", "hopital.example.fr")
    assert code == 2 and "no transport map entry" in err
    assert "transport.set" in run(node, "audit", "list")[1]


@pytest.mark.parametrize(
    "target", ["host:0", "host:99999", "host:x", "[::1", "[::1]x", ":25", "a b:25"]
)
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(TransportError):
        parse_target(target)


def test_bad_transport_is_one_line_exit_2(node: Path) -> None:
    code, _, err = run(node, "transport", "set", "example.fr", "host:99999")
    assert code == 2 and err.count("\n") == 1 and "port" in err


def test_queue_commands_on_an_empty_queue(node: Path) -> None:
    code, out, _ = run(node, "queue", "list")
    assert code == 0 and "-- 0 message(s), 0 recipient(s)" in out
    code, _, err = run(node, "queue", "show", "NOPE")
    assert code == 2 and "no queued message NOPE" in err
    code, _, err = run(node, "queue", "retry")
    assert code == 2 and "--all" in err
    assert run(node, "queue", "retry", "--all")[1].startswith("0 recipient(s)")


def test_demo_node_has_a_dkim_key_and_its_record(node: Path) -> None:
    code, out, _ = run(node, "dkim", "record")
    assert code == 0
    assert out.startswith('mss1._domainkey.demo.mssante.test. IN TXT "v=DKIM1; k=rsa; p=')
    assert (node / "keys" / "dkim.key").stat().st_mode & 0o777 == 0o600
    code, _, err = run(node, "dkim", "generate")
    assert code == 2 and "already exists" in err
