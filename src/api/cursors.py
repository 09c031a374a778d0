"""Page cursors: what a client may send back as `cursor`, checked before it reaches SQL.

Every cursor this service hands out (`next_cursor`) that names a position, a version or an
offset is a decimal integer. Anything else — a number too large for a PostgreSQL bigint,
digits of another script that `str.isdigit` accepts but `int` may not, base64 junk — is a
`422 validation_error`: silently reading from the start would answer a page the client did not
ask for, and passing it on made a `500` of a bigint overflow.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

# 18 ASCII digits stay below 2**63 even after an offset adds a page to it.
CURSOR_PATTERN = r"^[0-9]{0,18}$"  # empty: the first page, as before

NumberCursor = Annotated[str | None, Query(
    max_length=18, pattern=CURSOR_PATTERN,
    description="`next_cursor` of the previous page (a decimal number, as given)",
)]


def cursor_number(cursor: str | None) -> int:
    """The cursor's number (0 without one). `NumberCursor` already refused anything else."""
    return int(cursor) if cursor else 0
