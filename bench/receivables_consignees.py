"""P10 diagnostic: the receivables report when the bench's partners are consignees (the bench log
has none, so its receivables read nothing). In one transaction, rolled back: every partner made a
consignee in `commission_partners`, then the report's SQL as DIR/src has it (`before`) and as
this checkout has it (`after`), `runs` times each, alternately; the answers compared.

    PYTHONPATH=src:. python bench/receivables_consignees.py postgresql://…/db /work/main [runs]
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import psycopg
from psycopg.rows import dict_row


def _load(name: str, path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    url, before_dir = sys.argv[1], Path(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    queries = {"before": _load("before", before_dir / "src/api/routes/partner_reports.py").RECEIVABLES,
               "after": _load("after", Path(__file__).resolve().parent.parent
                              / "src/api/routes/partner_reports.py").RECEIVABLES}
    params = {"as_of": date(2026, 7, 31), "month": "2026-07", "partner": None}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        made = conn.execute("UPDATE commission_partners SET kind = 'consignee'").rowcount
        times: dict[str, list[float]] = {tag: [] for tag in queries}
        answers = {}
        for n in range(runs + 1):
            for tag, query in queries.items():
                began = time.perf_counter()
                answers[tag] = conn.execute(query, params).fetchall()
                if n:  # the first of each warms
                    times[tag].append((time.perf_counter() - began) * 1000)
        conn.rollback()
    for tag, spent in times.items():
        spent.sort()
        print(f"{tag}: {len(answers[tag])} rows, p50 {statistics.median(spent):.2f} ms,"
              f" p99 {spent[int(len(spent) * 0.99) - 1]:.2f} ms ({made} consignees, {runs} runs)")
    print("same answer" if answers["before"] == answers["after"] else "ANSWERS DIFFER")


if __name__ == "__main__":
    main()
