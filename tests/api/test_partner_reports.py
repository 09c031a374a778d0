"""/v1/reports: partners, inventory, receivables, the payout register and evaluations, over HTTP
(api.md "Lists and reports"; docs/partner-reports.md). Records are made by hand, every figure
below is worked out by hand in the comments, and each CSV answer is parsed back and compared
with the JSON one.

Where a report counts what was *recorded* in a period, the events are recorded on a clock set to
a known moment (`recorded_at`): the company's calendar is Beijing time, so 17:00 UTC on 31 March is
already 1 April."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.company_time import today
from tests.api.flows import (
    AUDITOR,
    ERP,
    FINANCE,
    FINANCE_2,
    GM,
    HR,
    MANAGER,
    REPORTING,
    SPECIALIST,
    approved_partner,
    file_archive,
    post,
    problem,
    signed_contract,
)
from tests.api.test_commissions import give_back, sale, statement, with_account
from tests.api.test_control_findings import recorded_at
from tests.api.test_read_side import catch_up

CHANNEL_MANAGER_READER = ("mgr-9", ("channel_manager",))
JSON_CELLS = {"scores", "corrective_plans"}  # nested values: a CSV cell holds them as JSON text


def at(day: str, hour_utc: int = 4) -> datetime:
    """A moment on `day`: 04:00 UTC is noon in Beijing."""
    return datetime.fromisoformat(f"{day}T{hour_utc:02d}:00:00+00:00")


def _cell(value):  # noqa: ANN001, ANN202
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


def report(api, path: str, who=REPORTING, **params) -> dict:
    """The JSON answer, after checking the CSV answer holds the same rows, columns and cells."""
    catch_up(api)
    answer = api.get(path, actor=who[0], roles=who[1], **params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["x-projection-position"]) > 0
    body = answer.json()
    as_csv = api.get(path, actor=who[0], roles=who[1], format="csv", **params)
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["x-projection-position"] == answer.headers["x-projection-position"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(body["items"]), as_csv.text
    for row, item in zip(rows, body["items"], strict=True):
        assert list(row) == list(item)
        for column, cell in row.items():
            if column in JSON_CELLS:
                assert json.loads(cell) == item[column], column
            else:
                assert cell == _cell(item[column]), (column, cell, item[column])
    return body


def by_kind(body: dict) -> dict[str, tuple]:
    return {row["kind"]: tuple(row[c] for c in COUNTS) for row in body["items"]}


COUNTS = ("applied", "approved", "rejected", "active", "suspended", "terminated", "activated",
          "suspended_in_period", "reinstated_in_period", "terminated_in_period")
NOTHING = (0,) * len(COUNTS)
KINDS = ["enterprise_agent", "sales_agent", "consignee", "broker", "distributor", "retailer", "direct_store"]


def hire(api, name: str, login: str) -> str:
    return post(api, "/v1/employees", {"name": name, "role": "specialist", "hired_on": "2024-01-02",
                                       "contract_months": 0, "login": login}, HR, 201).json()["id"]


def apply(api, kind: str, name: str, **fields) -> str:
    partner = post(api, "/v1/partners", {"kind": kind, "name": name, **fields}, SPECIALIST, 201).json()["id"]
    if kind in ("enterprise_agent", "sales_agent", "consignee", "distributor"):
        file_archive(api, partner)
    return partner


def review(api, partner: str, decision: str = "approve") -> None:
    post(api, f"/v1/partners/{partner}/review", {"decision": decision})


def partners_scenario(api, monkeypatch) -> dict[str, str]:
    """Recorded in 2025. Retailers R1-R3 and broker B1 recruited by Zhou, R4 by Wu; distributors
    D1-D3 active since January: D1 suspended from 15 March to 1 April, D2 terminated on 31 March,
    D3 on 30 April (both recorded on 25 March)."""
    zhou, wu = hire(api, "Zhou", "zhou"), hire(api, "Wu", "wu")
    ids = {"zhou": zhou, "wu": wu}
    with recorded_at(monkeypatch, at("2025-01-10")):
        for name in ("D1", "D2", "D3"):
            ids[name] = apply(api, "distributor", name)
    with recorded_at(monkeypatch, at("2025-01-12")):
        for name in ("D1", "D2", "D3"):
            review(api, ids[name])
    with recorded_at(monkeypatch, at("2025-01-15")):
        for name in ("D1", "D2", "D3"):
            signed_contract(api, ids[name], "2025-01-15", "2025-12-31")
    with recorded_at(monkeypatch, at("2025-02-20")):
        ids["B1"] = apply(api, "broker", "B1", commission_rate="0.01", recruited_by=zhou)
    with recorded_at(monkeypatch, at("2025-03-01")):
        review(api, ids["B1"])  # a broker is active on approval
    with recorded_at(monkeypatch, at("2025-03-03")):
        ids["R1"] = apply(api, "retailer", "R1", recruited_by=zhou)
        ids["R2"] = apply(api, "retailer", "R2", recruited_by=zhou)
    with recorded_at(monkeypatch, at("2025-03-04")):
        ids["R3"] = apply(api, "retailer", "R3", recruited_by=zhou)
    with recorded_at(monkeypatch, at("2025-03-05")):
        review(api, ids["R1"])
    with recorded_at(monkeypatch, at("2025-03-06")):
        review(api, ids["R3"], "reject")
    with recorded_at(monkeypatch, at("2025-03-10")):
        signed_contract(api, ids["R1"], "2025-03-10", "2025-12-31")
    with recorded_at(monkeypatch, at("2025-03-15")):
        post(api, f"/v1/partners/{ids['D1']}/suspend", {"reason": "audit", "on": "2025-03-15"})
    with recorded_at(monkeypatch, at("2025-03-20")):
        review(api, ids["R2"])
    with recorded_at(monkeypatch, at("2025-03-25")):
        post(api, f"/v1/partners/{ids['D2']}/terminate", {"reason": "poor results", "on": "2025-03-31"})
        post(api, f"/v1/partners/{ids['D3']}/terminate", {"reason": "leaving", "on": "2025-04-30"})
    with recorded_at(monkeypatch, at("2025-03-28")):
        ids["R4"] = apply(api, "retailer", "R4", recruited_by=wu)
        post(api, f"/v1/partners/{ids['D1']}/reinstate", {"reason": "cleared", "on": "2025-04-01"})
    with recorded_at(monkeypatch, at("2025-03-31", hour_utc=17)):  # 01:00 on 1 April in Beijing
        review(api, ids["R4"])
    with recorded_at(monkeypatch, at("2025-04-02")):
        signed_contract(api, ids["R2"], "2025-04-02", "2025-12-31")
    return ids


def test_partners_per_kind_flows_in_the_period_and_statuses_at_its_end(api, monkeypatch):
    partners_scenario(api, monkeypatch)
    march = report(api, "/v1/reports/partners", period="2025-03")
    assert [row["kind"] for row in march["items"]] == KINDS  # every kind, always, in this order
    # Retailers: R1-R4 applied in March; R1 and R2 approved (R4 on 1 April, Beijing), R3 rejected;
    # only R1 signed (10 March). Broker: approved 1 March, active at once. Distributors: D1
    # suspended on 15 March, D2 terminated on 31 March, D3 still active until 30 April.
    assert by_kind(march) == {
        "retailer": (4, 2, 1, 1, 0, 0, 1, 0, 0, 0),
        "broker": (0, 1, 0, 1, 0, 0, 1, 0, 0, 0),
        "distributor": (0, 0, 0, 1, 1, 1, 0, 1, 0, 1),
        **{kind: NOTHING for kind in KINDS if kind not in ("retailer", "broker", "distributor")},
    }
    quarter = by_kind(report(api, "/v1/reports/partners", period="2025-Q1"))
    assert quarter["broker"] == (1, 1, 0, 1, 0, 0, 1, 0, 0, 0)  # applied 20 February
    assert quarter["distributor"] == (3, 3, 0, 1, 1, 1, 3, 1, 0, 1)
    assert quarter["retailer"] == (4, 2, 1, 1, 0, 0, 1, 0, 0, 0)
    # April: R4 approved; R2 active from 2 April; D1 active again on 1 April; D3 terminated on 30 April.
    april = by_kind(report(api, "/v1/reports/partners", period="2025-04", who=CHANNEL_MANAGER_READER))
    assert april["retailer"] == (0, 1, 0, 2, 0, 0, 1, 0, 0, 0)
    assert april["distributor"] == (0, 0, 0, 1, 0, 2, 0, 0, 1, 1)
    assert april["broker"] == (0, 0, 0, 1, 0, 0, 0, 0, 0, 0)
    february = by_kind(report(api, "/v1/reports/partners", period="2025-02"))
    assert february["broker"] == (1, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # applied, not yet reviewed
    assert february["distributor"] == (0, 0, 0, 3, 0, 0, 0, 0, 0, 0)


def test_new_partners_per_recruiter_agree_with_the_new_partners_kpi(api, monkeypatch):
    ids = partners_scenario(api, monkeypatch)
    march = report(api, "/v1/reports/partners", period="2025-03")
    # Zhou's recruits approved in March: B1 (1 March), R1 (5 March), R2 (20 March); R3 was rejected.
    # Wu's R4 was approved at 01:00 on 1 April in Beijing: April's.
    zhou_row = {"employee_id": ids["zhou"], "login": "zhou", "new_partners": 3,
                "partner_ids": [ids["B1"], ids["R1"], ids["R2"]]}
    assert march["recruiters"] == [zhou_row]
    assert report(api, "/v1/reports/partners", period="2025-03", view="recruiters")["items"] == [zhou_row]
    april = report(api, "/v1/reports/partners", period="2025-04", view="recruiters")["items"]
    assert april == [{"employee_id": ids["wu"], "login": "wu", "new_partners": 1, "partner_ids": [ids["R4"]]}]
    quarter = report(api, "/v1/reports/partners", period="2025", view="recruiters")["items"]
    assert [(row["login"], row["new_partners"]) for row in quarter] == [("zhou", 3), ("wu", 1)]
    # The new_partners KPI counts the same partners for the same month.
    for employee, expected in ((ids["zhou"], "3"), (ids["wu"], "0")):
        target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": employee, "period": "2025-03",
                                           "amount": "1000.00", "kpis": {"sales_revenue": "0.5", "new_partners": {
                                               "weight": "0.5", "goal": "3"}}}, MANAGER, 201).json()["id"]
        catch_up(api)
        assert api.get(f"/v1/targets/{target}/attainment").json()["kpis"]["new_partners"]["actual"] == expected


def inventory_scenario(api) -> dict[str, str]:
    distributor, consignee = approved_partner(api, "distributor"), approved_partner(api, "consignee")
    signed_contract(api, distributor)
    signed_contract(api, consignee, fee_rate="0.02")
    reports = f"/v1/partners/{distributor}/inventory-reports"
    post(api, reports, {"as_of": "2026-01-31", "lines": [
        {"product": "P1", "opening": 0, "received": 100, "sold": 40, "closing": 60},
        {"product": "P2", "opening": 0, "received": 50, "sold": 10, "closing": 40}]}, SPECIALIST)
    post(api, reports, {"as_of": "2026-02-28", "lines": [
        {"product": "P1", "opening": 60, "received": 20, "sold": 50, "closing": 30}]}, ERP)
    post(api, reports, {"as_of": "2026-01-31", "correction_reason": "miscounted", "lines": [
        {"product": "P2", "opening": 0, "received": 50, "sold": 15, "closing": 35}]}, SPECIALIST)
    post(api, reports, {"as_of": "2026-03-31", "lines": [
        {"product": "P2", "opening": 35, "received": 5, "sold": 0, "closing": 40}]}, SPECIALIST)
    post(api, f"/v1/partners/{consignee}/inventory-reports", {"as_of": "2026-02-15", "lines": [
        {"product": "P1", "opening": 0, "received": 10, "sold": 3, "closing": 7}]}, SPECIALIST)
    return {"distributor": distributor, "consignee": consignee}


def stock(body: dict) -> list[tuple]:
    return [(row["partner_id"], row["product"], row["report_date"], row["opening"], row["received"], row["sold"],
             row["closing"], row["correction"], row["correction_reason"], row["days_since_report"])
            for row in body["items"]]


def test_inventory_latest_stock_per_partner_and_product_as_of_a_date(api):
    ids = inventory_scenario(api)
    distributor, consignee = ids["distributor"], ids["consignee"]
    history = {item["type"]: item for item in api.get(f"/v1/partners/{distributor}/history").json()["items"]}
    assert "Partner.InventoryReported" in history
    d_rows = {
        "2026-02-28": [
            (distributor, "P1", "2026-02-28", 60, 20, 50, 30, False, None, 0),
            # P2's report of 31 January was corrected (same date, recorded later): the correction holds.
            (distributor, "P2", "2026-01-31", 0, 50, 15, 35, True, "miscounted", 28)],
        "2026-01-31": [
            (distributor, "P1", "2026-01-31", 0, 100, 40, 60, False, None, 0),
            (distributor, "P2", "2026-01-31", 0, 50, 15, 35, True, "miscounted", 0)],
        "2026-03-31": [
            (distributor, "P1", "2026-02-28", 60, 20, 50, 30, False, None, 31),
            (distributor, "P2", "2026-03-31", 35, 5, 0, 40, False, None, 0)],
    }
    c_row = (consignee, "P1", "2026-02-15", 0, 10, 3, 7, False, None, 13)
    every = report(api, "/v1/reports/inventory", as_of="2026-02-28")
    assert stock(every) == sorted(d_rows["2026-02-28"] + [c_row])  # by partner id, then product
    first = every["items"][0]
    assert {"partner_name", "partner_kind", "position", "event_id", "recorded_at"} <= set(first)
    for as_of, expected in d_rows.items():
        assert stock(report(api, "/v1/reports/inventory", as_of=as_of, partner_id=distributor)) == expected
    assert report(api, "/v1/reports/inventory", as_of="2026-01-30", partner_id=distributor)["items"] == []
    # Each row names the report it comes from: the correction's event for P2 on 31 January.
    rows = report(api, "/v1/reports/inventory", as_of="2026-01-31", partner_id=distributor, who=AUDITOR)["items"]
    corrections = [item for item in api.get(f"/v1/partners/{distributor}/history").json()["items"]
                   if item["type"] == "Partner.InventoryReported" and item["data"]["correction_reason"]]
    assert (rows[1]["position"], rows[1]["partner_kind"]) == (corrections[0]["position"], "distributor")
    # Without as_of: today on the company's calendar.
    assert report(api, "/v1/reports/inventory") == report(api, "/v1/reports/inventory", as_of=today().isoformat())
    problem(api.get("/v1/reports/inventory", partner_id="00000000-0000-0000-0000-000000000001"), 404, "not_found")


def receivables_scenario(api) -> dict[str, str]:
    """A consignee at 10 % commission and 2 % fees (S = proceeds − commission − fees):
    January 10 000 → 10 000 − 1 000 − 200 = 8 800; February 5 000 less a 1 000 return →
    4 000 − 400 − 80 = 3 520; March 2 000 → 2 000 − 200 − 40 = 1 760. January is remitted in two
    parts (5 000 on 10 February, 3 800 on 20 February), February in part (2 000 on 10 March).
    A second consignee sells nothing but remits 100 for February on 1 March. A retailer is no
    receivable."""
    c1, c2 = approved_partner(api, "consignee"), approved_partner(api, "consignee")
    contract = signed_contract(api, c1, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    signed_contract(api, c2, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    sale(api, contract, "C1", "10000.00", "2026-01-05")
    sale(api, contract, "C2", "5000.00", "2026-02-10")
    give_back(api, contract, "C2", "1000.00", "2026-02-20")
    sale(api, contract, "C3", "2000.00", "2026-03-03")
    retailer = approved_partner(api, "retailer")
    sale(api, signed_contract(api, retailer), "R1", "9000.00", "2026-02-01")
    for partner, period, amount, on in ((c1, "2026-01", "5000.00", "2026-02-10"), (c1, "2026-01", "3800.00", "2026-02-20"),
                                        (c1, "2026-02", "2000.00", "2026-03-10"), (c2, "2026-02", "100.00", "2026-03-01")):
        post(api, f"/v1/partners/{partner}/remittances", {"period": period, "amount": amount, "received_on": on},
             FINANCE)
    return {"c1": c1, "c2": c2, "retailer": retailer}


def owed(body: dict) -> list[tuple]:
    return [(row["partner_id"], row["period"], row["remittance_due"], row["remitted"], row["outstanding"],
             row["due_on"], row["days_overdue"]) for row in body["items"]]


def test_receivables_as_of_a_date_with_the_statements_figures(api):
    ids = receivables_scenario(api)
    c1, c2 = ids["c1"], ids["c2"]

    def in_order(rows: list[tuple]) -> list[tuple]:
        return sorted(rows, key=lambda row: (row[0], row[1]))

    # 20 March: January settled; February's 1 520 five days past the 15th; March not yet due.
    assert owed(report(api, "/v1/reports/receivables", as_of="2026-03-20", who=FINANCE)) == in_order([
        (c1, "2026-01", "8800.00", "8800.00", "0.00", "2026-02-15", 0),
        (c1, "2026-02", "3520.00", "2000.00", "1520.00", "2026-03-15", 5),
        (c1, "2026-03", "1760.00", "0.00", "1760.00", "2026-04-15", 0),
        (c2, "2026-02", "0.00", "100.00", "-100.00", "2026-03-15", 0)])
    # 15 February, the day January is due: 5 000 received so far, not yet overdue; March not yet begun.
    assert owed(report(api, "/v1/reports/receivables", as_of="2026-02-15")) == in_order([
        (c1, "2026-01", "8800.00", "5000.00", "3800.00", "2026-02-15", 0),
        (c1, "2026-02", "3520.00", "0.00", "3520.00", "2026-03-15", 0),
        (c2, "2026-02", "0.00", "0.00", "0.00", "2026-03-15", 0)])
    assert owed(report(api, "/v1/reports/receivables", as_of="2026-02-16", partner_id=c1))[0][-1] == 1
    # 1 May: February 47 days overdue (16 + 30 + 1), March 16.
    may = owed(report(api, "/v1/reports/receivables", as_of="2026-05-01", partner_id=c1))
    assert [(row[1], row[4], row[6]) for row in may] == [("2026-01", "0.00", 0), ("2026-02", "1520.00", 47),
                                                          ("2026-03", "1760.00", 16)]
    assert owed(report(api, "/v1/reports/receivables", as_of="2026-05-01", partner_id=c2)) == [
        (c2, "2026-02", "0.00", "100.00", "-100.00", "2026-03-15", 0)]
    assert report(api, "/v1/reports/receivables", partner_id=ids["retailer"])["items"] == []
    # The statements say the same, received dates aside.
    for row in report(api, "/v1/reports/receivables", as_of="2026-12-31", partner_id=c1)["items"]:
        month = statement(api, c1, row["period"])
        assert (row["remittance_due"], row["remitted"], row["outstanding"]) == (
            month["remittance_due"], month["remitted"], month["remittance_outstanding"])
    assert report(api, "/v1/reports/receivables")["items"][0]["partner_name"] == "consignee Co."



def test_receivables_count_the_proceeds_of_a_late_sale_moved_out_of_a_closed_month(api):
    consignee = approved_partner(api, "consignee")
    contract = signed_contract(api, consignee, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    sale(api, contract, "C1", "10000.00", "2026-03-05")
    api.catch_up()
    post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, 201)
    sale(api, contract, "C2", "2000.00", "2026-03-28")  # late: moved to the month it is recorded
    booked_in = today().strftime("%Y-%m")  # the company month it is recorded in
    # The late 2 000 of proceeds, less the 200 commission kept and 2 % × 2 000 = 40 of fees: 1 760 due.
    rows = {row["period"]: row for row in report(api, "/v1/reports/receivables", as_of="2099-12-31",
                                                 partner_id=consignee, who=FINANCE)["items"]}
    assert (rows["2026-03"]["remittance_due"], rows[booked_in]["remittance_due"]) == ("8800.00", "1760.00")
    assert rows[booked_in]["outstanding"] == "1760.00"
    assert statement(api, consignee, booked_in)["remittance_due"] == "1760.00"

def payouts_scenario(api) -> dict[str, str]:
    """Partner P: the March commission payout passes all four hands; the March housing subsidy
    is prepared by the channel manager and verified; April's payout is prepared. Partner Q: a
    February payout, prepared."""
    p, q = approved_partner(api, "retailer"), approved_partner(api, "retailer")
    for partner in (p, q):
        signed_contract(api, partner)
        with_account(api, partner)  # 6222 0001
    payouts, subsidies = f"/v1/partners/{p}/payouts", f"/v1/partners/{p}/housing-subsidies"
    post(api, payouts, {"period": "2026-03", "amount": "300.00"}, SPECIALIST)
    post(api, f"{payouts}/2026-03/verify", None, FINANCE)
    post(api, f"{payouts}/2026-03/approve", None, GM)
    post(api, f"{payouts}/2026-03/pay", {"paid_on": "2026-04-10"}, FINANCE_2)
    post(api, subsidies, {"period": "2026-03", "amount": "800.00"}, MANAGER)
    post(api, f"{subsidies}/2026-03/verify", None, FINANCE)
    post(api, payouts, {"period": "2026-04", "amount": "100.00"}, SPECIALIST)
    post(api, f"/v1/partners/{q}/payouts", {"period": "2026-02", "amount": "50.00"}, SPECIALIST)
    return {"p": p, "q": q}


def steps(row: dict) -> tuple:
    return (row["period"], row["partner_id"], row["kind"], row["amount"], row["account"], row["status"],
            row["prepared_by"], row["verified_by"], row["approved_by"], row["paid_by"], row["paid_on"])


def test_the_payout_register_names_each_step_and_masks_the_account_but_for_finance(api):
    ids = payouts_scenario(api)
    p, q = ids["p"], ids["q"]
    march = report(api, "/v1/reports/payouts", period="2026-03", who=FINANCE)
    assert [steps(row) for row in march["items"]] == [
        ("2026-03", p, "commission", "300.00", "6222 0001", "paid", "spec-1", "fin-1", "gm-1", "fin-2", "2026-04-10"),
        ("2026-03", p, "housing_subsidy", "800.00", "6222 0001", "verified", "mgr-1", "fin-1", None, None, None)]
    # Each step's time is its event's recorded time.
    recorded = {item["type"]: item["recorded_at"] for item in api.get(f"/v1/partners/{p}/history").json()["items"]
                if item["data"].get("period") == "2026-03"}
    paid = march["items"][0]
    assert (paid["prepared_at"], paid["verified_at"], paid["approved_at"], paid["paid_at"]) == (
        recorded["Partner.PayoutPrepared"], recorded["Partner.PayoutVerified"], recorded["Partner.PayoutApproved"],
        recorded["Partner.PayoutPaid"])
    assert march["items"][1]["verified_at"] == recorded["Partner.HousingSubsidyVerified"]
    assert march["items"][1]["approved_at"] is None
    # Other readers see the account's last 4 characters only.
    for who in (REPORTING, AUDITOR, CHANNEL_MANAGER_READER):
        masked = report(api, "/v1/reports/payouts", period="2026-03", who=who)["items"]
        assert [row["account"] for row in masked] == ["****0001", "****0001"]
    quarter = report(api, "/v1/reports/payouts", period="2026-Q1", who=FINANCE)["items"]
    assert [(row["period"], row["partner_id"], row["kind"], row["amount"], row["status"]) for row in quarter] == [
        ("2026-02", q, "commission", "50.00", "prepared"), ("2026-03", p, "commission", "300.00", "paid"),
        ("2026-03", p, "housing_subsidy", "800.00", "verified")]
    april = report(api, "/v1/reports/payouts", period="2026-04", who=FINANCE)["items"]
    assert [steps(row) for row in april] == [
        ("2026-04", p, "commission", "100.00", "6222 0001", "prepared", "spec-1", None, None, None, None)]
    # The subsidy is paid to the account approved when it is paid; the paid payout keeps its own.
    change = post(api, f"/v1/partners/{p}/payout-account/changes", {"account": "6222 9999 8888"}, SPECIALIST).json()
    post(api, f"/v1/partners/{p}/payout-account/changes/{change['change_id']}/approve", None, FINANCE)
    post(api, f"/v1/partners/{p}/housing-subsidies/2026-03/approve", None, GM)
    post(api, f"/v1/partners/{p}/housing-subsidies/2026-03/pay", {"paid_on": "2026-04-12"}, FINANCE_2)
    after = report(api, "/v1/reports/payouts", period="2026-03", who=FINANCE)["items"]
    assert [steps(row) for row in after] == [
        ("2026-03", p, "commission", "300.00", "6222 0001", "paid", "spec-1", "fin-1", "gm-1", "fin-2", "2026-04-10"),
        ("2026-03", p, "housing_subsidy", "800.00", "6222 9999 8888", "paid", "mgr-1", "fin-1", "gm-1", "fin-2",
         "2026-04-12")]
    assert report(api, "/v1/reports/payouts", period="2026-03")["items"][1]["account"] == "****8888"


T0 = at("2026-04-02", hour_utc=2)  # 10:00 on 2 April in Beijing


def evaluations_scenario(api, monkeypatch) -> dict[str, str]:
    """Q1 evaluations recorded on 2 April: A poor (40, 70 → 55) with a plan 10 days later, closed
    as met after 50 days; B poor (59.99) with a plan only after 31 days; D fine (60, 60, 61 →
    60.33). C's January evaluation is poor (10) and C is terminated 29 days later. Outside Q1: A's
    Q2 (80) and D's year (90)."""
    a, b, c, d = (approved_partner(api, "retailer") for _ in range(4))
    evaluations = {a: {"sales": "40", "service": "70"}, b: {"sales": "59.99"}, d: {"sales": "60", "service": "60",
                                                                                    "quality": "61"}}
    with recorded_at(monkeypatch, T0):
        post(api, f"/v1/partners/{c}/evaluations", {"period": "2026-01", "scores": {"sales": "10"}})
        for partner, scores in evaluations.items():
            post(api, f"/v1/partners/{partner}/evaluations", {"period": "2026-Q1", "scores": scores})
    with recorded_at(monkeypatch, T0 + timedelta(days=10)):
        plan = post(api, f"/v1/partners/{a}/corrective-plans", {"actions": ["weekly visits", "stock review"],
                                                                 "due_on": "2026-06-30"}).json()["plan_id"]
    with recorded_at(monkeypatch, T0 + timedelta(days=29)):
        post(api, f"/v1/partners/{c}/terminate", {"reason": "poor results", "on": "2026-05-01"})
    with recorded_at(monkeypatch, T0 + timedelta(days=31)):
        post(api, f"/v1/partners/{b}/corrective-plans", {"actions": ["training"], "due_on": "2026-07-31"})
    with recorded_at(monkeypatch, T0 + timedelta(days=50)):
        post(api, f"/v1/partners/{a}/corrective-plans/{plan}/close", {"outcome": "met"})
    post(api, f"/v1/partners/{a}/evaluations", {"period": "2026-Q2", "scores": {"sales": "80"}})
    post(api, f"/v1/partners/{d}/evaluations", {"period": "2026", "scores": {"sales": "90"}})
    return {"a": a, "b": b, "c": c, "d": d, "plan": plan}


def test_evaluations_of_the_period_their_average_poor_ones_and_corrective_plans(api, monkeypatch):
    ids = evaluations_scenario(api, monkeypatch)
    a, b, c, d = ids["a"], ids["b"], ids["c"], ids["d"]
    body = report(api, "/v1/reports/evaluations", period="2026-Q1")
    rows = body["items"]
    # January first (it ends first), then the quarter's by partner id.
    assert [row["partner_id"] for row in rows] == [c, *sorted([a, b, d])]
    found = {(row["partner_id"], row["period"]): row for row in rows}
    a_row, b_row, c_row, d_row = (found[(a, "2026-Q1")], found[(b, "2026-Q1")], found[(c, "2026-01")],
                                  found[(d, "2026-Q1")])
    assert (a_row["scores"], a_row["average"], a_row["poor"]) == ({"sales": "40", "service": "70"}, "55.00", True)
    # 30 days after 10:00 on 2 April, Beijing: 2 May.
    assert (a_row["respond_by"], a_row["terminated_within_30_days"], a_row["addressed"]) == ("2026-05-02", False, True)
    assert a_row["corrective_plans"] == [{"plan_id": ids["plan"], "actions": ["weekly visits", "stock review"],
                                          "due_on": "2026-06-30", "status": "met", "recorded_on": "2026-04-12",
                                          "closed_on": "2026-05-22"}]
    assert (b_row["average"], b_row["poor"], b_row["corrective_plans"], b_row["addressed"]) == (
        "59.99", True, [], False)  # its plan came on day 31: too late to answer it
    assert (c_row["average"], c_row["poor"], c_row["corrective_plans"], c_row["terminated_within_30_days"],
            c_row["addressed"]) == ("10.00", True, [], True, True)
    assert (d_row["average"], d_row["poor"], d_row["respond_by"], d_row["addressed"]) == ("60.33", False, None, None)
    assert d_row["partner_name"] == "retailer Co." and d_row["partner_kind"] == "retailer"
    # (55 + 59.99 + 10 + 60.333…) ÷ 4 = 46.3308… → 46.33; three of four are poor.
    assert (body["average"], body["evaluations"], body["poor"]) == ("46.33", 4, 3)
    # The year holds the quarters, months and the year itself: (185.3233… + 80 + 90) ÷ 6 = 59.2205… → 59.22.
    year = report(api, "/v1/reports/evaluations", period="2026")
    assert (year["average"], year["evaluations"], year["poor"]) == ("59.22", 6, 3)
    assert len(year["items"]) == 6
    march = report(api, "/v1/reports/evaluations", period="2026-03")  # no evaluation lies within March
    assert march == {"items": [], "average": None, "evaluations": 0, "poor": 0}


REPORTS = [("/v1/reports/partners", {"period": "2026-03"}), ("/v1/reports/inventory", {}),
           ("/v1/reports/receivables", {}), ("/v1/reports/payouts", {"period": "2026-03"}),
           ("/v1/reports/evaluations", {"period": "2026-Q1"})]


def test_report_roles(api):
    for path, params in REPORTS:
        for role in ("reporting", "channel_manager", "finance", "auditor"):
            assert api.get(path, actor=f"r-{role}", roles=(role,), **params).status_code == 200, (path, role)
        for role in ("integration", "hr", "channel_specialist", "general_manager"):
            problem(api.get(path, actor=f"r-{role}", roles=(role,), **params), 403, "forbidden")
        assert api.client.get(path, params=params).status_code == 401


@pytest.mark.parametrize(("path", "params"), [
    ("/v1/reports/partners", {}),
    ("/v1/reports/partners", {"period": "2026-13"}),
    ("/v1/reports/partners", {"period": "2026-Q5"}),
    ("/v1/reports/partners", {"period": "2026-03", "view": "employees"}),
    ("/v1/reports/partners", {"period": "2026-03", "format": "xml"}),
    ("/v1/reports/inventory", {"as_of": "2026-02-30"}),
    ("/v1/reports/inventory", {"as_of": "20260228"}),
    ("/v1/reports/inventory", {"partner_id": "not-a-uuid"}),
    ("/v1/reports/receivables", {"as_of": "yesterday"}),
    ("/v1/reports/receivables", {"partner_id": "1"}),
    ("/v1/reports/payouts", {}),
    ("/v1/reports/payouts", {"period": "March"}),
    ("/v1/reports/evaluations", {"period": "2026-3"}),
    ("/v1/reports/evaluations", {"period": "2026-Q1", "min_position": "-1"}),
])
def test_bad_parameters_are_refused(api, path, params):
    problem(api.get(path, **params), 422, "validation_error")


def test_min_position_waits_for_the_read_model(api):
    partner = approved_partner(api, "distributor")
    signed_contract(api, partner)
    written = post(api, f"/v1/partners/{partner}/inventory-reports", {"as_of": "2026-01-31", "lines": [
        {"product": "P1", "opening": 0, "received": 5, "sold": 0, "closing": 5}]}, SPECIALIST).json()
    lagging = api.get("/v1/reports/inventory", min_position=written["position"], wait_s=0.1)
    problem(lagging, 503, "projection_lagging")
    catch_up(api)
    answer = api.get("/v1/reports/inventory", min_position=written["position"], as_of="2026-01-31")
    assert answer.status_code == 200
    assert int(answer.headers["x-projection-position"]) >= written["position"]
    assert [row["closing"] for row in answer.json()["items"]] == [5]
    problem(api.get("/v1/reports/inventory", min_position=written["position"] + 1), 422, "validation_error")


def test_a_rebuild_gives_the_same_answers(api, monkeypatch):
    partners_scenario(api, monkeypatch)
    inventory_scenario(api)
    receivables_scenario(api)
    payouts_scenario(api)
    evaluations_scenario(api, monkeypatch)
    asked = [("/v1/reports/partners", {"period": "2025-03"}),
             ("/v1/reports/partners", {"period": "2025", "view": "recruiters"}),
             ("/v1/reports/inventory", {"as_of": "2026-02-28"}),
             ("/v1/reports/receivables", {"as_of": "2026-03-20"}),
             ("/v1/reports/payouts", {"period": "2026"}),
             ("/v1/reports/evaluations", {"period": "2026"})]

    def answers() -> list:
        catch_up(api)
        return [(api.get(path, actor=FINANCE[0], roles=FINANCE[1], **params).json(),
                 api.get(path, actor=FINANCE[0], roles=FINANCE[1], format="csv", **params).text)
                for path, params in asked]

    before = answers()
    assert all(body["items"] for body, _ in before)
    with psycopg.connect(api.database_url, autocommit=True) as conn:  # a read model gone wrong
        conn.execute("DELETE FROM report_payouts")
        conn.execute("UPDATE report_inventory_lines SET closing = closing + 1")
    assert answers() != before
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", api.database_url)
    result = CliRunner().invoke(cli, ["rebuild", "partner_reports", "--processes", "1"])
    assert result.exit_code == 0, result.output
    assert "switched partner_reports" in result.output
    assert answers() == before
