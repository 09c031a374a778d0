"""Contract (渠道合作协议): drafted, approved by someone else, signed; then it takes sales.

A contract is in force from `starts_on` to its end (its `ends_on`, moved by renewals, or the
day before a termination takes effect). Amendments change the commission terms from an
effective date that may lie in the past; the terms in force on a sale's date price it.
Amendments and renewals are requested, then approved by someone other than the requester;
until approved they change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.context import current_command
from channel_domain.errors import NotFound, ValidationFailed, refusal
from channel_domain.values import CommissionTerms, money, parse_date, rate, require_text

# 「合作目标、产品及价格政策、权利与义务、支持与服务、期限与终止条件、保密条款」
REQUIRED_CONTENTS = ("goals", "products", "price_policy", "obligations", "support", "confidentiality")


@dataclass(frozen=True)
class PartnerTerms:
    """What a contract needs to know about its partner when it is drafted."""

    partner_id: UUID
    kind: str


class Contract(ChannelAggregate):
    record_name = "contract"
    # The state's shape, for snapshots: 2 holds each order as one string, 3 return ids and the
    # amendment and renewal requests.
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken when each order was a list [amount, returned, sold_on]."""
        state["orders"] = {order: "|".join(line) for order, line in state["orders"].items()}

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot taken before returns carried an id, and when amendments and renewals
        took effect at once."""
        state["return_ids"] = {}
        state["amendment_requests"] = {}
        state["renewal_requests"] = {}

    # Drafting and approval ------------------------------------------------------------

    @classmethod
    def draft(
        cls,
        *,
        partner: PartnerTerms,
        starts_on: date | str,
        ends_on: date | str,
        commission: Any,
        lowest_enterprise_agent_rate: Decimal | None = None,
        territory: str | None = None,
        products: list[str] | None = None,
        price_policy: str | None = None,
        goals: str | None = None,
        obligations: str | None = None,
        support: str | None = None,
        confidentiality: str | None = None,
        fee_rate: Any = None,
        exclusive: bool = False,
        rate_justification: str | None = None,
    ) -> Contract:
        starts, ends = parse_date(starts_on, "starts_on"), parse_date(ends_on, "ends_on")
        if ends < starts:
            raise ValidationFailed("ends_on", "cannot be before starts_on")
        terms = CommissionTerms.parse(commission)
        region = territory.strip() if isinstance(territory, str) and territory.strip() else None
        if partner.kind == "enterprise_agent" and region is None:
            raise ValidationFailed("territory", "an enterprise agent sells inside one region, named here")
        if partner.kind == "sales_agent" and region is not None:
            raise ValidationFailed("territory", "a sales agent has no region limit")
        consignee_fee: Decimal | None = None
        if partner.kind == "consignee":
            if fee_rate is None:
                raise ValidationFailed("fee_rate", "a consignee contract carries a fee rate")
            consignee_fee = rate(fee_rate, "fee_rate")
        elif fee_rate is not None:
            raise ValidationFailed("fee_rate", "only consignee contracts carry a fee rate")
        if products is not None and (
            not isinstance(products, list) or not all(isinstance(p, str) and p.strip() for p in products)
        ):
            raise ValidationFailed("products", "a list of product names")
        justification = rate_justification.strip() if rate_justification and rate_justification.strip() else None
        _check_sales_agent_rate(partner.kind, terms, lowest_enterprise_agent_rate, justification)
        return cls(
            partner_id=partner.partner_id,
            partner_kind=partner.kind,
            starts_on=starts,
            ends_on=ends,
            commission=terms.as_dict(),
            territory=region,
            products=products,
            price_policy=price_policy,
            goals=goals,
            obligations=obligations,
            support=support,
            confidentiality=confidentiality,
            fee_rate=consignee_fee,
            exclusive=bool(exclusive),
            rate_justification=justification,
            drafted_by=current_command().actor,
        )

    def submit(self) -> None:
        self._require_status("submit", "draft")
        missing = [name for name in REQUIRED_CONTENTS if not getattr(self, name)]
        if missing:
            raise refusal(
                "incomplete_contract",
                f"a contract states its {', '.join(missing)} before it is submitted",
                missing=missing,
            )
        self._submitted(submitted_by=current_command().actor)

    def approve(self) -> None:
        # Segregation of duties (403) before the contract's state (422), as api.md orders them.
        approver = self._require_other_actor(
            "approve", drafted=self.drafted_by, submitted=self.submitted_by
        )
        self._require_status("approve", "submitted")
        self._approved(approved_by=approver)

    def sign(self, signed_on: date | str) -> None:
        self._require_status("sign", "approved")
        self._signed(signed_on=parse_date(signed_on, "signed_on"))

    # While in force -------------------------------------------------------------------

    def request_amendment(
        self,
        effective_on: date | str,
        commission: Any,
        reason: str | None = None,
        lowest_enterprise_agent_rate: Decimal | None = None,
        rate_justification: str | None = None,
    ) -> UUID:
        """New commission terms from `effective_on`, which take effect once approved."""
        day = parse_date(effective_on, "effective_on")
        terms = CommissionTerms.parse(commission)
        justification = (rate_justification or "").strip() or None
        self._check_amendment(day, terms, justification, lowest_enterprise_agent_rate)
        amendment_id = uuid.uuid4()
        self._amendment_requested(
            amendment_id=amendment_id,
            effective_on=day,
            commission=terms.as_dict(),
            reason=reason,
            rate_justification=justification,
            requested_by=current_command().actor,
        )
        return amendment_id

    def amendment_request(self, amendment_id: UUID) -> dict[str, Any]:
        """A requested amendment: effective_on, commission, reason, rate_justification,
        requested_by, status (requested, approved or rejected)."""
        request = self.amendment_requests.get(str(amendment_id))
        if request is None:
            raise NotFound(f"no amendment {amendment_id} on this contract")
        return request

    def approve_amendment(
        self,
        amendment_id: UUID,
        preview_digest: str,
        price: Callable[[date, CommissionTerms], Any],
        lowest_enterprise_agent_rate: Decimal | None = None,
    ) -> None:
        """Approves the preview the approver saw: `price(effective_on, terms)` prices the
        amendment on the ledger as it stands now (an `AmendmentPreview`); when its digest is
        not `preview_digest`, the ledger has moved and the approval is refused."""
        request = self._pending("approve", self.amendment_requests, amendment_id, "amendment")
        approver = current_command().actor
        day, terms = request["effective_on"], CommissionTerms.parse(request["commission"])
        self._check_amendment(day, terms, request["rate_justification"], lowest_enterprise_agent_rate)
        preview = price(day, terms)
        if preview.digest != require_text(preview_digest, "preview_digest"):
            # The fresh digest is not handed out: approving figures means having seen them, so
            # the approver reads the new preview (GET …/preview) before approving again.
            raise refusal(
                "preview_stale",
                "the ledger has moved since that preview: the amendment would now book other figures;"
                " read the preview again and approve what it shows",
            )
        self._amended(
            effective_on=day,
            commission=request["commission"],
            reason=request["reason"],
            amendment_id=amendment_id,
            approved_by=approver,
            preview_digest=preview.digest,
        )

    def reject_amendment(self, amendment_id: UUID, reason: str) -> None:
        self._pending("reject", self.amendment_requests, amendment_id, "amendment")
        self._amendment_rejected(
            amendment_id=amendment_id, reason=require_text(reason, "reason"), rejected_by=current_command().actor
        )

    def _check_amendment(
        self, day: date, terms: CommissionTerms, justification: str | None, lowest_enterprise_rate: Decimal | None
    ) -> None:
        self._require_status("amend", "signed")
        if not self.starts_on <= day <= self.last_day_in_force:
            raise refusal(
                "outside_contract_term",
                f"the contract runs from {self.starts_on} to {self.last_day_in_force}",
            )
        _check_sales_agent_rate(
            self.partner_kind, terms, lowest_enterprise_rate, justification or self.rate_justification
        )

    def _pending(self, action: str, requests: dict[str, dict[str, Any]], request_id: UUID, what: str) -> dict[str, Any]:
        """A request that exists (404), was made by someone else (403) and is undecided (422)."""
        request = requests.get(str(request_id))
        if request is None:
            raise NotFound(f"no {what} {request_id} on this contract")
        self._require_other_actor(action, requested=request["requested_by"])
        if request["status"] != "requested":
            raise refusal("invalid_transition", f"the {what} is already {request['status']}",
                          status=request["status"], action=action)
        return request

    def terminate(self, effective_on: date | str, reason: str) -> None:
        self._require_status("terminate", "signed")
        day = parse_date(effective_on, "effective_on")
        if not self.starts_on <= day <= self.ends_on:
            raise refusal("outside_contract_term", f"the contract runs from {self.starts_on} to {self.ends_on}")
        if self.latest_sale_on is not None and self.latest_sale_on >= day:
            raise refusal(
                "sales_after_termination",
                f"a sale on {self.latest_sale_on} is recorded; terminate after it",
            )
        self._terminated(effective_on=day, reason=require_text(reason, "reason"))

    def request_renewal(self, ends_on: date | str) -> UUID:
        """A new end date, which takes effect once approved."""
        day = parse_date(ends_on, "ends_on")
        self._check_renewal(day)
        renewal_id = uuid.uuid4()
        self._renewal_requested(renewal_id=renewal_id, ends_on=day, requested_by=current_command().actor)
        return renewal_id

    def approve_renewal(self, renewal_id: UUID) -> None:
        request = self._pending("approve", self.renewal_requests, renewal_id, "renewal")
        approver = current_command().actor
        self._check_renewal(request["ends_on"])
        self._renewed(ends_on=request["ends_on"], renewal_id=renewal_id, approved_by=approver)

    def reject_renewal(self, renewal_id: UUID, reason: str) -> None:
        self._pending("reject", self.renewal_requests, renewal_id, "renewal")
        self._renewal_rejected(
            renewal_id=renewal_id, reason=require_text(reason, "reason"), rejected_by=current_command().actor
        )

    def _check_renewal(self, day: date) -> None:
        self._require_status("renew", "signed")
        if day <= self.ends_on:
            raise ValidationFailed("ends_on", f"a renewal extends the contract beyond {self.ends_on}")

    def record_sale(
        self,
        order_id: str,
        amount: Any,
        sold_on: date | str,
        product: str | None = None,
        region: str | None = None,
        employee_id: UUID | None = None,
    ) -> None:
        order = require_text(order_id, "order_id")
        value = money(amount)
        day = parse_date(sold_on, "sold_on")
        if not self.is_in_force_on(day):
            raise refusal("contract_not_in_force", f"the contract is not in force on {day}")
        # A sale that names no product is taken: the contract's list limits what is named.
        if self.products and product is not None and product not in self.products:
            raise refusal(
                "product_not_in_contract",
                f"{product} is not among this contract's products ({', '.join(self.products)})",
                products=self.products,
            )
        if self.partner_kind == "enterprise_agent":
            if not region:
                raise ValidationFailed("region", "an enterprise agent's sale names its region")
            if region != self.territory:
                raise refusal(
                    "outside_territory",
                    f"this enterprise agent sells in {self.territory}, not {region}",
                    territory=self.territory,
                )
        if order in self.orders:
            raise refusal("duplicate_order", f"order {order} is already recorded on this contract")
        self._sold(order_id=order, amount=value, sold_on=day, product=product, region=region, employee_id=employee_id)

    def record_return(
        self, order_id: str, amount: Any, returned_on: date | str, return_id: str | None = None
    ) -> None:
        self._require_status("take a return on", "signed", "terminated")
        order_key = require_text(order_id, "order_id")
        return_key = None if return_id is None else require_text(return_id, "return_id")
        if return_key is not None and return_key in self.return_ids:
            raise refusal(
                "duplicate_return",
                f"return {return_key} is already recorded on this contract",
                order_id=self.return_ids[return_key],
            )
        if order_key not in self.orders:
            raise refusal("unknown_order", f"no order {order_id} on this contract")
        sold, returned, sold_on = self.order_line(order_key)
        value = money(amount)
        day = parse_date(returned_on, "returned_on")
        if day < sold_on:
            raise ValidationFailed("returned_on", "a return cannot precede its sale")
        left = sold - returned
        if value > left:
            raise refusal("return_exceeds_order", f"only {left} of order {order_id} is left to return", left=str(left))
        self._returned(order_id=order_key, amount=value, returned_on=day, return_id=return_key)

    # Queries --------------------------------------------------------------------------

    def order_line(self, order_id: str) -> tuple[Decimal, Decimal, date]:
        """An order's amount, amount returned so far, and sale date."""
        amount, returned, sold_on = self.orders[order_id].split("|")
        return Decimal(amount), Decimal(returned), date.fromisoformat(sold_on)

    @property
    def last_day_in_force(self) -> date:
        if self.terminated_on is not None:
            return self.terminated_on - timedelta(days=1)
        return self.ends_on

    def is_in_force_on(self, day: date) -> bool:
        return self.status in ("signed", "terminated") and self.starts_on <= day <= self.last_day_in_force

    def terms_on(self, day: date) -> CommissionTerms:
        in_force = self.commission
        for effective_on, terms in self.amendments:
            if effective_on <= day:
                in_force = terms
        return CommissionTerms.parse(in_force)

    def display_status(self, today: date) -> str:
        if self.status == "signed" and today > self.ends_on:
            return "expired"
        return self.status

    # Events ---------------------------------------------------------------------------

    @event("Drafted")
    def __init__(
        self,
        partner_id: UUID,
        partner_kind: str,
        starts_on: date,
        ends_on: date,
        commission: dict[str, Any],
        territory: str | None,
        products: list[str] | None,
        price_policy: str | None,
        goals: str | None,
        obligations: str | None,
        support: str | None,
        confidentiality: str | None,
        fee_rate: Decimal | None,
        exclusive: bool,
        rate_justification: str | None,
        drafted_by: str,
    ) -> None:
        self.partner_id = partner_id
        self.partner_kind = partner_kind
        self.starts_on = starts_on
        self.ends_on = ends_on
        self.commission = commission
        self.territory = territory
        self.products = products
        self.price_policy = price_policy
        self.goals = goals
        self.obligations = obligations
        self.support = support
        self.confidentiality = confidentiality
        self.fee_rate = fee_rate
        self.exclusive = exclusive
        self.rate_justification = rate_justification
        self.drafted_by = drafted_by
        self.submitted_by: str | None = None
        self.approved_by: str | None = None
        self.signed_on: date | None = None
        self.status = "draft"
        self.amendments: list[list[Any]] = []  # [effective_on, terms], in recording order
        # Requests by id (str): their fields, requested_by and status (requested/approved/rejected).
        self.amendment_requests: dict[str, dict[str, Any]] = {}
        self.renewal_requests: dict[str, dict[str, Any]] = {}
        self.terminated_on: date | None = None
        self.renewals = 0
        # order id -> "amount|returned|sold_on": enough to refuse duplicates and over-returns,
        # and compact, so the snapshot of a contract with 10 000 orders decodes without a JSON
        # object hook per order. One string, not a list (snapshots before class version 2):
        # Python's cycle collector never tracks a string, and with a hundred thousand orders
        # held in memory each full collection of lists paused the server 100-360 ms.
        self.orders: dict[str, str] = {}
        self.gross_sales = Decimal("0.00")
        self.returns_total = Decimal("0.00")
        self.latest_sale_on: date | None = None
        self.return_ids: dict[str, str] = {}  # return id -> its order id

    @event("Submitted")
    def _submitted(self, submitted_by: str) -> None:
        self.status = "submitted"
        self.submitted_by = submitted_by

    @event("Approved")
    def _approved(self, approved_by: str) -> None:
        self.status = "approved"
        self.approved_by = approved_by

    @event("Signed")
    def _signed(self, signed_on: date) -> None:
        self.status = "signed"
        self.signed_on = signed_on

    @event("AmendmentRequested")
    def _amendment_requested(
        self,
        amendment_id: UUID,
        effective_on: date,
        commission: dict[str, Any],
        reason: str | None,
        rate_justification: str | None,
        requested_by: str,
    ) -> None:
        self.amendment_requests[str(amendment_id)] = {
            "effective_on": effective_on,
            "commission": commission,
            "reason": reason,
            "rate_justification": rate_justification,
            "requested_by": requested_by,
            "status": "requested",
        }

    class Amended(ChannelAggregate.Event):
        """Terms changed from `effective_on`. Version 2 names the approved request."""

        class_version = 2
        effective_on: date
        commission: dict[str, Any]
        reason: str | None
        amendment_id: UUID | None
        approved_by: str | None
        preview_digest: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Recorded when an amendment took effect at once, unrequested and unapproved."""
            state.update(amendment_id=None, approved_by=None, preview_digest=None)

    @event(Amended)
    def _amended(
        self,
        effective_on: date,
        commission: dict[str, Any],
        reason: str | None,
        amendment_id: UUID | None,
        approved_by: str | None,
        preview_digest: str | None,
    ) -> None:
        self.amendments.append([effective_on, commission])
        self.amendments.sort(key=lambda amendment: amendment[0])
        if amendment_id is not None:
            self.amendment_requests[str(amendment_id)]["status"] = "approved"

    @event("AmendmentRejected")
    def _amendment_rejected(self, amendment_id: UUID, reason: str, rejected_by: str) -> None:
        self.amendment_requests[str(amendment_id)]["status"] = "rejected"

    @event("Terminated")
    def _terminated(self, effective_on: date, reason: str) -> None:
        self.status = "terminated"
        self.terminated_on = effective_on

    @event("RenewalRequested")
    def _renewal_requested(self, renewal_id: UUID, ends_on: date, requested_by: str) -> None:
        self.renewal_requests[str(renewal_id)] = {"ends_on": ends_on, "requested_by": requested_by, "status": "requested"}

    class Renewed(ChannelAggregate.Event):
        """A new end date. Version 2 names the approved request."""

        class_version = 2
        ends_on: date
        renewal_id: UUID | None
        approved_by: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Recorded when a renewal took effect at once, unrequested and unapproved."""
            state.update(renewal_id=None, approved_by=None)

    @event(Renewed)
    def _renewed(self, ends_on: date, renewal_id: UUID | None, approved_by: str | None) -> None:
        self.ends_on = ends_on
        self.renewals += 1
        if renewal_id is not None:
            self.renewal_requests[str(renewal_id)]["status"] = "approved"

    @event("RenewalRejected")
    def _renewal_rejected(self, renewal_id: UUID, reason: str, rejected_by: str) -> None:
        self.renewal_requests[str(renewal_id)]["status"] = "rejected"

    @event("SaleRecorded")
    def _sold(
        self,
        order_id: str,
        amount: Decimal,
        sold_on: date,
        product: str | None,
        region: str | None,
        employee_id: UUID | None,
    ) -> None:
        self.orders[order_id] = f"{amount}|0.00|{sold_on.isoformat()}"
        self.gross_sales += amount
        if self.latest_sale_on is None or sold_on > self.latest_sale_on:
            self.latest_sale_on = sold_on

    @event("ReturnRecorded")
    def _returned(self, order_id: str, amount: Decimal, returned_on: date, return_id: str | None = None) -> None:
        if return_id is not None:  # returns recorded before ids existed carry none
            self.return_ids[return_id] = order_id
        sold, returned, sold_on = self.orders[order_id].split("|")
        self.orders[order_id] = f"{sold}|{Decimal(returned) + amount}|{sold_on}"
        self.returns_total += amount


def _check_sales_agent_rate(
    kind: str, terms: CommissionTerms, lowest_enterprise_rate: Decimal | None, justification: str | None
) -> None:
    """A sales agent's rate is normally lower than enterprise agents' (domain.md §1)."""
    if kind != "sales_agent" or lowest_enterprise_rate is None or justification:
        return
    if terms.highest_rate >= lowest_enterprise_rate:
        raise refusal(
            "rate_justification_required",
            f"a sales agent rate of {terms.highest_rate} is not below the lowest active "
            f"enterprise-agent rate {lowest_enterprise_rate}: state a rate_justification",
            lowest_enterprise_agent_rate=str(lowest_enterprise_rate),
        )
