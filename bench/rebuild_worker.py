"""Rebuild every rebuildable read model (shared out among one process per core), then print
{events, seconds, peak_mb} as JSON.

Run as a process of its own so that its peak memory is the rebuild's alone:
    .venv/bin/python bench/rebuild_worker.py postgresql://...
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from channel_domain.application import ChannelDepartment
from channel_domain.store.rebuilding import Rebuilder
from projections import all_projections


def main(url: str) -> None:
    app = ChannelDepartment(url)
    try:
        chosen = [p for p in all_projections() if getattr(p, "rebuildable", True)]
        began = time.perf_counter()
        report = Rebuilder(app, *chosen).rebuild(processes=os.cpu_count() or 1)
        seconds = time.perf_counter() - began
    finally:
        app.close()
    # The largest of this process and the builders it started (kilobytes on Linux).
    peak_mb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(json.dumps({"events": report.position, "seconds": seconds, "peak_mb": peak_mb,
                      "read_models": [p.name for p in chosen]}))


if __name__ == "__main__":
    main(sys.argv[1])
