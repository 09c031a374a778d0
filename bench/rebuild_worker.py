"""Rebuild every rebuildable read model, then print {events, seconds, peak_mb} as JSON.

Run as a process of its own so that its peak memory is the rebuild's alone:
    .venv/bin/python bench/rebuild_worker.py postgresql://...
"""

from __future__ import annotations

import json
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
        report = Rebuilder(app, *chosen).rebuild()
        seconds = time.perf_counter() - began
    finally:
        app.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(json.dumps({"events": report.position, "seconds": seconds, "peak_mb": peak_mb,
                      "read_models": [p.name for p in chosen]}))


if __name__ == "__main__":
    main(sys.argv[1])
