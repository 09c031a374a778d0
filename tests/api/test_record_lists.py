"""GET /v1/partners, /v1/contracts, /v1/employees, /v1/targets: lists of records as they stand,
from the record_lists read model, over HTTP with hand-made records.

Each test knows which records it made and what it did to each, so the expected lists below are
written out by hand, never read back from the service."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import ROLES
from channel_domain.store.rebuilding import Rebuilder
from projections.records import RecordLists
from tests.api.conftest import Api
from tests.api.flows import (
    AUDITOR,
    ERP,
    GM,
    HR,
    MANAGER,
    REPORTING,
    SPECIALIST,
    amend,
    approved_partner,
    post,
    problem,
    renew,
    signed_contract,
)

HR_READER = ("hr-2", ("hr",))


def listed(api: Api, noun: str, who=REPORTING, **params) -> dict:
    response = api.get(f"/v1/{noun}", actor=who[0], roles=who[1], **params)
    assert response.status_code == 200, response.text
    assert int(response.headers["x-projection-position"]) >= 0
    return response.json()


def ids(api: Api, noun: str, who=REPORTING, **params) -> list[str]:
    page = listed(api, noun, who, **params)
    assert page["next_cursor"] is None  # each of these lists fits one page
    return [item["id"] for item in page["items"]]


def everything(api: Api, noun: str, limit: int, who=REPORTING, **params) -> list[dict]:
    """Every item of a list, page by page."""
    items, cursor = [], None
    while True:
        page = listed(api, noun, who, limit=limit, **({"cursor": cursor} if cursor else {}), **params)
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def assert_as_the_records_say(api: Api, noun: str, items: list[dict], who=REPORTING) -> None:
    """Every field a list item shares with GET /v1/{noun}/{id} has the record's value, version included."""
    for item in items:
        record = api.get(f"/v1/{noun}/{item['id']}", actor=who[0], roles=who[1]).json()
        shared = (item.keys() & record.keys())
        assert {"id", "version", "status"} <= shared
        assert {k: item[k] for k in shared} == {k: record[k] for k in shared}, item["id"]


def hire(api: Api, name: str, role: str = "sales_rep", **fields) -> str:
    body = {"name": name, "role": role, "hired_on": "2026-01-05", "contract_months": 0, **fields}
    return post(api, "/v1/employees", body, HR, 201).json()["id"]


# --- partners ----------------------------------------------------------------------------


def test_partners_are_listed_as_they_stand_and_filtered(api):
    recruiter = hire(api, "Li Na", login="li.na")
    agent = approved_partner(api, "enterprise_agent", region="Zhejiang", recruited_by=recruiter)
    second = approved_partner(api, "retailer", region="Zhejiang", parent_partner_id=agent)
    store_a = approved_partner(api, "direct_store", grade="A", region="Jiangsu")
    store_c = post(api, "/v1/partners", {"kind": "direct_store", "name": "Store C", "grade": "C"}, SPECIALIST,
                   201).json()["id"]  # applied, never reviewed
    broker = approved_partner(api, "broker", commission_rate="0.01")  # a broker is active on approval
    rejected = post(api, "/v1/partners", {"kind": "retailer", "name": "No Thanks"}, SPECIALIST, 201).json()["id"]
    post(api, f"/v1/partners/{rejected}/review", {"decision": "reject"}, MANAGER)
    signed_contract(api, agent, territory="Zhejiang")  # activates the agent
    post(api, f"/v1/partners/{broker}/suspend", {"reason": "late reports"}, MANAGER)
    post(api, f"/v1/partners/{store_a}/terminate", {"reason": "closing", "on": "2026-09-30"}, MANAGER)
    api.catch_up()

    made = [agent, second, store_a, store_c, broker, rejected]  # in the order they applied
    assert ids(api, "partners") == made
    assert ids(api, "partners", status="approved") == [second]
    assert ids(api, "partners", status="active") == [agent]
    assert ids(api, "partners", status=["suspended", "terminated"]) == [store_a, broker]
    assert ids(api, "partners", status="rejected") == [rejected]
    assert ids(api, "partners", status="applied") == [store_c]
    assert ids(api, "partners", kind="direct_store") == [store_a, store_c]
    assert ids(api, "partners", kind="direct_store", grade="A") == [store_a]
    assert ids(api, "partners", grade=["A", "C"]) == [store_a, store_c]
    assert ids(api, "partners", region="Zhejiang") == [agent, second]
    assert ids(api, "partners", region="zhejiang") == []  # exactly as recorded
    assert ids(api, "partners", parent_partner_id=agent) == [second]
    assert ids(api, "partners", recruited_by=recruiter) == [agent]
    assert ids(api, "partners", kind="broker", status="active") == []

    by_id = {item["id"]: item for item in listed(api, "partners")["items"]}
    assert {k: by_id[store_a][k] for k in ("status", "kind", "name", "region", "grade", "terminated_on")} == {
        "status": "terminated", "kind": "direct_store", "name": "direct_store Co.", "region": "Jiangsu",
        "grade": "A", "terminated_on": "2026-09-30"}
    assert (by_id[broker]["commission_rate"], by_id[broker]["status"]) == ("0.01", "suspended")
    assert (by_id[second]["parent_partner_id"], by_id[agent]["recruited_by"]) == (agent, recruiter)
    # Applied, 2 documents, reviewed, activated by the signature: 5 events.
    assert by_id[agent]["version"] == 5
    assert_as_the_records_say(api, "partners", list(by_id.values()))


def test_updated_since_keeps_the_records_changed_since_then(api):
    first = post(api, "/v1/partners", {"kind": "retailer", "name": "A"}, SPECIALIST, 201).json()["id"]
    second = post(api, "/v1/partners", {"kind": "retailer", "name": "B"}, SPECIALIST, 201).json()["id"]
    time.sleep(0.01)
    since = datetime.now(UTC)
    time.sleep(0.01)
    post(api, f"/v1/partners/{first}/review", {"decision": "approve"}, MANAGER)
    api.catch_up()
    assert ids(api, "partners", updated_since=since.isoformat()) == [first]
    assert ids(api, "partners", updated_since="2000-01-01T08:00:00+08:00") == [first, second]
    assert ids(api, "partners", updated_since="2999-01-01T00:00:00Z") == []
    item = listed(api, "partners")["items"][0]
    assert item["created_at"].endswith("Z") and item["updated_at"].endswith("Z")
    assert datetime.fromisoformat(item["created_at"]) < since < datetime.fromisoformat(item["updated_at"])


# --- contracts ---------------------------------------------------------------------------


def test_contracts_are_listed_with_their_shown_status_and_filtered(api):
    agent = approved_partner(api, "enterprise_agent")
    consignee = approved_partner(api, "consignee")
    retailer = approved_partner(api, "retailer")
    long_ago = signed_contract(api, retailer, "2020-01-01", "2020-12-31")  # signed, past its end: expired
    running = signed_contract(api, agent, "2026-01-01", "2099-12-31", territory="Zhejiang")
    consigned = signed_contract(api, consignee, "2026-01-01", "2099-12-31", fee_rate="0.02", exclusive=True)
    draft = post(api, "/v1/contracts", {"partner_id": retailer, "starts_on": "2027-01-01", "ends_on": "2027-12-31",
                                        "commission": {"type": "flat", "rate": "0.04"}}, MANAGER, 201).json()["id"]
    ended = signed_contract(api, retailer, "2026-01-01", "2026-06-30")
    post(api, f"/v1/contracts/{ended}/terminate", {"effective_on": "2026-03-01", "reason": "moved away"}, MANAGER)
    for order, amount in (("SO-1", "1000.00"), ("SO-2", "2000.00")):
        post(api, f"/v1/contracts/{running}/sales", {"order_id": order, "amount": amount, "sold_on": "2026-02-01",
                                                     "region": "Zhejiang"}, ERP)
    post(api, f"/v1/contracts/{running}/returns", {"order_id": "SO-1", "amount": "100.00",
                                                   "returned_on": "2026-02-10"}, ERP)
    amend(api, running, {"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.05"}})
    renew(api, consigned, "2100-12-31")
    api.catch_up()

    made = [long_ago, running, consigned, draft, ended]
    assert ids(api, "contracts") == made
    assert ids(api, "contracts", status="expired") == [long_ago]
    assert ids(api, "contracts", status="signed") == [running, consigned]
    assert ids(api, "contracts", status=["draft", "terminated"]) == [draft, ended]
    assert ids(api, "contracts", partner_id=retailer) == [long_ago, draft, ended]
    assert ids(api, "contracts", partner_kind="enterprise_agent") == [running]
    assert ids(api, "contracts", territory="Zhejiang") == [running]
    # api.md's names for the same two filters.
    assert ids(api, "contracts", kind="enterprise_agent") == [running]
    assert ids(api, "contracts", kind=["consignee", "enterprise_agent"]) == [running, consigned]
    assert ids(api, "contracts", region="Zhejiang") == [running]
    assert ids(api, "contracts", region="Zhejiang", partner_kind="consignee") == []
    # In force on 2026-02-28: the terminated one too (its last day is 2026-02-28), not on 2026-03-01.
    assert ids(api, "contracts", in_force_on="2026-02-28") == [running, consigned, ended]
    assert ids(api, "contracts", in_force_on="2026-03-01") == [running, consigned]
    assert ids(api, "contracts", in_force_on="2020-06-01") == [long_ago]
    assert ids(api, "contracts", status="signed", partner_kind="consignee") == [consigned]

    by_id = {item["id"]: item for item in listed(api, "contracts")["items"]}
    # Drafted, submitted, approved, signed; 2 sales, a return; amendment requested and approved: 9.
    assert by_id[running]["version"] == 9
    assert by_id[running]["amendments"] == [{"effective_on": "2026-03-01",
                                             "commission": {"type": "flat", "rate": "0.05"}}]
    assert by_id[running]["commission"] == {"type": "flat", "rate": "0.03"}
    assert (by_id[consigned]["ends_on"], by_id[consigned]["renewals"], by_id[consigned]["fee_rate"],
            by_id[consigned]["exclusive"]) == ("2100-12-31", 1, "0.02", True)
    assert (by_id[ended]["status"], by_id[ended]["terminated_on"], by_id[ended]["last_day_in_force"]) == (
        "terminated", "2026-03-01", "2026-02-28")
    assert (by_id[draft]["status"], by_id[draft]["signed_on"], by_id[draft]["last_day_in_force"]) == (
        "draft", None, None)
    assert by_id[long_ago]["status"] == "expired"
    assert_as_the_records_say(api, "contracts", list(by_id.values()))


# --- employees ---------------------------------------------------------------------------


def test_employees_are_listed_and_only_hr_reads_their_names(api):
    boss = hire(api, "Zhang Wei", "manager", login="zhang.wei")
    rep = hire(api, "Wang Fang", manager_id=boss, contract_months=12, national_id="330101199001011234")
    other = hire(api, "Chen Jie", "specialist", manager_id=boss)
    post(api, f"/v1/employees/{rep}/regularize", {"on": "2026-02-20"}, HR)
    post(api, f"/v1/employees/{other}/promote", {"role": "supervisor", "on": "2026-06-01"}, HR)
    api.catch_up()

    assert ids(api, "employees") == [boss, rep, other]
    assert ids(api, "employees", manager_id=boss) == [rep, other]
    assert ids(api, "employees", role="supervisor") == [other]
    assert ids(api, "employees", role=["manager", "sales_rep"]) == [boss, rep]
    assert ids(api, "employees", status="regular") == [rep]
    assert ids(api, "employees", status="probation") == [boss, other]  # open-ended: 3 months on probation
    assert ids(api, "employees", login="zhang.wei") == [boss]

    for role in sorted(set(ROLES) - {"hr"}):
        response = api.get("/v1/employees", actor=f"reader-{role}", roles=(role,))
        assert response.status_code == 200
        assert all("name" not in item for item in response.json()["items"]), role
        assert "pii:v1:" not in response.text and "Wang Fang" not in response.text, role
    as_hr = listed(api, "employees", HR_READER)
    assert [item["name"] for item in as_hr["items"]] == ["Zhang Wei", "Wang Fang", "Chen Jie"]
    assert "pii:v1:" not in api.get("/v1/employees", actor=HR_READER[0], roles=HR_READER[1]).text
    rep_item = as_hr["items"][1]
    assert (rep_item["status"], rep_item["version"], rep_item["contract_ends_on"], rep_item["login"]) == (
        "regular", 2, "2027-01-04", None)  # 12 months from 2026-01-05
    assert "national_id" not in rep_item
    assert_as_the_records_say(api, "employees", as_hr["items"], HR_READER)
    assert_as_the_records_say(api, "employees", listed(api, "employees")["items"])


def test_an_erased_name_is_never_listed_again(api):
    leaver = hire(api, "Liu Yang", hired_on="2020-01-06", contract_months=12)
    stays = hire(api, "Zhao Lei")
    post(api, f"/v1/employees/{leaver}/separation", {"on": "2020-12-30", "reason": "resignation"}, HR)
    api.catch_up()
    assert [item["name"] for item in listed(api, "employees", HR_READER)["items"]] == ["Liu Yang", "Zhao Lei"]
    erased = post(api, f"/v1/employees/{leaver}/personal-data/erase", None, HR).json()
    # Before the read model has seen the erasure the key is gone already: nothing to read.
    assert listed(api, "employees", HR_READER)["items"][0]["name"] is None
    api.catch_up()
    page = listed(api, "employees", HR_READER, min_position=erased["position"])
    assert [(item["id"], item["name"], item["personal_data_erased"], item["status"]) for item in page["items"]] == [
        (leaver, None, True, "separated"), (stays, "Zhao Lei", False, "probation")]
    assert_as_the_records_say(api, "employees", page["items"], HR_READER)


# --- targets -----------------------------------------------------------------------------


def test_targets_are_listed_and_filtered(api):
    leader = hire(api, "Lead", "manager", hired_on="2024-06-01")
    rep = hire(api, "Rep", manager_id=leader, hired_on="2024-06-01")
    rep_b = hire(api, "Rep B", manager_id=leader, hired_on="2024-06-01")
    partner = approved_partner(api, "retailer")
    kpis = {"sales_revenue": "0.7", "partner_satisfaction": "0.3"}
    team = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": leader, "period": "2025-Q1",
                                     "amount": "100000.00", "kpis": kpis}, MANAGER, 201).json()["id"]
    child = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep, "period": "2025-Q1",
                                      "amount": "60000.00", "kpis": kpis, "parent_id": team}, MANAGER,
                 201).json()["id"]
    child_b = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep_b, "period": "2025-Q1",
                                        "amount": "40000.00", "kpis": kpis, "parent_id": team}, MANAGER,
                   201).json()["id"]
    shop = post(api, "/v1/targets", {"assignee_type": "partner", "assignee_id": partner, "period": "2025-03",
                                     "amount": "5000.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()["id"]
    revision = post(api, f"/v1/targets/{shop}/revisions", {"amount": "6500.00", "reason": "new mall"},
                    MANAGER).json()["revision_id"]
    post(api, f"/v1/targets/{shop}/revisions/{revision}/approve", None, GM)
    post(api, f"/v1/targets/{team}/close", {"kpi_results": {"partner_satisfaction": "0.9"}}, MANAGER)
    api.catch_up()

    assert ids(api, "targets") == [team, child, child_b, shop]
    assert ids(api, "targets", period="2025-Q1") == [team, child, child_b]
    assert ids(api, "targets", period="2025-03") == [shop]
    assert ids(api, "targets", assignee_id=rep) == [child]
    assert ids(api, "targets", assignee_type=["team", "partner"]) == [team, shop]
    assert ids(api, "targets", parent_id=team) == [child, child_b]
    assert ids(api, "targets", status="closing") == [team]
    assert ids(api, "targets", status="open") == [child, child_b, shop]

    by_id = {item["id"]: item for item in listed(api, "targets")["items"]}
    # Set, revision requested, revision approved: version 3, amount as revised.
    assert (by_id[shop]["amount"], by_id[shop]["version"], by_id[shop]["kpis"]) == ("6500.00", 3, {"sales_revenue": "1"})
    # Set, two children allocated, results entered: version 4.
    assert (by_id[team]["status"], by_id[team]["version"], by_id[child]["parent_id"]) == ("closing", 4, team)
    assert_as_the_records_say(api, "targets", list(by_id.values()))


# --- pages -------------------------------------------------------------------------------


def test_pages_neither_repeat_nor_skip_a_record_updated_between_them(api):
    made = [post(api, "/v1/partners", {"kind": "retailer", "name": f"Shop {n}"}, SPECIALIST, 201).json()["id"]
            for n in range(7)]
    api.catch_up()
    first = listed(api, "partners", limit=3)
    assert [item["id"] for item in first["items"]] == made[:3]
    # Between the pages: one record of the page read, one of the next, and a new one.
    post(api, f"/v1/partners/{made[1]}/review", {"decision": "approve"}, MANAGER)
    post(api, f"/v1/partners/{made[4]}/review", {"decision": "reject"}, MANAGER)
    late = post(api, "/v1/partners", {"kind": "retailer", "name": "Late"}, SPECIALIST, 201).json()["id"]
    api.catch_up()
    second = listed(api, "partners", limit=3, cursor=first["next_cursor"])
    assert [item["id"] for item in second["items"]] == made[3:6]
    assert second["items"][1]["status"] == "rejected"  # read as it stands now
    third = listed(api, "partners", limit=3, cursor=second["next_cursor"])
    assert [item["id"] for item in third["items"]] == [made[6], late] and third["next_cursor"] is None

    every = everything(api, "partners", 2)
    assert [item["id"] for item in every] == [*made, late]
    assert [item["id"] for item in everything(api, "partners", 1000, status="applied")] == [
        made[0], made[2], made[3], made[5], made[6], late]
    assert listed(api, "partners", limit=7)["next_cursor"] is not None
    assert listed(api, "partners", limit=8)["next_cursor"] is None  # exactly 8: no empty page after


def test_a_list_reads_its_writes_with_min_position(database_url):
    with TestClient(create_app(database_url, run_projections=True)) as client:
        api = Api(client, database_url)
        created = post(api, "/v1/partners", {"kind": "retailer", "name": "A"}, SPECIALIST, 201).json()
        response = api.get("/v1/partners", actor=REPORTING[0], roles=REPORTING[1], min_position=created["position"],
                           wait_s=10)
        assert response.status_code == 200
        assert int(response.headers["x-projection-position"]) >= created["position"]
        assert [(item["id"], item["version"]) for item in response.json()["items"]] == [(created["id"], 1)]
        reviewed = post(api, f"/v1/partners/{created['id']}/review", {"decision": "approve"}, MANAGER).json()
        again = api.get("/v1/partners", min_position=reviewed["position"], wait_s=10).json()["items"]
        assert [(item["version"], item["status"]) for item in again] == [(reviewed["version"], "approved")]
    with TestClient(create_app(database_url)) as client:  # nothing projects here
        api = Api(client, database_url)
        unprojected = post(api, "/v1/partners", {"kind": "retailer", "name": "B"}, SPECIALIST, 201).json()
        for noun in ("partners", "contracts", "employees", "targets"):
            lagging = api.get(f"/v1/{noun}", min_position=unprojected["position"], wait_s=0.1)
            problem(lagging, 503, "projection_lagging")
        problem(api.get("/v1/partners", min_position=unprojected["position"] + 1), 422, "validation_error")


# --- refusals ----------------------------------------------------------------------------


def test_every_reader_role_reads_the_lists_and_a_caller_without_a_token_none(api):
    for noun in ("partners", "contracts", "employees", "targets"):
        for role in sorted(ROLES):
            response = api.get(f"/v1/{noun}", actor=f"reader-{role}", roles=(role,))
            assert response.status_code == 200, (noun, role, response.text)
            assert response.json() == {"items": [], "next_cursor": None}
        problem(api.client.get(f"/v1/{noun}"), 401, "unauthenticated")
        problem(api.client.get(f"/v1/{noun}", headers={"Authorization": "Bearer cd_nonsense"}), 401, "invalid_token")
        # Who may read comes before what was asked: a bad filter without a token is still a 401.
        problem(api.client.get(f"/v1/{noun}", params={"limit": "0"}), 401, "unauthenticated")


def test_malformed_cursors_limits_and_filters_are_422(api):
    bad = {
        "partners": [{"cursor": "abc"}, {"cursor": "-1"}, {"cursor": "1" * 19}, {"cursor": "１２"}, {"limit": "0"},
                     {"limit": "1001"}, {"limit": "ten"}, {"status": "asleep"}, {"kind": "shop"}, {"grade": "E"},
                     {"parent_partner_id": "not-a-uuid"}, {"recruited_by": "42"}, {"updated_since": "yesterday"},
                     {"updated_since": "2026-03-01T00:00:00"},  # no offset: which time would it be?
                     {"region": ""}, {"kind_of": "retailer"}, {"partner_id": "00000000-0000-0000-0000-00000000000a"}],
        "contracts": [{"status": "renewed"}, {"partner_id": "x"}, {"partner_kind": "agent"}, {"in_force_on": "2026-13-01"},
                      {"in_force_on": "20260301"}, {"kind": "agent"}, {"region": ""}, {"grade": "A"}, {"wait_s": "11"}],
        "employees": [{"status": "fired"}, {"role": "ceo"}, {"manager_id": "boss"}, {"min_position": "-1"},
                      {"name": "Wang Fang"}],
        "targets": [{"period": "2026-13"}, {"period": "Q1"}, {"assignee_type": "region"}, {"status": "done"},
                    {"parent_id": "x"}, {"assignee_id": "x" * 201}],
    }
    for noun, cases in bad.items():
        for params in cases:
            response = api.client.get(f"/v1/{noun}", params=params, headers=api.headers(*AUDITOR[:1], *AUDITOR[1]))
            problem(response, 422, "validation_error")
    unknown = problem(api.get("/v1/contracts", grade="A"), 422, "validation_error")
    assert "grade" in unknown["detail"] and "partner_kind" in unknown["detail"]


# --- rebuild -----------------------------------------------------------------------------


def test_a_rebuild_of_the_read_model_gives_the_same_lists(api, database_url):
    boss = hire(api, "Zhang Wei", "manager")
    hire(api, "Wang Fang", manager_id=boss)
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, "2026-01-01", "2099-12-31")
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "SO-1", "amount": "10.00", "sold_on": "2026-02-01"},
         ERP)
    amend(api, contract, {"effective_on": "2026-02-01", "commission": {"type": "flat", "rate": "0.05"}})
    post(api, "/v1/targets", {"assignee_type": "partner", "assignee_id": partner, "period": "2026",
                              "amount": "1000.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201)
    api.catch_up()
    nouns = ("partners", "contracts", "employees", "targets")
    before = {noun: everything(api, noun, 2, HR_READER) for noun in nouns}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM contract_list")  # a read model gone wrong
        conn.execute("UPDATE partner_list SET version = 99")
    assert listed(api, "contracts")["items"] == []
    report = Rebuilder(api.department, RecordLists()).rebuild()
    assert report.rows["contract_list"] == (0, 1)
    assert {noun: everything(api, noun, 2, HR_READER) for noun in nouns} == before
