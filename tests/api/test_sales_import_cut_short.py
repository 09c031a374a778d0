"""POST /v1/sales/import with an Idempotency-Key, cut short mid-body (the client went away)
and retried with the same key: every line is booked once — the lines the first run
committed are skipped, the rest booked — and the disconnect itself is no server error."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from uuid import UUID

import anyio

from channel_domain.contract import Contract
from tests.api.flows import ERP, approved_partner, problem, signed_contract
from tests.api.test_sales_import_retries import send

KEY = "batch-42"


def _body(contract: str, return_amount: str = "1.00") -> bytes:
    """10 sales of 1000.00, then 2000 returns without return ids, 200 against each sale:
    the first 2000 lines fill one batch (BATCH), the last 10 fall in the next."""
    lines = [json.dumps({"kind": "sale", "contract_id": contract, "order_id": f"o{i}", "amount": "1000.00",
                         "sold_on": "2026-03-01"}) for i in range(10)]
    lines += [json.dumps({"kind": "return", "contract_id": contract, "order_id": f"o{i % 10}",
                          "amount": return_amount, "returned_on": "2026-03-02"}) for i in range(2000)]
    return ("\n".join(lines) + "\n").encode()


def cut_short(api, body: bytes, key: str) -> list:
    """Send all of the body but its last 10 bytes, then drop the connection; what the app sent."""
    token = api.token(ERP[0], *ERP[1])
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"idempotency-key", key.encode()),
               (b"content-type", b"application/x-ndjson")]
    sent: list = []

    async def run() -> None:
        chunks = [body[: len(body) - 10]]

        async def receive() -> dict:
            if chunks:
                return {"type": "http.request", "body": chunks.pop(0), "more_body": True}
            await anyio.sleep(0.05)
            return {"type": "http.disconnect"}

        async def send_(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/sales/import", "raw_path": b"/v1/sales/import",
                 "query_string": b"", "root_path": "", "headers": headers, "client": ("t", 1), "server": ("t", 80)}
        try:
            await api.client.app(scope, receive, send_)
        except Exception as error:  # noqa: BLE001 - what escapes the app is what the server logs as a 500
            sent.append({"type": "escaped", "error": repr(error)})

    anyio.run(run)
    return sent


def _returned(api, contract: str) -> Decimal:
    state = api.department.get(Contract, contract)
    return sum((Decimal(order.split("|")[1]) for order in state.orders.values()), Decimal("0.00"))


def test_a_client_that_goes_away_mid_import_is_no_server_error(api, caplog):
    contract = signed_contract(api, approved_partner(api, "retailer"))
    with caplog.at_level(logging.INFO):
        sent = cut_short(api, _body(contract), KEY)
    assert [message.get("status") for message in sent if message["type"] != "http.response.body"] == [499]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_keyed_import_cut_short_and_retried_books_each_return_once(api):
    contract = signed_contract(api, approved_partner(api, "retailer"))
    body = _body(contract)
    cut_short(api, body, KEY)
    # The first batch (10 sales, 1990 returns of 1.00) committed before the connection dropped.
    assert _returned(api, contract) == Decimal("1990.00")

    retry = send(api, body, key=KEY)
    assert retry.status_code == 200, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert retry.json() == {"accepted": 2010, "rejected": [], "rejected_total": 0}
    assert _returned(api, contract) == Decimal("2000.00")  # 2000 returns of 1.00, each once
    assert len(api.department.get(Contract, contract).orders) == 10

    again = send(api, body, key=KEY)  # finished: the answer replays, nothing is written
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == retry.json()
    assert _returned(api, contract) == Decimal("2000.00")
    assert api.department.imported_lines(ERP[0], KEY) == {}  # the record of booked lines went with the answer


def test_a_retry_whose_body_differs_on_a_booked_line_is_refused(api):
    contract = signed_contract(api, approved_partner(api, "retailer"))
    cut_short(api, _body(contract), KEY)
    version = api.department.get(Contract, contract).version
    other = send(api, _body(contract, return_amount="2.00"), key=KEY)
    problem(other, 422, "idempotency_key_reused")
    assert api.department.get(Contract, contract).version == version
    assert _returned(api, contract) == Decimal("1990.00")


def test_a_different_body_under_the_key_of_an_import_cut_short_writes_nothing(api):
    """The same key with another body is 422 and writes nothing (api.md) — even where the first
    run had refused or not reached lines: nothing is booked before the retry has been compared
    with every line booked under the key."""
    contract = signed_contract(api, approved_partner(api, "retailer"))
    nowhere = "00000000-0000-4000-8000-000000000000"

    def sale(contract_id: str, order: str) -> str:
        return json.dumps({"kind": "sale", "contract_id": contract_id, "order_id": order, "amount": "10.00",
                           "sold_on": "2026-03-01"})

    # The first body: 2 000 lines for no contract (refused), then 2 010 sales; cut short.
    first = [sale(nowhere, f"x{i}") for i in range(2000)] + [sale(contract, f"a{i}") for i in range(2010)]
    cut_short(api, ("\n".join(first) + "\n").encode(), "k-other")
    booked = len(api.department.get(Contract, UUID(contract)).orders)
    assert booked == 2000
    # Another body under the key: new sales where the first had refused lines, then the rest.
    other = [sale(contract, f"b{i}") for i in range(2000)] + [sale(contract, f"c{i}") for i in range(2010)]
    problem(send(api, ("\n".join(other) + "\n").encode(), key="k-other"), 422, "idempotency_key_reused")
    assert len(api.department.get(Contract, UUID(contract)).orders) == booked
