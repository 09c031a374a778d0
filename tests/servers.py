"""Starting real `channel-domain` processes in tests: where the commands are, a free port, and
waiting until a server answers its health check."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
START_WITHIN_S = 60  # generous: a loaded two-core CI machine has taken 40 s to start two workers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(base: str, server: subprocess.Popen, log_text: Callable[[], str]) -> None:
    """Until `base/health` answers 200; fails with the server's output if it exits or never does."""
    deadline = time.monotonic() + START_WITHIN_S
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the server did not start: {log_text()[-3000:]}")
        time.sleep(0.2)
