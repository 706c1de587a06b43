"""HTTP views of the embedded DMP (Y-4, Y-6): a patient's documents as their caller sees them.

Served with ``dmp.http_views = true`` on the HTTPS listener only, to an
authenticated caller (:func:`mssante.http.make_authenticated_handler`): the
identity decides the view, never the query. A patient login
(``<INS>@<patient domain>``) reads its own record in the patient view; any
other mailbox reads the professional view as itself, so a masked document
shows only to the mailbox that deposited it.
"""

from __future__ import annotations

import asyncio

from annuaire import InsError, address_key, parse_patient_address, validate_ins
from cda import store as dmp
from mssante import http
from mssante.clock import Clock
from mssante.db import Database

__all__ = ["DOCUMENTS_PATH", "PATIENT_ACTOR", "documents_route"]

DOCUMENTS_PATH = "/dmp/patients/{ins}/documents"
#: How the audit trail names the patient reading their own record: the entry's
#: target is already their INS pseudonym, and the INS never goes in the log.
PATIENT_ACTOR = "patient"


def _forbidden(reason: str) -> http.Response:
    return http.json_response(403, {"error": reason})


def documents_route(db: Database, clock: Clock, *, patient_domain: str) -> http.AuthenticatedRoute:
    """``GET /dmp/patients/{ins}/documents[?view=professional|patient]``, for ``identity``.

    ``identity`` is the address key the caller's credentials opened. A patient
    login gets the patient view of its own record only (documents still
    invisible to the patient left out; 403 for any other INS, whether it
    exists or not). Any other mailbox gets the professional view as itself
    (masked documents left out unless it deposited them). ``view`` and
    ``reader``, kept for compatibility, may only repeat what the identity
    gives (403 otherwise). JSON ``{"view": ..., "documents": [{id, unique_id,
    set_id, version, status, type_code, type_system, title, deposited_at,
    flags}]}``; 400 with ``{"error": ...}`` for an invalid INS. Every read is
    audited in the patient's trail as ``dmp.read`` (Y-6), by the mailbox or
    by :data:`PATIENT_ACTOR`.
    """

    async def list_documents(identity: str, params: dict[str, str]) -> http.Response:
        try:
            own_ins = parse_patient_address(identity, patient_domain)
        except InsError:
            return _forbidden("this login has no DMP view")
        view: dmp.View = "patient" if own_ins is not None else "professional"
        try:
            ins = validate_ins(params.get("ins", ""))
        except ValueError as exc:
            return http.json_response(400, {"error": f"invalid INS: {exc}"})
        if params.get("view", view) != view:
            return _forbidden(f"this login reads the {view} view only")
        reader = params.get("reader")
        if reader is not None and not _same_mailbox(reader, identity):
            return _forbidden("reader must be the authenticated mailbox")
        if own_ins is not None and own_ins != ins:
            return _forbidden("a patient reads their own record only")
        actor = PATIENT_ACTOR if own_ins is not None else identity

        def run() -> list[dmp.DocumentRecord]:
            with db.transaction() as conn:
                return dmp.documents(conn, ins, view=view, reader=actor, now=clock.now())

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


def _same_mailbox(address: str, identity: str) -> bool:
    try:
        return address_key(address.strip()) == identity
    except ValueError:
        return False
