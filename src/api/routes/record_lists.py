"""GET /v1/partners, /v1/contracts, /v1/employees, /v1/targets: every record as it stands,
filtered and paginated, for reporting tools — read from the `record_lists` read model, never
by loading aggregates.

A list is in the order records were created (the position of their first event), and its
cursor is that position: a record never moves in the order, so an update between two pages
neither repeats it nor skips it, and a record created meanwhile comes at the end. Filters are
on the current state: a record whose status changes between two pages is listed or not by the
status it has when its page is read. A query parameter a list does not take is refused (422),
so a misspelt filter never answers the unfiltered list.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.cursors import NumberCursor, cursor_number
from api.deps import Department, allowed
from api.errors import ApiProblem, Problem
from api.models import Day, Period
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import ROLES, Principal
from channel_domain import company_time
from channel_domain.application import ChannelDepartment
from channel_domain.values import plain_json

router = APIRouter(tags=["lists"])
# As the record reads (GET /v1/{record}/{id}): every role reads them.
Reader = Annotated[Principal, Depends(allowed(*ROLES))]
LIST_ERRORS: dict[int | str, dict[str, Any]] = {
    **{status: ERRORS[status] for status in (401, 403)},
    422: {"model": Problem, "description": "A filter, cursor or limit that is not valid, or a query parameter this "
                                           "list does not take (`validation_error`)"},
}
READ_MODEL = "record_lists"

PartnerStatus = Literal["applied", "approved", "rejected", "active", "suspended", "terminated"]
PartnerKind = Literal["enterprise_agent", "sales_agent", "consignee", "broker", "distributor", "retailer",
                      "direct_store"]
ContractStatus = Literal["draft", "submitted", "approved", "signed", "expired", "terminated"]
EmployeeStatus = Literal["probation", "regular", "probation_failed", "dismissed", "separated"]
JobRole = Literal["director", "manager", "supervisor", "specialist", "sales_rep"]
TargetStatus = Literal["open", "closing", "closed"]

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page (default 100, at most 1000)")]
UpdatedSince = Annotated[AwareDatetime | None, Query(
    description="Only records whose last event was recorded at or after this time (RFC 3339 with its offset)",
    examples=["2026-03-01T00:00:00Z"])]
Fresh = Annotated[int, fresh(READ_MODEL)]


def _any_of(description: str) -> Any:
    return Query(description=f"{description}; repeat the parameter for any of several")


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def only_known_parameters(request: Request) -> None:
    """A parameter the list does not take is refused rather than ignored: ignored, a misspelt
    or misplaced filter (`grade` on contracts, say) would answer the whole list."""
    taken = _query_names(request.scope["route"].dependant)
    unknown = sorted(set(request.query_params) - taken)
    if unknown:
        raise ApiProblem(422, "validation_error",
                         f"this list does not take {', '.join(unknown)}; it takes {', '.join(sorted(taken))}")


Known = Annotated[None, Depends(only_known_parameters)]


class ListPage:
    """What every list takes besides its own filters: `min_position`/`wait_s` (the read model's
    position reached), `updated_since`, `cursor` and `limit`."""

    def __init__(self, position: Fresh, updated_since: UpdatedSince = None, cursor: NumberCursor = None,
                 limit: Limit = 100) -> None:
        self.position = position
        self.updated_since = updated_since
        self.cursor = cursor
        self.limit = limit


Page = Annotated[ListPage, Depends()]


# --- answers -----------------------------------------------------------------------------


class ListedRecord(BaseModel):
    id: str
    version: int = Field(description="The record's version after its last event: what GET /v1/{record}/{id} gives")
    status: str
    created_at: str = Field(description="When its first event was recorded (UTC)")
    updated_at: str = Field(description="When its last event was recorded (UTC)")
    position: int = Field(description="Global position of its last event")


class PartnerItem(ListedRecord):
    kind: str
    name: str
    region: str | None
    grade: str | None
    commission_rate: str | None = Field(description="A broker's rate per deal; null for other kinds")
    parent_partner_id: str | None
    recruited_by: str | None
    terminated_on: str | None


class ContractItem(ListedRecord):
    status: str = Field(description="draft, submitted, approved, signed, expired (signed, past its ends_on on the "
                                    "company calendar) or terminated")
    partner_id: str
    partner_kind: str
    starts_on: str
    ends_on: str = Field(description="The end date, moved by approved renewals")
    signed_on: str | None
    last_day_in_force: str | None = Field(description="ends_on, or the day before a termination's effective date; "
                                                      "null until signed")
    terminated_on: str | None
    territory: str | None
    commission: dict = Field(description="The terms it was drafted with")
    amendments: list[dict] = Field(description="Approved amendments, each {effective_on, commission}, by date")
    fee_rate: str | None
    exclusive: bool
    products: list[str] | None
    renewals: int


class EmployeeItem(ListedRecord):
    role: str
    hired_on: str
    manager_id: str | None
    login: str | None
    probation_ends_on: str | None
    contract_starts_on: str
    contract_ends_on: str | None = Field(description="Null when the labour contract is open-ended")
    left_on: str | None
    personal_data_erased: bool
    name: str | None = Field(None, description="Personal data: present for the hr role only, null once erased")


class TargetItem(ListedRecord):
    assignee_type: str
    assignee_id: str
    period: str
    amount: str
    kpis: dict
    parent_id: str | None


def _page_model(item: type[BaseModel], example: dict[str, Any]) -> type[BaseModel]:
    return type(f"{item.__name__}Page", (BaseModel,), {
        "__annotations__": {"items": list[item], "next_cursor": str | None},  # type: ignore[valid-type]
        "model_config": ConfigDict(json_schema_extra={"examples": [{"items": [example], "next_cursor": "1042"}]}),
        "__doc__": "A page: `next_cursor` is null on the last one; send it back as `cursor` for the next.",
    })


_STAMPS = {"created_at": "2026-01-05T02:10:00Z", "updated_at": "2026-03-02T08:15:02.113Z", "position": 1042}
PartnerPage = _page_model(PartnerItem, {
    "id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50", "version": 7, "status": "active", **_STAMPS,
    "kind": "enterprise_agent", "name": "Hangzhou Channel Co.", "region": "Zhejiang", "grade": None,
    "commission_rate": None, "parent_partner_id": None, "recruited_by": "5f0c6f3e-8d1a-4f8e-9a65-2b1d4c7e9f10",
    "terminated_on": None})
ContractPage = _page_model(ContractItem, {
    "id": "6f1c2d3e-4f50-4b8e-9a0e-0b7c1f0e3a52", "version": 12, "status": "signed", **_STAMPS,
    "partner_id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50", "partner_kind": "enterprise_agent",
    "starts_on": "2026-01-01", "ends_on": "2026-12-31", "signed_on": "2026-01-01", "last_day_in_force": "2026-12-31",
    "terminated_on": None, "territory": "Zhejiang", "commission": {"type": "flat", "rate": "0.03"},
    "amendments": [{"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.035"}}],
    "fee_rate": None, "exclusive": False, "products": ["router"], "renewals": 0})
EmployeePage = _page_model(EmployeeItem, {
    "id": "5f0c6f3e-8d1a-4f8e-9a65-2b1d4c7e9f10", "version": 3, "status": "regular", **_STAMPS,
    "role": "sales_rep", "hired_on": "2026-01-05", "manager_id": "9a652b1d-4c7e-4f10-8d1a-5f0c6f3e4f8e",
    "login": "li.na", "probation_ends_on": "2026-03-04", "contract_starts_on": "2026-01-05",
    "contract_ends_on": "2027-01-04", "left_on": None, "personal_data_erased": False, "name": "李娜"})
TargetPage = _page_model(TargetItem, {
    "id": "2b1d4c7e-9f10-4f8e-9a65-5f0c6f3e8d1a", "version": 2, "status": "open", **_STAMPS,
    "assignee_type": "employee", "assignee_id": "5f0c6f3e-8d1a-4f8e-9a65-2b1d4c7e9f10", "period": "2026-Q1",
    "amount": "300000.00", "kpis": {"sales_revenue": "0.7", "partner_satisfaction": "0.3"}, "parent_id": None})


# --- reading -----------------------------------------------------------------------------


class _Query:
    """The WHERE clauses of a list, each with its parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def equal(self, column: str, value: Any) -> None:
        if value is not None:
            self.clauses.append(f"{column} = %s")
            self.params.append(value)

    def any_of(self, column: str, values: list[str] | None) -> None:
        if values:
            self.clauses.append(f"{column} = ANY(%s)")
            self.params.append(list(values))


def _page(app: ChannelDepartment, table: str, columns: str, where: _Query,
          page: ListPage) -> tuple[list[dict[str, Any]], str | None]:
    clauses, params = ["created_position > %s", *where.clauses], [cursor_number(page.cursor), *where.params]
    if page.updated_since is not None:
        clauses.append("updated_at >= %s")
        params.append(page.updated_since)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(f"SELECT {columns} FROM {table} WHERE {' AND '.join(clauses)}"  # noqa: S608
                     " ORDER BY created_position LIMIT %s", [*params, page.limit + 1])
        rows = curs.fetchall()
    listed = rows[:page.limit]
    return listed, str(listed[-1]["created_position"]) if len(rows) > page.limit else None


def _item(row: dict[str, Any], key: str, fields: tuple[str, ...]) -> dict[str, Any]:
    return {"id": row[key], "version": row["version"], "status": row["status"],
            **{name: row[name] for name in fields},
            "created_at": row["created_at"], "updated_at": row["updated_at"], "position": row["position"]}


def _answer(items: list[dict[str, Any]], next_cursor: str | None, position: int) -> JSONResponse:
    # Answered as built (plain_json keeps money exact), with the read model's position.
    return JSONResponse({"items": plain_json(items), "next_cursor": next_cursor},
                        headers={"X-Projection-Position": str(position)})


_PARTNER_FIELDS = ("kind", "name", "region", "grade", "commission_rate", "parent_partner_id", "recruited_by",
                   "terminated_on")


@router.get("/v1/partners", response_model=PartnerPage, responses=LIST_ERRORS,
            summary="List partners as they stand, filtered, in the order they applied",
            description="Every reader role. Filters combine (all must hold); a repeated `status`, `kind` or "
                        "`grade` matches any of its values. E.g. `GET /v1/partners?kind=direct_store&grade=A"
                        "&grade=B&status=active&limit=500`. Takes `min_position`/`wait_s` like every read model "
                        "and answers `X-Projection-Position`.")
def list_partners(
    app: Department,
    _: Reader,
    __: Known,
    page: Page,
    status: Annotated[list[PartnerStatus] | None, _any_of("The partner's status")] = None,
    kind: Annotated[list[PartnerKind] | None, _any_of("The partner's kind")] = None,
    region: Annotated[str | None, Query(min_length=1, max_length=200, description="The region, exactly")] = None,
    grade: Annotated[list[Literal["A", "B", "C", "D"]] | None, _any_of("A direct store's grade")] = None,
    parent_partner_id: Annotated[UUID | None, Query(description="Second-tier agents of this partner")] = None,
    recruited_by: Annotated[UUID | None, Query(description="Partners recruited by this employee")] = None,
) -> JSONResponse:
    where = _Query()
    where.any_of("status", status)
    where.any_of("kind", kind)
    where.equal("region", region)
    where.any_of("grade", grade)
    where.equal("parent_partner_id", parent_partner_id)
    where.equal("recruited_by", recruited_by)
    rows, next_cursor = _page(app, "partner_list", "*", where, page)
    return _answer([_item(row, "partner_id", _PARTNER_FIELDS) for row in rows], next_cursor, page.position)


_CONTRACT_FIELDS = ("partner_id", "partner_kind", "starts_on", "ends_on", "signed_on", "last_day_in_force",
                    "terminated_on", "territory", "commission", "amendments", "fee_rate", "exclusive", "products",
                    "renewals")
# As `Contract.last_day_in_force`: ends_on, or the day before a termination's effective date. The
# `in_force_on` filter and the items' `last_day_in_force` (null until signed) both read it from here.
_LAST_DAY_IN_FORCE = "coalesce(terminated_on - 1, ends_on)"
_CONTRACT_COLUMNS = f"*, CASE WHEN signed_on IS NOT NULL THEN {_LAST_DAY_IN_FORCE} END AS last_day_in_force"


@router.get("/v1/contracts", response_model=ContractPage, responses=LIST_ERRORS,
            summary="List contracts as they stand, filtered, in the order they were drafted",
            description="Every reader role. `status` is as GET /v1/contracts/{id} shows it: a signed contract "
                        "past its `ends_on` (company calendar) is `expired`. `in_force_on` keeps the contracts in "
                        "force on that day (signed or terminated, between `starts_on` and `last_day_in_force`). "
                        "E.g. `GET /v1/contracts?partner_kind=enterprise_agent&in_force_on=2026-03-31`.")
def list_contracts(
    app: Department,
    _: Reader,
    __: Known,
    page: Page,
    status: Annotated[list[ContractStatus] | None, _any_of("The contract's status")] = None,
    partner_id: Annotated[UUID | None, Query(description="The contracts of this partner")] = None,
    partner_kind: Annotated[list[PartnerKind] | None, _any_of("Its partner's kind")] = None,
    territory: Annotated[str | None, Query(min_length=1, max_length=200,
                                           description="An enterprise agent's region, exactly")] = None,
    kind: Annotated[list[PartnerKind] | None, _any_of("api.md's name for `partner_kind`")] = None,
    region: Annotated[str | None, Query(min_length=1, max_length=200,
                                        description="api.md's name for `territory`")] = None,
    in_force_on: Annotated[Day | None, Query(description="In force on this day")] = None,
) -> JSONResponse:
    today = company_time.today()
    shown = "CASE WHEN status = 'signed' AND ends_on < %s THEN 'expired' ELSE status END"
    where = _Query()
    if status:
        where.clauses.append(f"({shown}) = ANY(%s)")
        where.params.extend([today, list(status)])
    where.equal("partner_id", partner_id)
    # api.md names the filters of every list `kind` and `region`; a contract's own fields are
    # `partner_kind` and `territory`. Both names are taken, and given together both must hold.
    where.any_of("partner_kind", partner_kind)
    where.any_of("partner_kind", kind)
    where.equal("territory", territory)
    where.equal("territory", region)
    if in_force_on is not None:
        where.clauses.append(f"status IN ('signed', 'terminated') AND starts_on <= %s AND %s <= {_LAST_DAY_IN_FORCE}")
        where.params.extend([in_force_on, in_force_on])
    rows, next_cursor = _page(app, "contract_list", _CONTRACT_COLUMNS, where, page)
    items = [_item({**row, "status": _contract_status(row, today)}, "contract_id", _CONTRACT_FIELDS) for row in rows]
    return _answer(items, next_cursor, page.position)


def _contract_status(row: dict[str, Any], today: date) -> str:
    """As `Contract.display_status`: signed and past its end date is expired."""
    return "expired" if row["status"] == "signed" and today > row["ends_on"] else row["status"]


_EMPLOYEE_FIELDS = ("role", "hired_on", "manager_id", "login", "probation_ends_on", "contract_starts_on",
                    "contract_ends_on", "left_on", "personal_data_erased")
_EMPLOYEE_COLUMNS = ", ".join(("employee_id", "version", "status", *_EMPLOYEE_FIELDS, "created_position", "created_at",
                               "updated_at", "position"))


@router.get("/v1/employees", response_model=EmployeePage, responses=LIST_ERRORS,
            summary="List employees as they stand, filtered, in the order they were hired",
            description="Every reader role. An employee's `name` is personal data: it is in the items for the "
                        "`hr` role only (null once erased), and absent for every other role. "
                        "E.g. `GET /v1/employees?manager_id=…&status=probation&status=regular`.")
def list_employees(
    app: Department,
    reader: Reader,
    __: Known,
    page: Page,
    status: Annotated[list[EmployeeStatus] | None, _any_of("The employee's status")] = None,
    role: Annotated[list[JobRole] | None, _any_of("The employee's job role")] = None,
    manager_id: Annotated[UUID | None, Query(description="Who reports to this employee directly")] = None,
    login: Annotated[str | None, Query(min_length=1, max_length=200,
                                       description="The actor name the employee's tokens carry")] = None,
) -> JSONResponse:
    where = _Query()
    where.any_of("status", status)
    where.any_of("role", role)
    where.equal("manager_id", manager_id)
    where.equal("login", login)
    hr = "hr" in reader.roles
    # The sealed name is read for hr alone: no other reader's answer is built from it.
    rows, next_cursor = _page(app, "employee_list", "*" if hr else _EMPLOYEE_COLUMNS, where, page)
    items = [_item(row, "employee_id", _EMPLOYEE_FIELDS) for row in rows]
    if hr:
        # The page's keys in one query; each name opened in memory (microseconds each).
        names = app.unsealed_values({row["employee_id"]: row["name_sealed"] for row in rows})
        for item, row in zip(items, rows, strict=True):
            item["name"] = names[row["employee_id"]]
    return _answer(items, next_cursor, page.position)


_TARGET_FIELDS = ("assignee_type", "assignee_id", "period", "amount", "kpis", "parent_id")


@router.get("/v1/targets", response_model=TargetPage, responses=LIST_ERRORS,
            summary="List sales targets as they stand, filtered, in the order they were set",
            description="Every reader role. `period` matches exactly (`2026-Q1` is not `2026-03`). "
                        "E.g. `GET /v1/targets?period=2026-Q1&assignee_type=employee&status=open`.")
def list_targets(
    app: Department,
    _: Reader,
    __: Known,
    page: Page,
    status: Annotated[list[TargetStatus] | None, _any_of("The target's status")] = None,
    assignee_type: Annotated[list[Literal["employee", "partner", "team"]] | None, _any_of("Whose target")] = None,
    assignee_id: Annotated[str | None, Query(min_length=1, max_length=200,
                                             description="The employee, partner or team leader")] = None,
    period: Annotated[Period | None, Query()] = None,
    parent_id: Annotated[UUID | None, Query(description="The targets decomposed from this one")] = None,
) -> JSONResponse:
    where = _Query()
    where.any_of("status", status)
    where.any_of("assignee_type", assignee_type)
    where.equal("assignee_id", assignee_id)
    where.equal("period", period)
    where.equal("parent_id", parent_id)
    rows, next_cursor = _page(app, "target_list", "*", where, page)
    return _answer([_item(row, "target_id", _TARGET_FIELDS) for row in rows], next_cursor, page.position)
