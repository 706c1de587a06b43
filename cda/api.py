"""HTTP views of the embedded DMP (Y-4, Y-6): a patient's documents as a viewer sees them.

Served only with ``dmp.http_views = true``: the views have no authentication
yet, so they are for a loopback listener (demos, tests), never a public one.
"""

from __future__ import annotations

import asyncio

from annuaire import validate_ins
from cda import store as dmp
from mssante import http
from mssante.clock import Clock
from mssante.db import Database

__all__ = ["DOCUMENTS_PATH", "documents_route"]

DOCUMENTS_PATH = "/dmp/patients/{ins}/documents"
_VIEWS = ("professional", "patient")


def documents_route(db: Database, clock: Clock) -> http.Route:
    """``GET /dmp/patients/{ins}/documents?view=professional|patient[&reader=ADDRESS]``.

    The patient's current documents as ``view`` sees them (Y-4): the patient
    view leaves out documents still invisible to the patient, the professional
    view leaves out masked ones unless ``reader`` is their author. JSON
    ``{"view": ..., "documents": [{id, unique_id, set_id, version, status,
    type_code, type_system, title, deposited_at, flags}]}``; 400 with
    ``{"error": ...}`` for an invalid INS or view. Every call is audited in the
    patient's trail as ``dmp.read`` (Y-6), by ``reader`` or ``http:anonymous``.

    NO AUTHENTICATION YET: anyone who reaches the listener reads any record,
    and ``reader`` is a claim, not an identity. Hence off by default
    (``dmp.http_views``), and for a loopback listener only.
    """

    async def list_documents(params: dict[str, str]) -> http.Response:
        try:
            ins = validate_ins(params.get("ins", ""))
        except ValueError as exc:
            return http.json_response(400, {"error": f"invalid INS: {exc}"})
        view = params.get("view", "")
        if view not in _VIEWS:
            return http.json_response(400, {"error": "view must be professional or patient"})
        reader = params.get("reader", "").strip()[:320] or None

        def run() -> list[dmp.DocumentRecord]:
            with db.transaction() as conn:
                return dmp.documents(
                    conn,
                    ins,
                    view="patient" if view == "patient" else "professional",
                    reader=reader or "http:anonymous",
                    now=clock.now(),
                )

        records = await asyncio.to_thread(run)
        return http.json_response(
            200,
            {
                "view": view,
                "documents": [
                    {
                        "id": r.id,
                        "unique_id": r.unique_id,
                        "set_id": r.set_id,
                        "version": r.version,
                        "status": r.status,
                        "type_code": r.type_code,
                        "type_system": r.type_system,
                        "title": r.title,
                        "deposited_at": r.deposited_at.isoformat(),
                        "flags": sorted(v.value for v in r.visibility),
                    }
                    for r in records
                ],
            },
        )

    return list_documents
