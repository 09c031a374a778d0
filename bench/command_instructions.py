"""Issue 18 diagnostic: a sale command's cost in process, counted in instructions rather than
seconds (this machine's speed varies by a factor of two within the hour; callgrind's counts do
not). Records N sales on one signed contract, one after another.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/command_instructions.py URL 100
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/command_instructions.py URL 500

on a migrated database; the difference of the two "Collected" totals over 400 is one command's
instructions, start-up and set-up cancelled out. PYTHONPATH=<a checkout>/src counts another version.
"""

from __future__ import annotations

import itertools
import sys

from common import signed_contract

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment


def main() -> None:
    url, count = sys.argv[1], int(sys.argv[2])
    app = ChannelDepartment(url)
    try:
        contract = signed_contract(app, "retailer", "Counted")
        orders = itertools.count()
        for _ in range(count):
            with acting_as("erp", ["integration"]):
                app.record_sale(contract, f"SO-{next(orders)}", "100.00", "2026-03-02")
    finally:
        app.close()


if __name__ == "__main__":
    main()
