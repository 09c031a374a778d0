"""Common steps over HTTP, with the roles api.md gives each."""

from __future__ import annotations

from tests.api.conftest import Api

HR = ("hr-1", ("hr",))
SPECIALIST = ("spec-1", ("channel_specialist",))
MANAGER = ("mgr-1", ("channel_manager",))
MANAGER_2 = ("mgr-2", ("channel_manager",))
FINANCE = ("fin-1", ("finance",))
FINANCE_2 = ("fin-2", ("finance",))
GM = ("gm-1", ("general_manager",))
ERP = ("erp", ("integration",))
REPORTING = ("bi", ("reporting",))
AUDITOR = ("auditor-1", ("auditor",))
CONTENTS = {
    "goals": "grow", "products": ["router"], "price_policy": "list less 8 %", "obligations": "monthly report",
    "support": "training", "confidentiality": "two years",
}


def post(api: Api, path: str, body=None, who=MANAGER, expect: int | None = 200, **headers):
    response = api.post(path, body, actor=who[0], roles=who[1], **headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


ARCHIVE_REQUIRED_KINDS = ("enterprise_agent", "sales_agent", "consignee", "distributor")


def file_archive(api: Api, partner_id: str) -> None:
    """The documents a partner that sells or holds stock needs on file before approval."""
    for kind, reference in (("business_licence", "91330100MA2B3C4D5E"), ("legal_representative_id", "330102198001011234")):
        post(api, f"/v1/partners/{partner_id}/documents", {"kind": kind, "reference": reference}, SPECIALIST)


def approved_partner(api: Api, kind: str = "sales_agent", **fields) -> str:
    created = post(api, "/v1/partners", {"kind": kind, "name": f"{kind} Co.", **fields}, SPECIALIST, 201).json()
    if kind in ARCHIVE_REQUIRED_KINDS:
        file_archive(api, created["id"])
    post(api, f"/v1/partners/{created['id']}/review", {"decision": "approve"}, MANAGER)
    return created["id"]


def signed_contract(api: Api, partner_id: str, starts_on="2026-01-01", ends_on="2026-12-31", **fields) -> str:
    body = {"partner_id": partner_id, "starts_on": starts_on, "ends_on": ends_on,
            "commission": {"type": "flat", "rate": "0.03"}, **CONTENTS, **fields}
    contract = post(api, "/v1/contracts", body, MANAGER, 201).json()["id"]
    post(api, f"/v1/contracts/{contract}/submit", None, MANAGER)
    post(api, f"/v1/contracts/{contract}/approve", None, GM)
    post(api, f"/v1/contracts/{contract}/sign", {"signed_on": starts_on}, MANAGER)
    return contract


def amend(api: Api, contract: str, body: dict, approver=GM) -> dict:
    """Requests an amendment, previews it and approves the preview; returns the approved state."""
    amendment = post(api, f"/v1/contracts/{contract}/amendments", body, MANAGER).json()["amendment_id"]
    preview = api.get(f"/v1/contracts/{contract}/amendments/{amendment}/preview", actor=approver[0],
                      roles=approver[1]).json()
    return post(api, f"/v1/contracts/{contract}/amendments/{amendment}/approve",
                {"preview_digest": preview["digest"]}, approver).json()


def renew(api: Api, contract: str, ends_on: str, approver=GM, expect: int | None = 200):
    """Requests a renewal and has it approved; returns the approval's response."""
    renewal = post(api, f"/v1/contracts/{contract}/renew", {"ends_on": ends_on}, MANAGER).json()["renewal_id"]
    return post(api, f"/v1/contracts/{contract}/renewals/{renewal}/approve", None, approver, expect)


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert {"type", "title", "status", "detail"} <= set(body)
    return body
