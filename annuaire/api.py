"""HTTP routes of the directory: ``GET /annuaire/search``.

Parameters: ``q`` (name, identifier or address), ``profession`` (code or
label prefix), ``city`` (name or postal-code prefix), ``type`` (PER, ORG,
APP, CAB), ``limit`` (1–100, default 20), ``offset``. The answer is JSON:
``{"results": [...], "has_more": bool, "limit": n, "offset": n}``. Mailboxes on
the liste rouge are never in the directory, so never in an answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from annuaire import directory
from mssante.db import Database
from mssante.http import Response, Route, json_response

_TYPES = {"PER", "ORG", "APP", "CAB"}


def search_route(db: Database) -> Route:
    async def search(params: dict[str, str]) -> Response:
        try:
            limit = int(params.get("limit", "20"))
            offset = int(params.get("offset", "0"))
        except ValueError:
            return json_response(400, {"error": "limit and offset must be integers"})
        if not 1 <= limit <= directory.MAX_LIMIT or not 0 <= offset <= 10_000:
            return json_response(
                400, {"error": f"limit must be 1..{directory.MAX_LIMIT}, offset 0..10000"}
            )
        bal_type = params.get("type", "").upper() or None
        if bal_type is not None and bal_type not in _TYPES:
            return json_response(400, {"error": "type must be PER, ORG, APP or CAB"})
        if not any(params.get(k) for k in ("q", "profession", "city", "type")):
            return json_response(400, {"error": "give q, profession, city or type"})

        def run() -> directory.SearchResult:
            with db.read() as conn:
                return directory.search(
                    conn,
                    params.get("q", ""),
                    profession=params.get("profession"),
                    city=params.get("city"),
                    bal_type=bal_type,
                    limit=limit,
                    offset=offset,
                )

        result = await asyncio.to_thread(run)
        return json_response(
            200,
            {
                "results": [asdict(hit) for hit in result.hits],
                "has_more": result.has_more,
                "limit": limit,
                "offset": offset,
            },
        )

    return search
