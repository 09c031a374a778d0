"""How every report answers (api.md "Lists and reports"): JSON by default, CSV on
`Accept: text/csv` or `?format=csv`, one row per item, money as plain decimals.

Both forms are streamed from the rows as they are read, so a year of sales costs the server
one row in memory, not the whole answer, and a client starts reading before the last row is
found. The headers (`X-Projection-Position` above all) are fixed before the first byte.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import allowed
from api.models import Period
from api.tokens import Principal
from channel_domain.values import json_default

# api.md "Lists and reports": the roles that read every report.
Reader = Annotated[Principal, Depends(allowed("reporting", "channel_manager", "finance", "auditor"))]
# The `period` of a report; `BusinessPeriod.parse` gives its first and last day.
PeriodQuery = Annotated[Period, Query(description="A month `YYYY-MM`, a quarter `YYYY-Qn` or a year `YYYY`")]

ReportFormat = Annotated[Literal["json", "csv"] | None, Query(
    alias="format", description="`csv` answers CSV whatever `Accept` says; default: JSON unless `Accept: text/csv`")]

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
# Rows fetched from a server-side cursor at a time.
ROWS_PER_FETCH = 500
# A few hundred rows per chunk: fewer, larger writes to the socket than one per row.
ROWS_PER_CHUNK = 500

# What the OpenAPI document says each report can answer.
REPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
}


def streamed_rows(datastore: Any, query: str, params: Mapping[str, Any], *,
                  shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                  batch: int = ROWS_PER_FETCH) -> Iterator[dict[str, Any]]:
    """The query's rows, read through a server-side cursor while the answer is sent (`rows` of
    `report_answer`): holds a pooled connection until exhausted or closed."""
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor(name="report") as curs:
        curs.itersize = batch
        curs.execute(query, params)
        for row in curs:
            yield shape(row) if shape else row


def wants_csv(request: Request, report_format: str | None) -> bool:
    if report_format is not None:
        return report_format == "csv"
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == "text/csv" for part in accept.split(","))


def csv_value(value: Any) -> str:
    """A CSV cell: decimals in plain notation (never `1E-7`), dates ISO, times RFC 3339 UTC,
    nothing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (UUID, date)):  # date covers datetime
        return json_default(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(csv_value(v) for v in value)
    return _inert(str(value))


# A spreadsheet opening the file (the payout register goes to payroll) runs a cell that starts
# with one of these as a formula; free text such as a partner's name must stay text (OWASP's
# CSV-injection advice: prefix a single quote). A signed number stays a number.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


_NUMBER = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?")  # money some reports already carry as text


def _inert(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(text) else text


def _csv_chunks(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([csv_value(row.get(column)) for column in columns])
        count += 1
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(value: Any) -> str:
    # The encoder walks the row in C and calls json_default only for what JSON lacks (Decimal,
    # UUID, dates): no Python pass over every cell first.
    return json.dumps(value, default=json_default, ensure_ascii=False)


def _json_chunks(rows: Iterable[Mapping[str, Any]], extra: Mapping[str, Any]) -> Iterator[str]:
    parts: list[str] = ['{"items": [']
    first = True
    for row in rows:
        parts.append(("" if first else ", ") + _json(row))
        first = False
        if len(parts) >= ROWS_PER_CHUNK:
            yield "".join(parts)
            parts = []
    tail = _json(dict(extra))[1:]  # `}` alone when empty
    parts.append("]" + (", " + tail if extra else "}"))
    yield "".join(parts)


def report_answer(
    request: Request,
    report_format: str | None,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    name: str,
    position: int,
    extra: Mapping[str, Any] | None = None,
) -> StreamingResponse:
    """`rows` may be a generator that holds a database cursor open: it is read while the answer
    is sent. JSON: `{"items": [row, …], **extra}` (money as strings); CSV: a header line of
    `columns`, then one line per row (`extra` is not part of a CSV answer: a CSV is the rows)."""
    headers = {"X-Projection-Position": str(position)}
    if wants_csv(request, report_format):
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return StreamingResponse(_csv_chunks(columns, rows), media_type=CSV_MEDIA_TYPE, headers=headers)
    return StreamingResponse(_json_chunks(rows, extra or {}), media_type="application/json", headers=headers)
