"""/v1/audit: signed checkpoints of the Merkle tree, the public keys that verify them, and
inclusion and consistency proofs (api.md, "Proof for auditors"; docs/audit.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.cursors import NumberCursor, cursor_number
from api.deps import Caller, Department, allowed
from api.errors import ApiProblem, Problem
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.store import checkpoints, merkle
from channel_domain.values import plain_json

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(allowed("auditor"))]
Position = Annotated[int, Query(ge=1, le=2**62, description="The event's position in the log")]
TreeSize = Annotated[int | None, Query(ge=1, le=2**62, description="Leaves of the tree (default: the latest"
                                                                    " checkpoint's)")]
PROOF_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": Problem, "description": "no_checkpoint, or position_not_in_tree"},
    422: {"model": Problem, "description": "tree_size_out_of_range, tree_sizes_out_of_order, or invalid parameters"},
}


class SignedCheckpoint(BaseModel):
    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str
    signature: str
    body: str


class SignedCheckpoints(BaseModel):
    items: list[SignedCheckpoint]
    next_cursor: str | None


class PublicKeyEntry(BaseModel):
    key_id: str
    public_key: str
    pem: str
    created_at: str
    retired_at: str | None
    current: bool


class PublicKeys(BaseModel):
    current_key_id: str | None
    keys: list[PublicKeyEntry]


class Inclusion(BaseModel):
    position: int
    leaf_index: int
    tree_size: int
    event_hash: str
    root_hash: str
    audit_path: list[str]


class Consistency(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


NOT_FOUND = ("no_checkpoint", "position_not_in_tree")


def _no_checkpoint() -> ApiProblem:
    return ApiProblem(404, "no_checkpoint", "no checkpoint has been signed yet")


@router.get("/checkpoints/latest", response_model=SignedCheckpoint,
            responses={**ERRORS, 404: {"model": Problem, "description": "no_checkpoint"}},
            summary="The latest signed checkpoint of the Merkle tree over the log")
def latest_checkpoint(app: Department, _: Caller) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        found = checkpoints.latest(curs)
    if found is None:
        raise _no_checkpoint()
    return found.as_dict()


@router.get("/checkpoints", response_model=SignedCheckpoints, responses=ERRORS,
            summary="Every signed checkpoint, oldest first")
def list_checkpoints(
    app: Department,
    _: Auditor,
    cursor: NumberCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        rows = checkpoints.page(curs, cursor_number(cursor), limit + 1)
    page = rows[:limit]
    return {"items": [row.as_dict() for row in page],
            "next_cursor": str(page[-1].id) if len(rows) > limit else None}


@router.post("/checkpoints", status_code=201, response_model=SignedCheckpoint,
             responses={**ERRORS, 422: {"model": Problem, "description": "Invalid parameters"},
                        409: {"model": Problem, "description": "tree_rewritten: the stored tree does not extend"
                                                               " the checkpoints signed before; nothing signed"},
                        503: {"model": Problem, "description": "signing_key_missing, signing_key_retired"}},
             summary="Sign a checkpoint of the tree as it stands now")
async def make_checkpoint(app: Department, _: Auditor) -> dict[str, Any]:
    try:
        made = await run_in_threadpool(checkpoints.make, app.event_recorder.datastore)
    except checkpoints.KeyRetired as retired:
        raise ApiProblem(503, "signing_key_retired", f"this server cannot sign checkpoints: {retired}") from None
    except checkpoints.KeyMissing as missing:
        raise ApiProblem(503, "signing_key_missing", f"this server cannot sign checkpoints: {missing}") from None
    except checkpoints.TreeRewritten as rewritten:
        raise ApiProblem(409, "tree_rewritten", f"nothing was signed: {rewritten}") from None
    return made.as_dict()


@router.get("/public-key", response_model=PublicKeys,
            summary="The Ed25519 public keys checkpoints are signed with, the current one marked (no token needed)")
def public_key(app: Department) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        keys, current = checkpoints.public_keys(curs)
    return {"current_key_id": current, "keys": [plain_json(key.as_dict(current)) for key in keys]}


@router.get("/proofs/inclusion", response_model=Inclusion, responses=PROOF_ERRORS,
            summary="Proof that the event at a position is in the tree of a size (RFC 9162 2.1.3)")
def inclusion_proof(app: Department, _: Auditor, position: Position, tree_size: TreeSize = None) -> dict[str, Any]:
    # No transaction: two round trips in all (merkle.py says why nothing can change between them).
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        try:
            proof = merkle.prove_inclusion(curs, position, tree_size)
        except merkle.OutOfRange as refused:
            raise ApiProblem(404 if refused.code in NOT_FOUND else 422, refused.code, str(refused)) from None
    return {"position": proof.position, "leaf_index": proof.leaf_index, "tree_size": proof.tree_size,
            "event_hash": proof.event_hash.hex(), "root_hash": proof.root_hash.hex(),
            "audit_path": [step.hex() for step in proof.audit_path]}


@router.get("/proofs/consistency", response_model=Consistency, responses=PROOF_ERRORS,
            summary="Proof that the tree of size `second` extends the tree of size `first` (RFC 9162 2.1.4)")
def consistency_proof(
    app: Department,
    _: Auditor,
    first: Annotated[int, Query(ge=1, le=2**62, description="The older tree's size")],
    second: TreeSize = None,
) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        try:
            proof = merkle.prove_consistency(curs, first, second)
        except merkle.OutOfRange as refused:
            raise ApiProblem(404 if refused.code in NOT_FOUND else 422, refused.code, str(refused)) from None
    return {"first": proof.first, "second": proof.second, "first_root": proof.first_root.hex(),
            "second_root": proof.second_root.hex(), "proof": [step.hex() for step in proof.proof]}
