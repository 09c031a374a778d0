"""Read models built from the event log (commissions, attainment, activity, audit, record lists, reports).

Each projection is a plain object with a `name` and `apply(cursor, events)`; the runner in
`channel_domain.store.projecting` commits its writes with its checkpoint.
"""

from projections.activity import PartnerActivity
from projections.attainment import TargetAttainment
from projections.audit import AuditTrail
from projections.commissions import Commissions
from projections.employees import EmployeeContracts
from projections.merkle import AuditMerkle
from projections.partner_reports import PartnerReports
from projections.records import RecordLists
from projections.sales_reports import SalesReports
from projections.seals import AuditSeals


def all_projections() -> list:
    return [AuditTrail(), PartnerActivity(), TargetAttainment(), EmployeeContracts(), Commissions(), RecordLists(),
            SalesReports(), PartnerReports(), AuditSeals(), AuditMerkle()]
