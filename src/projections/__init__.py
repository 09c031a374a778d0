"""Read models built from the event log (commissions, attainment, activity, audit)."""
