"""Housing subsidies granted in one step before 0013 reach the statements: 0013 gave them a
table the commissions read model fills from then on, so grants it had already passed would
never show (`channel_domain.store.backfills.copy_housing_subsidy_grants`)."""

from yoyo import step

from channel_domain.store.backfills import copy_housing_subsidy_grants

__depends__ = {"0013.money"}

steps = [step(copy_housing_subsidy_grants)]
