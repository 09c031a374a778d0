"""A P10 database kept for diagnostics (bench/report_sql.py, report_http.py, sales_cpu.py): NAME
created on the server, migrated, filled with the bench's 1 000 000-event year (read_models.fill_log
with details), every read model caught up in 2 processes, VACUUM ANALYZE. About 5-15 minutes on
2 cores. Drop it when done: `DROP DATABASE NAME`.

    PYTHONPATH=src:bench:. python bench/report_db.py postgresql://postgres@127.0.0.1:5432 perf10_a
"""

from __future__ import annotations

import sys
import time

import psycopg
import read_models

from channel_domain.store.migrations import migrate

if __name__ == "__main__":  # catch_up spawns processes, which import this module again
    server, name = sys.argv[1].rstrip("/"), sys.argv[2]
    url = f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    began = time.time()
    migrate(url)
    print(f"head {read_models.fill_log(url, 1_000_000, details=True)} after {time.time() - began:.0f} s", flush=True)
    print(f"caught up {read_models.catch_up(url, 2)[0]} after {time.time() - began:.0f} s", flush=True)
    read_models.analyze(url)
    print(f"analyzed after {time.time() - began:.0f} s", flush=True)
