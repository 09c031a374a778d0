"""The partner reports' read model (issue 16; docs/partner-reports.md): each partner's lifecycle
as dated status changes, its inventory reports line by line, the payout register (commission
payouts and housing subsidies, who did each step and when), and evaluations with corrective plans.

Everything comes from the Partner events, read as recorded: a status change holds from the
business date the event names (a suspension's `on`, a contract's `signed_on` …), and from the
company-calendar day it was recorded when it names none (applications and reviews) — the day
`target_recruitments` counts an approval on, so the recruiter rows agree with the `new_partners`
KPI. A status never holds from a day before the status it follows (`effective_on` is clamped),
so the status on any day is the last change dated on or before it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.company_time import local_date
from channel_domain.partner import Partner
from channel_domain.values import Period, plain_json
from projections.audit import event_id
from projections.handled import Handles

PAYOUT_STEPS = {
    Partner.PayoutPrepared: ("commission", "prepared"),  # type: ignore[attr-defined]
    Partner.PayoutVerified: ("commission", "verified"),  # type: ignore[attr-defined]
    Partner.PayoutApproved: ("commission", "approved"),  # type: ignore[attr-defined]
    Partner.PayoutPaid: ("commission", "paid"),  # type: ignore[attr-defined]
    Partner.HousingSubsidyGranted: ("housing_subsidy", "prepared"),  # one step before issue 13: read as prepared
    Partner.HousingSubsidyPrepared: ("housing_subsidy", "prepared"),  # type: ignore[attr-defined]
    Partner.HousingSubsidyVerified: ("housing_subsidy", "verified"),  # type: ignore[attr-defined]
    Partner.HousingSubsidyApproved: ("housing_subsidy", "approved"),  # type: ignore[attr-defined]
    Partner.HousingSubsidyPaid: ("housing_subsidy", "paid"),  # type: ignore[attr-defined]
}
LIFECYCLE = (
    Partner.Reviewed,  # type: ignore[attr-defined]
    Partner.Activated,  # type: ignore[attr-defined]
    Partner.Suspended,
    Partner.Reinstated,
    Partner.Terminated,  # type: ignore[attr-defined]
)

# Every class the chain in `apply` matches.
_HANDLES = Handles((Partner.Applied, *LIFECYCLE, Partner.InventoryReported, Partner.Evaluated,  # type: ignore[attr-defined]
                    Partner.CorrectivePlanRecorded, Partner.CorrectivePlanClosed),  # type: ignore[attr-defined]
                   exact=PAYOUT_STEPS)


class PartnerReports:
    name = "partner_reports"
    weight = 0.2  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = ("report_partners", "report_partner_transitions", "report_inventory_lines", "report_payouts",
              "report_evaluations", "report_corrective_plans")

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        for notification, event in events:
            if not _HANDLES(event):
                continue
            source = (notification.id, event_id(notification.originator_id, notification.originator_version))
            if isinstance(event, Partner.Applied):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO report_partners (partner_id, kind, name, recruited_by, position, event_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (event.originator_id, event.kind, event.name, event.recruited_by, *source),
                )
                day = local_date(event.timestamp)
                self._transition(cursor, source, event, "applied", "applied", day, partner=(event.kind,
                                                                                           event.recruited_by, None))
            elif isinstance(event, LIFECYCLE):
                self._lifecycle(cursor, source, event)
            elif type(event) in PAYOUT_STEPS:
                self._payout_step(cursor, source, event, *PAYOUT_STEPS[type(event)])
            elif isinstance(event, Partner.InventoryReported):  # type: ignore[attr-defined]
                cursor.executemany(
                    "INSERT INTO report_inventory_lines (position, product, event_id, partner_id, report_date, opening,"
                    " received, sold, closing, correction_reason, recorded_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(source[0], line["product"], source[1], event.originator_id, event.as_of, line["opening"],
                      line["received"], line["sold"], line["closing"], event.correction_reason, event.timestamp)
                     for line in event.lines],
                )
            elif isinstance(event, Partner.Evaluated):  # type: ignore[attr-defined]
                period = Period.parse(event.period)
                cursor.execute(
                    "INSERT INTO report_evaluations (position, event_id, partner_id, period, starts_on, ends_on,"
                    " scores, score_total, kpis, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (*source, event.originator_id, period.text, period.starts_on, period.ends_on,
                     json.dumps(plain_json(event.scores)), sum(event.scores.values()), len(event.scores),
                     event.timestamp),
                )
            elif isinstance(event, Partner.CorrectivePlanRecorded):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO report_corrective_plans (plan_id, partner_id, actions, due_on, status, recorded_at,"
                    " position, event_id) VALUES (%s, %s, %s, %s, 'open', %s, %s, %s)",
                    (event.plan_id, event.originator_id, json.dumps(list(event.actions)), event.due_on,
                     event.timestamp, *source),
                )
            elif isinstance(event, Partner.CorrectivePlanClosed):  # type: ignore[attr-defined]
                cursor.execute(
                    "UPDATE report_corrective_plans SET status = %s, closed_at = %s WHERE plan_id = %s",
                    (event.outcome, event.timestamp, event.plan_id),
                )

    def _lifecycle(self, cursor: Any, source: tuple, event: Any) -> None:
        cursor.execute(
            "SELECT p.kind, p.recruited_by, (SELECT t.effective_on FROM report_partner_transitions t"
            " WHERE t.partner_id = p.partner_id ORDER BY t.position DESC LIMIT 1) AS since"
            " FROM report_partners p WHERE p.partner_id = %s",
            (event.originator_id,),
        )
        row = cursor.fetchone()
        if row is None:
            return  # a partner this model never saw apply
        partner = (row["kind"], row["recruited_by"], row["since"])
        recorded_on = local_date(event.timestamp)
        if isinstance(event, Partner.Reviewed):  # type: ignore[attr-defined]
            if event.decision == "reject":
                self._transition(cursor, source, event, "rejected", "rejected", recorded_on, partner)
            else:  # a broker has no contract to wait for: approval makes it active (domain.md §1)
                status = "active" if row["kind"] == "broker" else "approved"
                self._transition(cursor, source, event, "approved", status, recorded_on, partner)
        elif isinstance(event, Partner.Activated):  # type: ignore[attr-defined]
            self._transition(cursor, source, event, "activated", "active", event.signed_on, partner)
        elif isinstance(event, Partner.Suspended):
            self._transition(cursor, source, event, "suspended", "suspended", event.on, partner)
        elif isinstance(event, Partner.Reinstated):
            self._transition(cursor, source, event, "reinstated", "active", event.on, partner)
        else:
            self._transition(cursor, source, event, "terminated", "terminated", event.on, partner)

    @staticmethod
    def _transition(cursor: Any, source: tuple, event: Any, transition: str, status: str, on: date,
                    partner: tuple[str, Any, date | None]) -> None:
        kind, recruited_by, since = partner
        cursor.execute(
            "INSERT INTO report_partner_transitions (position, event_id, partner_id, kind, transition, status,"
            " recorded_at, recorded_on, effective_on, recruited_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (*source, event.originator_id, kind, transition, status, event.timestamp, local_date(event.timestamp),
             on if since is None else max(on, since), recruited_by),
        )

    @staticmethod
    def _payout_step(cursor: Any, source: tuple, event: Any, kind: str, step: str) -> None:
        key = (event.originator_id, event.period, kind)
        if step == "prepared":
            cursor.execute(
                "INSERT INTO report_payouts (partner_id, period, kind, amount, account, status, prepared_by,"
                " prepared_at, position, event_id) VALUES (%s, %s, %s, %s, %s, 'prepared', %s, %s, %s, %s)",
                (*key, event.amount, getattr(event, "account", None), event.actor, event.timestamp, *source),
            )
        elif step == "paid":
            cursor.execute(
                "UPDATE report_payouts SET status = 'paid', paid_by = %s, paid_at = %s, paid_on = %s,"
                " account = coalesce(%s, account), position = %s, event_id = %s"
                " WHERE partner_id = %s AND period = %s AND kind = %s",
                (event.actor, event.timestamp, event.paid_on, getattr(event, "account", None), *source, *key),
            )
        else:
            cursor.execute(
                f"UPDATE report_payouts SET status = %s, {step}_by = %s, {step}_at = %s, position = %s,"  # noqa: S608
                " event_id = %s WHERE partner_id = %s AND period = %s AND kind = %s",
                (step, event.actor, event.timestamp, *source, *key),
            )
