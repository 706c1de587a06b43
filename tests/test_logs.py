"""Structured logs: JSON lines or text, identifiers as fields, pseudonyms for correlation."""

import io
import json
import logging

from mssante import logs


def emit(fmt: str) -> str:
    stream = io.StringIO()
    logs.setup(fmt, "info", stream=stream)
    log = logging.getLogger("mssante.test")
    log.debug("hidden")
    log.info("delivered", extra={"fields": {"queue_id": "q42", "msgid": logs.pseudonym("<a@b>")}})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    logging.getLogger().handlers.clear()
    return stream.getvalue()


def test_json_lines_carry_event_level_and_fields():
    lines = emit("json").splitlines()
    first = json.loads(lines[0])
    assert first["event"] == "delivered" and first["level"] == "info"
    assert first["queue_id"] == "q42"
    assert first["msgid"] == logs.pseudonym("<a@b>")
    assert first["ts"].endswith("+00:00")
    failure = json.loads(lines[1])  # the traceback stays inside one JSON line
    assert failure["level"] == "error" and "ValueError: boom" in failure["error"]
    assert len(lines) == 2, "debug is below the configured level"


def test_text_lines_are_readable():
    text = emit("text")
    assert "info    mssante.test: delivered queue_id=q42 msgid=" in text
    assert "hidden" not in text


def test_pseudonym_is_stable_short_and_does_not_reveal_the_value():
    value = "<compte-rendu-martin@chu.mssante.fr>"
    assert logs.pseudonym(value) == logs.pseudonym(value)
    assert len(logs.pseudonym(value)) == 16
    assert "martin" not in logs.pseudonym(value)
    assert logs.pseudonym(value) != logs.pseudonym(value + " ")
