"""Each employee's current labour contract and whether it has been reviewed, for the December
review finding."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.employee import Employee, contract_end
from projections.audit import event_id
from projections.handled import Handles

_LEFT = {
    "ProbationFailed": "probation_failed",
    "Dismissed": "dismissed",
    "DismissalApproved": "dismissed",
    "Separated": "separated",
}

# Every class the chain in `apply` matches.
_HANDLES = Handles((Employee.Hired, Employee.ContractReviewed), names={"Regularized", *_LEFT})  # type: ignore[attr-defined]


class EmployeeContracts:
    name = "employee_contracts"
    weight = 0.05  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = ("employee_contracts",)

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        for notification, event in events:
            if not _HANDLES(event):
                continue
            source = (notification.id, event_id(notification.originator_id, notification.originator_version))
            kind = type(event).__name__
            if isinstance(event, Employee.Hired):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO employee_contracts (employee_id, status, hired_on, contract_starts_on,"
                    " contract_ends_on, position, event_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (event.originator_id, "probation" if event.probation_months else "regular", event.hired_on,
                     event.hired_on, contract_end(event.hired_on, event.contract_months), *source),
                )
            elif isinstance(event, Employee.ContractReviewed):  # type: ignore[attr-defined]
                if event.decision == "renew":
                    # The renewal starts the day after the reviewed contract ends, with the same
                    # arithmetic as the aggregate's; it has not been reviewed yet.
                    cursor.execute("SELECT contract_ends_on FROM employee_contracts WHERE employee_id = %s",
                                   (event.originator_id,))
                    starts_on = cursor.fetchone()["contract_ends_on"] + timedelta(days=1)
                    cursor.execute(
                        "UPDATE employee_contracts SET contract_starts_on = %s, contract_ends_on = %s,"
                        " reviewed_on = NULL, position = %s, event_id = %s WHERE employee_id = %s",
                        (starts_on, contract_end(starts_on, event.contract_months), *source, event.originator_id),
                    )
                else:
                    cursor.execute(
                        "UPDATE employee_contracts SET reviewed_on = %s, position = %s, event_id = %s"
                        " WHERE employee_id = %s",
                        (event.on, *source, event.originator_id),
                    )
            elif kind == "Regularized" or kind in _LEFT:
                cursor.execute(
                    "UPDATE employee_contracts SET status = %s, position = %s, event_id = %s WHERE employee_id = %s",
                    (_LEFT.get(kind, "regular"), *source, event.originator_id),
                )
