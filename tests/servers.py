"""Starting real `channel-domain` processes in tests: where the commands are, a free port,
waiting until a server answers its health check, and stopping a process."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
START_WITHIN_S = 60  # generous: a loaded two-core CI machine has taken 40 s to start two workers


def stop(process: subprocess.Popen, timeout_s: float = 15) -> int:
    """Ask a process to end (SIGTERM), kill it if it has not within `timeout_s`; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


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


class InThread:
    """The service on a free port, in a thread of this process, as `channel-domain serve` runs it
    (for a browser or curl to reach; the test's own fixtures share its database)."""

    def __init__(self, database_url: str) -> None:
        import uvicorn

        from api.app import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(database_url), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextmanager
def serving_forever(server: HTTPServer) -> Iterator[HTTPServer]:
    """A test's own HTTP server (a witness, a webhook receiver) answering in a thread until the
    block ends, then shut and its socket closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
