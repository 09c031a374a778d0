"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that records every request
and answers what the test tells it to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.servers import serving_forever


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    status: int  # what the receiver answered

    @property
    def item(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        # Decides each answer from the parsed item (default: 204, delivered).
        self.answer: Callable[[dict[str, Any]], int] = lambda item: 204
        self._guard = threading.Lock()
        self.url = ""
        # Cleared: the server accepts no connection (they wait in its listen queue) until set.
        self.accepting = threading.Event()
        self.accepting.set()

    def record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            status = self.answer(json.loads(body))
        except Exception:  # noqa: BLE001 - a test's answer function failing is a 500, as a real receiver's would be
            status = 500
        with self._guard:
            self.requests.append(Received(path, headers, body, time.monotonic(), status))
        return status

    @property
    def delivered(self) -> list[Received]:
        with self._guard:
            return [r for r in self.requests if 200 <= r.status < 300]

    def items(self) -> list[dict[str, Any]]:
        return [r.item for r in self.delivered]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}; received {len(self.requests)} requests")
            time.sleep(0.02)

    @contextmanager
    def holding_connections(self) -> Iterator[None]:
        """Accepts no connection while the block runs, as a server on a busy machine that gets to
        `accept` late: they wait in the listen queue, then are answered."""
        self.accepting.clear()
        try:
            yield
        finally:
            self.accepting.set()

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivered body, checked as a receiver checks it (raises on a bad signature)."""
        return [Webhook(secret).verify(r.body, r.headers) for r in self.delivered]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            status = receiver.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # A real server's listen queue (nginx's is 511, uvicorn's 2048), not socketserver's 5. The
        # worker opens up to LINES_AT_ONCE connections per subscription at once, and this thread,
        # in a busy test process on a loaded machine, accepts them late. With 5, Linux meets the
        # burst with SYN cookies, drops a handshake's last ACK while the accept queue is full, and
        # resets the connection when the request's next segment fails the cookie check: the worker
        # got an `httpx.ReadError` that no real receiver would cause (the dripping test's flake).
        request_queue_size = 1024

        def get_request(self) -> Any:
            receiver.accepting.wait()
            return super().get_request()

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a sender killed mid-request resets its connection: expected in the kill test

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with serving_forever(server):
        yield receiver
