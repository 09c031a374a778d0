"""The company's clock. The company keeps Beijing time: the day or month in which something
was *recorded* is read in its time zone, never in UTC (domain.md, preamble) — an amendment
recorded at 07:30 on 1 April in Beijing (23:30 UTC on 31 March) belongs to April.

The zone is `CHANNEL_DOMAIN_TIME_ZONE` (an IANA name, default `Asia/Shanghai`), read at each
call so that a process and its tests see the same setting.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from channel_domain.values import month_of

DEFAULT_TIME_ZONE = "Asia/Shanghai"


def time_zone() -> ZoneInfo:
    return ZoneInfo(os.environ.get("CHANNEL_DOMAIN_TIME_ZONE") or DEFAULT_TIME_ZONE)


def local_date(moment: datetime) -> date:
    """The company's calendar day at `moment` (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(time_zone()).date()


def recorded_month(moment: datetime) -> str:
    """The month (`YYYY-MM`) a time recorded at `moment` belongs to."""
    return month_of(local_date(moment))


def today() -> date:
    return local_date(datetime.now(UTC))
