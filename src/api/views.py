"""Records as JSON: money and rates as decimal strings, dates ISO, ids as strings."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.tokens import Principal
from channel_domain import company_time
from channel_domain.aggregate import ChannelAggregate
from channel_domain.application import ChannelDepartment, HistoryEntry
from channel_domain.commission_dispute import CommissionDispute
from channel_domain.commission_period import CommissionPeriod
from channel_domain.contract import Contract
from channel_domain.employee import PERSONAL_FIELDS, Employee
from channel_domain.partner import Partner
from channel_domain.sales_target import SalesTarget
from channel_domain.values import plain_json


def employee_view(app: ChannelDepartment, employee: Employee, viewer: Principal) -> dict[str, Any]:
    state = {
        "status": employee.status,
        "role": employee.role,
        "hired_on": employee.hired_on,
        "manager_id": employee.manager_id,
        "probation_months": employee.probation_months,
        "probation_ends_on": employee.probation_ends_on,
        "contract_starts_on": employee.contract_starts_on,
        "contract_ends_on": employee.contract_ends_on,
        "consecutive_fixed_terms": employee.consecutive_fixed_terms,
        "renewal_decision": employee.renewal_decision,
        "evaluations": employee.evaluations,
        "highest_warning": employee.highest_warning,
        "dereliction": employee.dereliction,
        "left_on": employee.left_on,
        "login": employee.login,
        "separation_reason": employee.separation_reason,
        "employment_ends_on": employee.employment_ends_on,
        "erasable_from": employee.erasable_from,
        "dismissal_proposals": employee.dismissal_proposals,
        "personal_data_erased": employee.personal_data_erased,
    }
    if "hr" in viewer.roles:
        state.update(app.personal_data(employee))  # None for each field once erased
    return state


def partner_view(_app: ChannelDepartment, partner: Partner, _: Principal) -> dict[str, Any]:
    return {
        "status": partner.status,
        "kind": partner.kind,
        "name": partner.name,
        "region": partner.region,
        "grade": partner.grade,
        "minimum_monthly_visits": partner.minimum_monthly_visits,
        "commission_rate": partner.commission_rate,
        "parent_partner_id": partner.parent_partner_id,
        "recruited_by": partner.recruited_by,
        "terminated_on": partner.terminated_on,
        "suspensions": [{"from": start, "until": until} for start, until in partner.suspensions],
        "documents": partner.documents,
        "corrective_plans": partner.corrective_plans,
        "stock": partner.stock,
        "visits": partner.visits,
        "evaluations": partner.evaluations,
        "complaints": partner.complaints,
        "deposit": {
            "paid": partner.deposit_paid,
            "refunded": partner.deposit_refunded,
            "held": partner.deposit_paid - partner.deposit_refunded,
        },
        "payout_account": partner.payout_account,
        "payout_account_changes": partner.account_changes,
        "housing_subsidies": partner.housing_subsidies,
        "remittances": partner.remittances,
        "deals": partner.deals,
        "payouts": partner.payouts,
    }


def contract_view(_app: ChannelDepartment, contract: Contract, _: Principal) -> dict[str, Any]:
    return {
        "status": contract.display_status(company_time.today()),
        "partner_id": contract.partner_id,
        "partner_kind": contract.partner_kind,
        "starts_on": contract.starts_on,
        "ends_on": contract.ends_on,
        "last_day_in_force": contract.last_day_in_force if contract.signed_on else None,
        "signed_on": contract.signed_on,
        "commission": contract.commission,
        "amendments": [{"effective_on": day, "commission": terms} for day, terms in contract.amendments],
        # Requests with their decision, so an approver finds what waits for them.
        "amendment_requests": [{"amendment_id": request_id, **request}
                               for request_id, request in contract.amendment_requests.items()],
        "renewal_requests": [{"renewal_id": request_id, **request}
                             for request_id, request in contract.renewal_requests.items()],
        "territory": contract.territory,
        "products": contract.products,
        "price_policy": contract.price_policy,
        "goals": contract.goals,
        "obligations": contract.obligations,
        "support": contract.support,
        "confidentiality": contract.confidentiality,
        "fee_rate": contract.fee_rate,
        "exclusive": contract.exclusive,
        "rate_justification": contract.rate_justification,
        "drafted_by": contract.drafted_by,
        "approved_by": contract.approved_by,
        "renewals": contract.renewals,
        "orders": len(contract.orders),
        "gross_sales": contract.gross_sales,
        "returns": contract.returns_total,
    }


def target_view(_app: ChannelDepartment, target: SalesTarget, _: Principal) -> dict[str, Any]:
    return {
        "status": target.status,
        "assignee_type": target.assignee_type,
        "assignee_id": target.assignee_id,
        "period": target.period,
        "amount": target.amount,
        "kpis": target.kpis,
        "parent_id": target.parent_id,
        "children": target.children,
        "allocated": target.allocated,
        "revisions": target.revisions,
        "kpi_goals": target.kpi_goals,
        "kpi_results": target.kpi_results,
        "results_entered_by": target.results_entered_by,
        "set_by": target.set_by,
    }


def commission_period_view(_app: ChannelDepartment, period: CommissionPeriod, _: Principal) -> dict[str, Any]:
    return {
        "status": period.status,
        "period": period.period,
        "closed_at": period.created_on,
        "closed_by": period.closed_by,
        "closed_with": period.period,
        "closes_after": period.closes_after,
    }


def commission_dispute_view(_app: ChannelDepartment, dispute: CommissionDispute, _: Principal) -> dict[str, Any]:
    return {
        "status": dispute.status,
        "dispute_id": dispute.id,
        "partner_id": dispute.partner_id,
        "period": dispute.period,
        "line_position": dispute.line_position,
        "line_no": dispute.line_no,
        "line_event_id": dispute.line_event_id,
        "line_kind": dispute.line_kind,
        "line_commission": dispute.line_commission,
        "contract_id": dispute.contract_id,
        "reason": dispute.reason,
        "raised_by": dispute.raised_by,
        "raised_at": dispute.created_on,
        "outcome": dispute.outcome,
        "note": dispute.note,
        "amount": dispute.amount,
        "resolved_by": dispute.resolved_by,
        "resolved_at": dispute.modified_on if dispute.outcome is not None else None,
    }


VIEWS = {Employee: employee_view, Partner: partner_view, Contract: contract_view, SalesTarget: target_view,
         CommissionPeriod: commission_period_view, CommissionDispute: commission_dispute_view}


def record_view(app: ChannelDepartment, record: ChannelAggregate, viewer: Principal) -> dict[str, Any]:
    state = VIEWS[type(record)](app, record, viewer)  # type: ignore[operator]
    return plain_json({"id": record.id, "version": record.version, **state})


def history_view(app: ChannelDepartment, entry: HistoryEntry, viewer: Principal, record_id: UUID) -> dict[str, Any]:
    data = entry.data
    # Only an employee's fields are a person's: a partner's `name` is a company's.
    if entry.type.partition(".")[0] == Employee.__name__ and PERSONAL_FIELDS & data.keys():
        if "hr" in viewer.roles:
            data = app.unsealed(record_id, data)
        else:
            data = {k: v for k, v in data.items() if k not in PERSONAL_FIELDS}
    return plain_json({
        "position": entry.position,
        "version": entry.version,
        "type": entry.type,
        "recorded_at": entry.recorded_at,
        "effective_on": entry.effective_on,
        "actor": entry.actor,
        "roles": entry.roles,
        "correlation_id": entry.correlation_id,
        "causation_id": entry.causation_id,
        "data": data,
    })
