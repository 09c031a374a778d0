"""A relay trusts only what it published: each message names its source (cluster, database,
prefix), and a stream whose last message is another's — or is beyond this log's head — stops the
relay with exit code 2 instead of moving its checkpoint there (which would skip events). Also:
the NATS URL's secrets never reach the console, and the lock session's keepalives."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import nats
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.store.database import scratch_database
from channel_domain.store.log import read_settled
from integration import nats_relay
from tests.integration.relays import (
    RelayProcess,
    checkpoint,
    delete_stream,
    head,
    received,
    stream_count,
    unique_names,
    wait_until,
)
from tests.servers import BIN, free_port


@pytest.fixture
def names(nats_url: str) -> Iterator[tuple[str, str]]:
    stream, prefix = unique_names()
    yield stream, prefix
    delete_stream(nats_url, stream)


@pytest.fixture
def other_database(server_url: str, template_database: str) -> Iterator[str]:
    """A second database of the same cluster: same system identifier, another name."""
    with scratch_database(server_url, prefix="cd_test", template=template_database) as url:
        yield url


def _partners(app, count: int, tag: str = "P") -> None:
    with acting_as("spec-1", ["channel_specialist"], correlation_id=f"crm-{tag}"):
        for n in range(count):
            app.register_partner(kind="retailer", name=f"{tag} {n}")


def _relay_once(database_url: str, nats_url: str, stream: str, prefix: str, *options: str,
                timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [str(BIN / "channel-domain"), "relay", "nats", "--url", nats_url, "--stream", stream, "--subject-prefix",
         prefix, "--log-format", "text", *options], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url, "COLUMNS": "250"})


def _relay_status(database_url: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([str(BIN / "channel-domain"), "relay", "status"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url, "COLUMNS": "250"})


def _one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def _source(app, prefix: str) -> str:
    return nats_relay.relay_source(app.event_recorder.datastore, prefix)


def _publish_everything(app, database_url: str, nats_url: str, stream: str, prefix: str) -> None:
    relay = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 60, relay.output)
    finally:
        assert relay.stop() == 0


def test_messages_name_their_source(app, database_url, nats_url, names):
    stream, prefix = names
    _partners(app, 2)
    _publish_everything(app, database_url, nats_url, stream, prefix)
    source = _source(app, prefix)
    cluster, database, named_prefix = source.split("/")
    assert cluster.isascii() and cluster.isdigit() and database == conninfo_to_dict(database_url)["dbname"]
    assert named_prefix == prefix
    assert {m.headers["Channel-Domain-Source"] for m in received(nats_url, stream)} == {source}


def test_a_second_database_relaying_to_the_same_stream_is_refused_and_moves_no_checkpoint(
        app, database_url, other_database, nats_url, names):
    """Staging and production on one NATS with the default names: the second relay used to take
    the first's last position as its own and skip its own events up to it."""
    stream, prefix = names
    _partners(app, 4)
    first = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 60, first.output)
        with ChannelDepartment(other_database) as other:
            _partners(other, 2, "other")
            refused = _relay_once(other_database, nats_url, stream, prefix)
            ours, theirs = _source(app, prefix), _source(other, prefix)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        said = _one_line(refused.stderr)
        assert f"comes from {ours}" in said and f"not from this relay ({theirs})" in said
        assert checkpoint(other_database, stream, prefix) == 0  # nothing taken from the other's message

        # The first relay is unharmed and goes on.
        _partners(app, 1, "after the refusal")
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 30, first.output)
    finally:
        assert first.stop() == 0
    got = received(nats_url, stream)
    assert [m.position for m in got] == [n.id for n in read_settled(app.event_recorder, after=0, limit=1000)]
    assert {m.headers["Channel-Domain-Source"] for m in got} == {_source(app, prefix)}


def test_a_relay_stops_with_exit_code_2_when_another_publisher_takes_its_stream_while_it_runs(
        app, database_url, nats_url, names):
    """On sync (after a refused publish), not only at start: a message appended by someone else
    is never taken as this relay's progress."""
    stream, prefix = names
    _partners(app, 2)
    relay = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 60, relay.output)
        before = checkpoint(database_url, stream, prefix)

        async def intrude() -> None:
            nc = await nats.connect(nats_url)
            try:
                await nc.jetstream().publish(f"{prefix}.Partner.Applied", b"{}", headers={
                    "Nats-Msg-Id": "intruder", "Channel-Domain-Position": str(before + 1000),
                    "Channel-Domain-Source": "1/elsewhere/" + prefix})
            finally:
                await nc.close()

        asyncio.run(intrude())
        _partners(app, 1, "after the intruder")
        wait_until(lambda: relay.process.poll() is not None, 30, f"the relay stops: {relay.output()[-2000:]}")
        assert relay.process.returncode == 2
        said = _one_line(relay.output())
        assert f"comes from 1/elsewhere/{prefix}, not from this relay ({_source(app, prefix)})" in said
        assert checkpoint(database_url, stream, prefix) == before
    finally:
        relay.stop()


def test_a_last_message_without_a_source_is_refused(app, database_url, nats_url, names):
    stream, prefix = names
    _partners(app, 1)

    async def publish_by_hand() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
            await js.publish(f"{prefix}.Partner.Applied", b"{}", headers={"Channel-Domain-Position": "1"})
        finally:
            await nc.close()

    asyncio.run(publish_by_hand())
    refused = _relay_once(database_url, nats_url, stream, prefix)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "carries no Channel-Domain-Source header" in _one_line(refused.stderr)
    assert checkpoint(database_url, stream, prefix) == 0


def _restore_log(source_url: str, target_url: str) -> None:
    """The source's events, byte for byte, into the (empty) target's log."""
    with psycopg.connect(source_url) as source, psycopg.connect(target_url) as target:
        with source.cursor().copy("COPY events TO STDOUT (FORMAT BINARY)") as out, \
                target.cursor().copy("COPY events FROM STDIN (FORMAT BINARY)") as into:
            for chunk in out:
                into.write(chunk)
        target.execute("SELECT setval('events_position_seq', (SELECT max(position) FROM events))")


def test_continue_from_takes_over_a_named_source_but_never_beyond_the_head(
        app, database_url, other_database, nats_url, names):
    """A database restored into another cluster goes on from its predecessor's last message
    when the operator names it — and still refuses a position its log has not reached."""
    stream, prefix = names
    _partners(app, 3)
    _publish_everything(app, database_url, nats_url, stream, prefix)
    predecessor = _source(app, prefix)
    last = head(database_url)
    with ChannelDepartment(other_database) as other:
        short = _relay_once(other_database, nats_url, stream, prefix, "--continue-from", predecessor)
        assert short.returncode == 2, short.stdout + short.stderr
        assert f"at position {last}, beyond this log's head {head(other_database)}" in _one_line(short.stderr)
        assert checkpoint(other_database, stream, prefix) == 0

        _restore_log(database_url, other_database)  # the same events: a restore into another cluster
        _partners(other, 2, "long")  # now past the stream's last position
        successor = RelayProcess(other_database, nats_url, stream, prefix, "--continue-from", predecessor)
        try:
            wait_until(lambda: checkpoint(other_database, stream, prefix) == head(other_database), 60,
                       successor.output)
        finally:
            assert successor.stop() == 0
        expected_after = [n.id for n in read_settled(other.event_recorder, after=last, limit=1000)]
        theirs = _source(other, prefix)
    got = received(nats_url, stream)
    assert [m.position for m in got] == [n.id for n in read_settled(app.event_recorder, after=0, limit=1000)] \
        + expected_after
    assert got[-1].headers["Channel-Domain-Source"] == theirs


def test_a_checkpoint_beyond_the_head_is_flagged_by_status_and_refused_by_the_relay(app, database_url, nats_url,
                                                                                   names):
    stream, prefix = names
    _partners(app, 2)
    _publish_everything(app, database_url, nats_url, stream, prefix)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE nats_relay_checkpoints SET position = position + 50")
    status = _relay_status(database_url)
    assert status.returncode == 1
    said = _one_line(status.stdout)
    assert f"position {head(database_url) + 50} is beyond the log's head {head(database_url)}" in said

    refused = _relay_once(database_url, nats_url, stream, prefix)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "beyond this log's head" in _one_line(refused.stderr)


# The URL's secrets --------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("nats://s3cr3tTOKEN@nats.internal:4222", "nats://***@nats.internal:4222"),
    ("nats://relay:pa55word@nats.internal:4222", "nats://relay:***@nats.internal:4222"),
    ("tok3nAAA@nats.internal", "***@nats.internal"),
    ("nats://tokenONE1@a:4222, nats://user:passTWO2@b:4222,nats://c:4222",
     "nats://***@a:4222,nats://user:***@b:4222,nats://c:4222"),
])
def test_shown_url_hides_tokens_and_passwords_of_every_server(url, shown):
    assert nats_relay.shown_url(url) == shown


def test_secrets_are_masked_in_free_text_too():
    url = "nats://tokenONE1@a:4222,nats://user:pass%2FTWO@b:4222"
    text = "auth failed for tokenONE1 at a; and pass/TWO, pass%2FTWO"
    assert nats_relay.masked(text, url) == "auth failed for *** at a; and ***, ***"


def test_a_token_in_the_url_never_reaches_the_console(database_url):
    nobody, nor_them = free_port(), free_port()
    url = f"nats://s3cr3tTOKEN@127.0.0.1:{nobody},nats://user:pa55word@127.0.0.1:{nor_them}"
    done = _relay_once(database_url, url, "CHANNEL_DOMAIN", "channel-domain")
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "s3cr3tTOKEN" not in said and "pa55word" not in said
    assert f"nats://***@127.0.0.1:{nobody},nats://user:***@127.0.0.1:{nor_them}" in _one_line(said)


def test_a_comma_separated_server_list_is_used_as_a_list(app, database_url, nats_url, names):
    """One server down, the other up: the relay connects to the one that answers."""
    stream, prefix = names
    _partners(app, 1)
    relay = RelayProcess(database_url, f"nats://127.0.0.1:{free_port()},{nats_url}", stream, prefix)
    try:
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url)
                   and stream_count(nats_url, stream) == head(database_url), 60, relay.output)
    finally:
        assert relay.stop() == 0


# The lock session ---------------------------------------------------------------------------


def test_the_lock_session_has_keepalives_on_both_ends_so_a_vanished_host_frees_the_lock(database_url):
    """Without them the server keeps a vanished relay's session, and its lock, for its system
    keepalive (about 2 h); the standby would wait that long. An operator's own `options` stay."""
    url = make_conninfo(database_url, options="-c statement_timeout=4321")
    with nats_relay.lock_session(url, "test") as lock:
        server_side = {name: lock.execute(f"SHOW {name}").fetchone()[0] for name in (
            "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout",
            "statement_timeout")}
        over_tcp = lock.execute("SELECT inet_server_addr() IS NOT NULL").fetchone()[0]
        client_side = lock.info.get_parameters()
    # Over a Unix socket (the embedded server) there is no network to vanish: PostgreSQL shows 0.
    tcp = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3",
           "tcp_user_timeout": "10000"}
    assert server_side == {**(tcp if over_tcp else dict.fromkeys(tcp, "0")), "statement_timeout": "4321ms"}
    assert {k: client_side.get(k) for k in ("keepalives", "keepalives_idle", "keepalives_interval",
                                            "keepalives_count", "tcp_user_timeout")} == {
        "keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "3",
        "tcp_user_timeout": "10000"}


def test_a_log_that_holds_another_event_at_the_streams_last_position_is_refused(
        app, database_url, other_database, nats_url, names):
    """A database restored into the same cluster (same source) and written past where the
    stream stopped holds other events at those positions: going on would skip them. Shown with
    a second database that continues the first's stream by name (`--continue-from`)."""
    stream, prefix = names
    _partners(app, 2)
    _publish_everything(app, database_url, nats_url, stream, prefix)
    with ChannelDepartment(other_database) as other:
        _partners(other, 3, "written after the restore")
        refused = _relay_once(other_database, nats_url, stream, prefix, "--continue-from", _source(app, prefix))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "but this log holds" in _one_line(refused.stderr)
    assert checkpoint(other_database, stream, prefix) == 0
