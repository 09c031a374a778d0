"""`channel-domain`: migrate the schema, serve the API, manage tokens, run projections."""

from __future__ import annotations

import base64
import ipaddress
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import typer
from psycopg.rows import dict_row
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api import logging_setup
from api.tokens import ROLES, create_token, list_tokens, revoke_token
from channel_domain.application import ChannelDepartment
from channel_domain.context import acting_as
from channel_domain.errors import ValidationFailed
from channel_domain.operations import OPERATOR_ROLE
from channel_domain.store import checkpoints, integrity, projecting, reporting, retention, witness
from channel_domain.store.database import DATABASE_URL_VARIABLE, database_url
from channel_domain.store.migrations import MigrationsNotFound, SchemaBehind, require_current
from channel_domain.store.migrations import migrate as apply_migrations
from channel_domain.store.projecting import ProjectionRunner, run_in_processes, run_lanes
from channel_domain.store.rebuilding import NotRebuildable, Rebuilder, RebuildInProgress, SwitchBlocked
from integration import webhooks as webhook_delivery
from integration import nats_relay
from projections import all_projections

app = typer.Typer(help="channel-domain: the sales-channel department service.", no_args_is_help=True)
tokens_app = typer.Typer(help="Bearer tokens for the HTTP API.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
console = Console()


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema from migrations/ (safe to run again)."""
    url = database_url()
    try:
        applied = apply_migrations(url)
    except MigrationsNotFound as error:
        # Saying "up to date" here once let a broken install serve with no schema at all.
        Console(stderr=True).print(f"[red]cannot migrate: {error}[/red]")
        raise typer.Exit(1) from None
    if applied:
        for migration_id in applied:
            console.print(f"applied [bold]{migration_id}[/bold]")
    else:
        console.print("schema is up to date")


DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"  # uvicorn's own default: a proxy on this machine
PUBLIC_ORIGIN_VARIABLE = "CHANNEL_DOMAIN_PUBLIC_ORIGIN"  # api.workspace.sessions reads it (not imported: heavy)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(
        min(os.cpu_count() or 1, 4), min=1,
        help="Worker processes (default: one per core, up to 4). One process runs Python on one core at a time.",
    ),
    projections: bool = typer.Option(True, help="Also keep the read models up to date in this process."),
    access_log: bool = typer.Option(True, help="Log a line for every request."),
    log_format: str | None = typer.Option(
        None, help="json or text (env CHANNEL_DOMAIN_LOG_FORMAT; default: text on a terminal, else json).",
    ),
    forwarded_allow_ips: str = typer.Option(
        DEFAULT_TRUSTED_PROXIES, envvar="FORWARDED_ALLOW_IPS",
        help="Proxies (comma-separated addresses or networks, e.g. 10.0.0.0/8; '*' for any peer; '' for none)"
             " whose X-Forwarded-Proto and X-Forwarded-For are believed. Other peers' are ignored.",
    ),
    public_origin: str | None = typer.Option(
        None, envvar=PUBLIC_ORIGIN_VARIABLE,
        help="The origin browsers reach /audit/ at, e.g. https://audit.example.com: then the only one whose"
             " forms are accepted, and its scheme decides the cookies' Secure flag.",
    ),
) -> None:
    """Serve the HTTP API with uvicorn (migrates first)."""
    import uvicorn

    from api.workspace import sessions

    try:
        chosen_format = logging_setup.choose_format(log_format)
        proxies = proxy_settings(forwarded_allow_ips)
        origin = sessions.public_origin(public_origin or "")
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    # Workers are processes of their own: they read these choices from the environment.
    os.environ.pop(PUBLIC_ORIGIN_VARIABLE, None)
    if origin:
        os.environ[PUBLIC_ORIGIN_VARIABLE] = origin
    os.environ[logging_setup.LOG_FORMAT_VARIABLE] = chosen_format
    os.environ[logging_setup.REQUEST_LOG_VARIABLE] = "on" if access_log else "off"
    logging_setup.configure(chosen_format)
    if projections:  # then this process delivers webhooks and makes checkpoints too
        _webhook_settings_usable()
        _checkpoint_settings_usable()
    url = database_url()
    apply_migrations(url)
    # Workers are separate processes: hand them the resolved URL, embedded server included.
    os.environ[DATABASE_URL_VARIABLE] = url
    os.environ["CHANNEL_DOMAIN_PROJECTIONS"] = "on" if projections else "off"
    console.print(f"serving on http://{host}:{port}  (health: /health, API docs: /docs)")
    console.print(f"X-Forwarded-Proto/-For believed from: {proxies['forwarded_allow_ips'] or 'no one'}"
                  + (f"; public origin {origin}" if origin else ""), highlight=False)
    typer.echo("issue a first token: .venv/bin/channel-domain tokens create --actor YOU --role channel_manager")
    uvicorn.run(
        "api.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
        log_config=logging_setup.log_config(chosen_format), access_log=False,  # the request line replaces it
        **proxies,
    )


def proxy_settings(forwarded_allow_ips: str) -> dict[str, Any]:
    """uvicorn's settings for `serve --forwarded-allow-ips`. uvicorn treats an entry that is not
    an address or network as a name it never matches (and `*` only when alone): refuse those
    here, rather than start a node that silently believes no proxy."""
    entries = [entry.strip() for entry in forwarded_allow_ips.split(",") if entry.strip()]
    if entries == ["*"]:
        return {"proxy_headers": True, "forwarded_allow_ips": "*"}
    for entry in entries:
        try:
            ipaddress.ip_network(entry) if "/" in entry else ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(f"--forwarded-allow-ips: {entry!r} is not an IP address or network"
                             f" (the proxy's address is compared, never its name; '*' only on its own)") from None
    return {"proxy_headers": bool(entries), "forwarded_allow_ips": ",".join(entries)}


def _webhook_settings_usable() -> None:
    """Refuse (exit 2) to start delivering with a webhook setting that cannot be used: else
    the process would start and every delivery fail in the background."""
    try:
        webhook_delivery.check_settings()
    except webhook_delivery.BadSetting as error:
        typer.secho(f"cannot deliver webhooks: {error}", err=True, fg="red")
        raise typer.Exit(2) from None


def _checkpoint_settings_usable() -> None:
    """Refuse (exit 2) an interval that cannot be used; a missing key is no refusal: the maker
    says so once and makes none (docs/audit.md)."""
    try:
        checkpoints.interval_s()
    except ValueError as error:
        typer.secho(f"cannot make checkpoints: {error}", err=True, fg="red")
        raise typer.Exit(2) from None


def _schema_current(url: str) -> None:
    """For the commands that only read: refuse (exit 2) on a schema behind the code, never migrate."""
    try:
        require_current(url)
    except (SchemaBehind, MigrationsNotFound) as refused:
        typer.secho(str(refused), err=True, fg="red")  # unwrapped: scripts grep for it
        raise typer.Exit(2) from None


def _connection() -> psycopg.Connection:
    url = database_url()
    apply_migrations(url)
    return psycopg.connect(url, autocommit=True)


@tokens_app.command("create")
def tokens_create(
    actor: str = typer.Option(..., help="Who acts with this token; recorded on every event."),
    role: list[str] = typer.Option(..., help=f"A role ({', '.join(ROLES)}); repeat for several."),
) -> None:
    """Issue a token. It is printed once and stored only as a digest."""
    with _connection() as conn:
        try:
            token_id, token = create_token(conn, actor, role)
        except ValueError as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from None
    console.print(f"token id {token_id} for [bold]{actor}[/bold] ({', '.join(sorted(set(role)))})")
    console.print("the token (shown once, keep it safe):")
    typer.echo(token)


@tokens_app.command("list")
def tokens_list() -> None:
    """List tokens (never the tokens themselves)."""
    table = Table("token id", "actor", "roles", "created", "revoked")
    with _connection() as conn:
        for info in list_tokens(conn):
            table.add_row(
                str(info.token_id), info.actor, ", ".join(info.roles),
                f"{info.created_at:%Y-%m-%d %H:%M}", f"{info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "",
            )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: uuid.UUID = typer.Argument(..., help="The token id from `tokens list`.")) -> None:
    """Revoke a token: refused from the next request on; its open event streams end within seconds."""
    with _connection() as conn:
        if not revoke_token(conn, token_id):
            console.print(f"[red]no active token {token_id}[/red]")
            raise typer.Exit(1)
    console.print(f"revoked {token_id}")


@app.command("reporting-role")
def reporting_role(
    name: str = typer.Argument(..., metavar="NAME",
                               help="The login role to create or update: lower-case letters, digits and _."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read its password from standard input"
                                                                          " (the first line)."),
    password_env: str | None = typer.Option(None, "--password-env", metavar="VAR",
                                            help="Take its password from the environment variable VAR."),
) -> None:
    """Create or update a PostgreSQL login role that reads the views of the `reporting` schema of
    this database and nothing else (docs/read-models.md, "Reporting schema for BI tools"). Safe to
    run again: it keeps the password unless given one, and grants views added since. Needs a
    database URL of a role with CREATEROLE that owns the schema, or of a superuser; never
    migrates. Exit code 2 when refused (or the schema has no `reporting` yet), with nothing changed."""
    if password_stdin and password_env:
        typer.secho("give the password one way: --password-stdin or --password-env, not both", err=True, fg="red")
        raise typer.Exit(2)
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password_env:
        password = os.environ.get(password_env)
        if password is None:
            typer.secho(f"--password-env: the environment variable {password_env} is not set", err=True, fg="red")
            raise typer.Exit(2)
    # Never migrates: a DBA runs this, often as a superuser, and what migrate creates must belong
    # to the service's own role. A schema before migration 0029 is refused inside.
    try:
        reporting.check_name(name)  # before connecting: a refusal touches nothing
        with psycopg.connect(database_url(), autocommit=True) as conn:
            made = reporting.make_reporting_role(conn, name, password)
    except reporting.ReportingRoleRefused as refused:
        typer.secho(str(refused), err=True, fg="red")  # unwrapped: scripts grep for it
        raise typer.Exit(2) from None
    host = "localhost" if not made.host or made.host.startswith("/") else made.host
    say = typer.echo  # plain lines: the output is copied into BI tools' forms
    say(f"role {made.name}: {'created' if made.created else 'updated'}; LOGIN, member of {made.group}")
    say(f"{made.group} may: CONNECT to database {made.database}, USAGE on schema {reporting.SCHEMA}, SELECT on its"
        f" {len(made.views)} views ({made.granted_now} granted now):")
    say("  " + ", ".join(made.views))
    say(f"{made.name} may do nothing else in {made.database} (checked: tables, columns, sequences, schemas,"
        " functions); its sessions there are read-only and start with search_path reporting, public")
    if made.password == "set":
        say("password: set (stored as a SCRAM verifier)")
    elif made.password == "unchanged":
        say("password: unchanged")
    else:
        say(f"password: none yet; set one with: channel-domain reporting-role {made.name} --password-stdin"
            f" (or, in psql as an administrator, \\password {made.name})")
    say(f"connect: postgresql://{made.name}@{host}:{made.port}/{made.database}")
    say(f"  Superset SQLAlchemy URI: postgresql+psycopg2://{made.name}:PASSWORD@{host}:{made.port}/{made.database}")
    say(f"  Metabase (PostgreSQL): host {host}, port {made.port}, database {made.database}, username {made.name},"
        f" schemas: only {reporting.SCHEMA}")


@app.command()
def project(
    batch_size: int = typer.Option(2000, min=1, help="Events per transaction (read-model writes + checkpoint)."),
    processes: int = typer.Option(1, min=1, help="Share the read models out among this many processes."),
    webhooks: bool = typer.Option(True, help="Also deliver webhooks (what `serve --no-projections` leaves to this)."),
    make_checkpoints: bool = typer.Option(
        True, "--checkpoints/--no-checkpoints",
        help="Also make signed checkpoints (what `serve --no-projections` leaves to this; needs the key file)."),
) -> None:
    """Run the projections, deliver webhooks and make signed checkpoints, until interrupted (for
    deployments that scale out: several may run; each projection and each webhook subscription
    is worked by one at a time, and taken over if it dies; one makes each checkpoint). With
    --processes, this one command keeps that many going, each with its share of the read models."""
    if webhooks:
        _webhook_settings_usable()
    if make_checkpoints:
        _checkpoint_settings_usable()
    url = database_url()
    apply_migrations(url)
    department = ChannelDepartment(url)
    runner = ProjectionRunner(department, all_projections(), batch_size=batch_size)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    console.print(f"projecting {', '.join(p.name for p in runner.projections)}"
                  f"{f' in {processes} processes' if processes > 1 else ''}"
                  f"{', delivering webhooks' if webhooks else ''}"
                  f"{', making checkpoints' if make_checkpoints else ''}; Ctrl-C to stop")
    delivering = webhook_delivery.run_in_background(department, stop) if webhooks else None
    signing = (checkpoints.start_in_background(department.event_recorder.datastore, stop)
               if make_checkpoints else None)
    try:
        if processes > 1:
            run_in_processes(department, runner.projections, processes, stop, batch_size)
        else:
            run_lanes(department, runner.projections, stop, batch_size, own_process=True)
    finally:
        stop.set()
        if delivering is not None:
            delivering.join(timeout=15)
        if signing is not None:
            signing.join(timeout=15)
        department.close()


@app.command()
def rebuild(
    names: list[str] = typer.Argument(..., help="Read models to rebuild, as in GET /v1/projections; `all` for every one."),
    processes: int = typer.Option(
        os.cpu_count() or 1, min=1, help="Processes to share the read models out among (default: one per core)."),
) -> None:
    """Rebuild read models from position 0 in shadow tables while the live ones keep serving,
    then switch to them atomically. Several are rebuilt in one pass over the log. One rebuild at a
    time: a second is refused at once (exit code 2)."""
    known = {p.name: p for p in all_projections()}
    if names == ["all"]:
        names = [name for name, p in known.items() if getattr(p, "rebuildable", True)]
    unknown = [name for name in names if name not in known]
    if unknown:
        console.print(f"[red]no read model {', '.join(map(repr, unknown))}; there are {', '.join(known)}[/red]")
        raise typer.Exit(2)
    label = ", ".join(names)
    url = database_url()
    apply_migrations(url)
    department = ChannelDepartment(url)
    try:
        rebuilder = Rebuilder(department, *(known[name] for name in names))
    except NotRebuildable as refused:
        department.close()
        console.print(f"[red]{refused} (see docs/audit.md)[/red]")
        raise typer.Exit(2) from None
    try:
        with Progress(
            TextColumn(f"rebuilding {label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[left]}"), TimeRemainingColumn(), console=console,
        ) as bar:
            task = bar.add_task(label, total=rebuilder.head(), rate="", left="")

            def advance(position: int) -> None:
                speed = bar.tasks[task].speed or 0
                head = max(rebuilder.head(), position)
                bar.update(task, completed=position, total=head, rate=f"{speed:,.0f} events/s",
                           left=f"{head - position:,} to go")

            report = rebuilder.rebuild(advance, processes=processes)
    except RebuildInProgress as refused:
        console.print(f"[red]{refused}[/red]")
        raise typer.Exit(2) from None
    except SwitchBlocked as blocked:
        console.print(f"[red]{blocked}[/red]")
        raise typer.Exit(1) from None
    finally:
        department.close()
    console.print(f"switched {label} at position {report.position}")
    for table, (before, after) in report.rows.items():
        console.print(f"  {table}: {before} rows before, {after} after")


@app.command()
def verify(
    published: str | None = typer.Option(
        None, "--checkpoints", metavar="DIR|FILE|URL",
        help="Also check the log against the signed checkpoints published there (`checkpoints publish`; a URL is"
             " read with GET, one JSON line each): each signature against the key on its line, and each tree's root"
             " recomputed from the events' bytes."),
    trust_key: list[str] = typer.Option(
        [], "--trust-key", metavar="KEY_ID",
        help="With --checkpoints: accept only checkpoints signed by this key (its key_id, as `keys show` prints"
             f" it); repeat for rotated keys. Default: {witness.TRUSTED_KEYS_VARIABLE} (comma-separated)."),
) -> None:
    """Check every event's hash, each stream's chain and the seals over the whole log; with
    --checkpoints, also that the log is still the one each published checkpoint signed, using
    nothing of the database but the events' bytes (docs/audit.md). With --trust-key, a published
    checkpoint signed by any other key is a failure; without, the keys accepted are listed.
    Exit code 0 only when everything checks; 2 when the schema is behind, the checkpoints cannot
    be read or a key id is malformed (it reads only, so a read-only role or a standby can run it:
    it never migrates)."""
    if trust_key and published is None:
        typer.secho("--trust-key pins the keys of published checkpoints: give --checkpoints too", err=True, fg="red")
        raise typer.Exit(2)
    trusted = None
    if published is not None:
        try:
            trusted = witness.trusted_keys(trust_key, os.environ.get(witness.TRUSTED_KEYS_VARIABLE))
        except ValueError as malformed:
            typer.secho(str(malformed), err=True, fg="red")
            raise typer.Exit(2) from None
    url = database_url()
    _schema_current(url)
    witnessed = None
    if published is not None:
        try:
            witnessed = witness.read_published(published)
        except witness.WitnessUnreadable as unreadable:
            typer.secho(str(unreadable), err=True, fg="red")
            raise typer.Exit(2) from None
    department = ChannelDepartment(url)
    try:
        head = department.event_recorder.max_notification_id() or 0
        with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("verify", total=head, rate="")

            def advance(position: int) -> None:
                bar.update(task, completed=position, rate=f"{bar.tasks[task].speed or 0:,.0f} events/s")

            result = integrity.verify(department.event_recorder.datastore, advance)
        against = None
        if witnessed is not None:
            largest = max((w.tree_size for w in witnessed), default=0)
            with Progress(TextColumn("against published checkpoints"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=console) as bar:
                task = bar.add_task("witness", total=largest)
                against = witness.verify_against(department.event_recorder.datastore, witnessed,
                                                 lambda done: bar.update(task, completed=done), trusted=trusted)
    finally:
        department.close()
    if result.ok:
        console.print(f"[green]ok[/green]: {result.events} events; sealed through position "
                      f"{result.verified_through}, head {result.head_hash}; {result.unsealed} not yet sealed")
    else:
        console.print(f"[red]NOT OK at position {result.first_bad_position}[/red]: {result.problem}")
        console.print(f"verified through position {result.verified_through}, head {result.head_hash}")
    if against is not None:
        # Plain lines, not wrapped to the terminal: scripts and auditors grep for the checkpoint named.
        if against.ok:
            typer.echo(f"ok: the log matches all {against.checkpoints} published checkpoints in {published}"
                       f" (the largest a tree of {against.largest_tree} events)")
        else:
            typer.echo(f"NOT OK against {against.failed.name}: {against.problem}")
        _say_signers(against)
    if not result.ok or (against is not None and not against.ok):
        raise typer.Exit(1)


def _say_signers(against: witness.WitnessCheck) -> None:
    """Which keys the published checkpoints were accepted from: a signature proves only that the
    line's own key signed it, so without pins a person must recognise these ids."""
    if not against.signers:
        return  # a signature or key failed: the line is named above
    (first, count), *others = against.signers.items()
    typer.echo(f"signed by key {first} ({count} checkpoint{'' if count == 1 else 's'})"
               + "".join(f", {key_id} ({n})" for key_id, n in others))
    if against.trusted is not None:
        typer.echo(f"every one of them trusted: {', '.join(sorted(against.trusted))}")
        return
    pins = " ".join(f"--trust-key {key_id}" for key_id in against.signers)
    typer.echo("no key is pinned, so a checkpoint signed by any key was accepted: compare these key ids with the"
               " ones the service gave you (`channel-domain keys show`, GET /v1/audit/public-key), then pin them"
               f" with {pins} (or {witness.TRUSTED_KEYS_VARIABLE}={','.join(against.signers)}); a checkpoint signed"
               " by any other key is then a failure")


@app.command()
def export(output: typer.FileTextWrite = typer.Option("-", help="File to write; standard output by default.")) -> None:
    """Write the whole event log as NDJSON, in position order, with hashes and the latest seal
    (docs/audit.md shows how to verify the file offline). Reads only: never migrates; exit code 2
    when the schema is behind."""
    url = database_url()
    _schema_current(url)
    department = ChannelDepartment(url)
    try:
        for page in integrity.export(department.event_recorder.datastore):
            output.write(page)
    except Exception as error:  # noqa: BLE001 - whatever stopped it, the file must not pass for whole
        # The file already lacks its closing checkpoint line, which the offline check
        # requires; say so, and exit non-zero for scripts that only look at the status.
        Console(stderr=True).print(f"[red]export failed, the output is incomplete: {error}[/red]")
        raise typer.Exit(1) from None
    finally:
        department.close()


# Signing keys of the checkpoints (docs/audit.md, "Signed checkpoints and Merkle proofs") ------------

keys_app = typer.Typer(help="The Ed25519 key signed checkpoints are made with: a file, never in the database.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")

KeyFile = typer.Option(
    None, "--key-file", envvar=checkpoints.KEY_FILE_VARIABLE, show_default=False,
    help="The private key's PEM file (default: var/keys/checkpoint.pem).")


def _key_path(given: str | None) -> Path:
    return Path(given) if given else checkpoints.key_file()


def _print_key(key: checkpoints.SigningKey) -> None:
    typer.echo(f"key_id: {key.key_id}")
    typer.echo(f"private key file: {key.path}")
    typer.echo(f"public key (raw, base64): {base64.b64encode(key.raw_public).decode()}")
    typer.echo("public key (PEM):")
    typer.echo(checkpoints.public_pem(key.raw_public), nl=False)


@keys_app.command("create")
def keys_create(key_file: str | None = KeyFile) -> None:
    """Make the signing key: a new PEM file with 0600 rights, its public key stored in the
    database as the current one. Refuses (exit 2) to overwrite an existing file: `keys rotate`."""
    path = _key_path(key_file)
    with _connection() as conn:  # the database first: if it cannot be reached, no file is left behind
        try:
            key = checkpoints.create_key_file(path)
        except checkpoints.KeyExists as refused:
            typer.secho(str(refused), err=True, fg="red")
            raise typer.Exit(2) from None
        with conn.transaction(), conn.cursor(row_factory=dict_row) as curs:
            retired = checkpoints.make_current(curs, key)
    typer.echo(f"created {path} (mode {checkpoints.mode_of(path):04o})")
    if retired:
        typer.echo(f"retired keys no file holds any more: {', '.join(retired)} (their checkpoints stay verifiable)")
    _print_key(key)


@keys_app.command("rotate")
def keys_rotate(key_file: str | None = KeyFile) -> None:
    """Replace the signing key with a new one: the old public key stays in the database, retired,
    so that the checkpoints it signed stay verifiable. The next checkpoint is signed with the new
    key, without a restart. Exit code 2 when there is no key to replace (`keys create`)."""
    path = _key_path(key_file)
    if not path.exists():
        typer.secho(f"no key at {path} to rotate: channel-domain keys create", err=True, fg="red")
        raise typer.Exit(2)
    with _connection() as conn:
        key, old = checkpoints.replace_key_file(path)
        with conn.transaction(), conn.cursor(row_factory=dict_row) as curs:
            if old is not None:
                checkpoints.register(curs, old)  # never signed with yet: still listed, retired
            retired = checkpoints.make_current(curs, key)
    typer.echo(f"rotated {path}: new key {key.key_id}; retired {', '.join(retired) or 'none'}")
    _print_key(key)


@keys_app.command("show")
def keys_show(key_file: str | None = KeyFile) -> None:
    """Print the signing key's key_id and public key (PEM and raw base64); never the private key.
    Exit code 1 when there is none."""
    try:
        key = checkpoints.load_key(_key_path(key_file))
    except checkpoints.KeyMissing as missing:
        typer.secho(str(missing), err=True, fg="red")
        raise typer.Exit(1) from None
    mode = checkpoints.mode_of(key.path)
    if mode & 0o077:
        typer.secho(f"warning: {key.path} has mode {mode:04o}: others than its owner may read it (chmod 600)",
                    err=True, fg="yellow")
    _print_key(key)


# Publishing checkpoints to a witness (docs/audit.md, "Publishing checkpoints to a witness") --------

checkpoints_app = typer.Typer(help="Signed checkpoints: copy them to a witness outside the database.",
                              no_args_is_help=True)
app.add_typer(checkpoints_app, name="checkpoints")


@checkpoints_app.command("publish")
def checkpoints_publish(
    to: str = typer.Option(..., "--to", metavar="DIR|FILE|URL",
                           help="A directory (its checkpoints.ndjson; a path not there yet is one unless it ends"
                                " in .ndjson, .jsonl or .json), a file, or an http(s) URL to POST to."),
    follow: bool = typer.Option(False, "--follow", help="Keep publishing new checkpoints until interrupted."),
    interval: float | None = typer.Option(
        None, min=0.1, help="With --follow: seconds between looks (default: the checkpoint interval,"
                            f" {checkpoints.INTERVAL_VARIABLE}, 10 s)."),
) -> None:
    """Append every signed checkpoint not yet published to DIR/checkpoints.ndjson (or FILE), one
    JSON line each with the public key that signed it; or POST each to URL as JSON, a 2xx answer
    accepting it. A file resumes after its last line, which must be one of this database's
    checkpoints (exit 1 otherwise: check with `verify --checkpoints`); a URL after the last
    checkpoint it accepted; a redirect (3xx) is a failure, never followed. Exit code 1 when the
    target refuses, redirects or cannot be reached (with --follow: retried, unless the file
    contradicts the database or the URL redirects)."""
    url = database_url()
    _schema_current(url)
    if follow and interval is None:
        try:
            interval = checkpoints.interval_s()
        except ValueError as error:
            typer.secho(str(error), err=True, fg="red")
            raise typer.Exit(2) from None
    department = ChannelDepartment(url)
    datastore = department.event_recorder.datastore
    stop = threading.Event()
    if follow:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    trouble = ""
    try:
        while True:
            try:
                done = witness.publish(datastore, to)
                trouble = ""
                if done.count or not follow:
                    last = done.last or {}
                    typer.echo(f"published {done.count} checkpoint(s) to {done.target}"
                               + (f"; it now ends with tree size {last['tree_size']} ({last['timestamp']})"
                                  if last else "; it holds none yet"))
            except witness.PublishRefused as refused:
                typer.secho(f"refused: {refused}", err=True, fg="red")
                raise typer.Exit(1) from None
            except witness.PublishRedirected as redirected:  # with --follow too: retrying cannot fix an address
                typer.secho(f"{redirected} ({redirected.published} published before it)", err=True, fg="red")
                raise typer.Exit(1) from None
            except witness.PublishFailed as failed:
                if not follow:
                    typer.secho(f"{failed} ({failed.published} published before it)", err=True, fg="red")
                    raise typer.Exit(1) from None
                if str(failed) != trouble:  # said once per trouble, not every look
                    typer.secho(f"{failed}; trying again", err=True, fg="yellow")
                    trouble = str(failed)
            if not follow or stop.wait(interval):
                return
    finally:
        department.close()


# Read models stopped at a poison event (docs/reliability.md, "A poison event stops one read model") ----

projections_app = typer.Typer(help="Read models: their state, and resuming one stopped at an event it cannot apply.",
                              no_args_is_help=True)
app.add_typer(projections_app, name="projections")


def _read_model_name(name: str) -> str:
    known = [p.name for p in all_projections()]
    if name not in known:
        console.print(f"[red]no read model {name!r}; there are {', '.join(known)}[/red]")
        raise typer.Exit(2)
    return name


@projections_app.command("status")
def projections_status(
    show_traceback: bool = typer.Option(False, "--traceback", help="Also print each failing read model's traceback."),
) -> None:
    """Each read model: running or failing, its position, the log's head, and for a failing one
    the event it stopped at and why. Exit code 1 when any is failing."""
    url = database_url()
    apply_migrations(url)
    department = ChannelDepartment(url)
    try:
        progress = ProjectionRunner(department, all_projections()).progress()
        tracebacks = {p.name: projecting.failure_of(department.event_recorder.datastore, p.name)
                      for p in progress if p.failure is not None} if show_traceback else {}
    finally:
        department.close()
    table = Table("read model", "status", "position", "head", "lag", "stopped at")
    for p in progress:
        table.add_row(p.name, "[red]failing[/red]" if p.failure else "[green]running[/green]", str(p.position),
                      str(p.head), str(p.lag), str(p.failure.position) if p.failure else "")
    console.print(table)
    # The details below the table, not in it: an error message does not fit a column.
    for p in progress:
        if p.failure is None:
            continue
        failure = p.failure
        typer.echo(f"{p.name}: failing since {failure.since:%Y-%m-%d %H:%M:%S %z} after {failure.attempts} attempts,"
                   f" stopped at position {failure.position} ({failure.event_type}, event {failure.event_id}):")
        typer.echo(f"  {failure.error}")
        stored = tracebacks.get(p.name)
        if stored is not None:
            typer.echo(stored[1])
    if any(p.failure is not None for p in progress):
        console.print("once the cause is fixed: channel-domain projections retry NAME; to pass over the one event"
                      " instead: channel-domain projections retry NAME --skip POSITION --reason TEXT --actor YOU")
        raise typer.Exit(1)


@projections_app.command("retry")
def projections_retry(
    name: str = typer.Argument(..., help="The read model, as in `projections status`."),
    skip_position: int | None = typer.Option(
        None, "--skip", min=1, help="Pass over the event at this position, where the read model is stopped, instead"
        " of applying it again: recorded as an audit event (needs --reason and --actor)."),
    reason: str | None = typer.Option(None, help="Why: kept in the audit event (required with --skip)."),
    actor: str | None = typer.Option(None, help="Who decides: the audit event's actor (required with --skip;"
                                                " else your OS user name)."),
) -> None:
    """Resume a read model stopped at an event: the workers try it again from its checkpoint
    (after a fix is deployed), or, with --skip, go on past that one event. Either is recorded
    as an audit event (ProjectionRetry.Ordered, ProjectionSkip.Decided)."""
    if skip_position is not None:
        _skip(name, skip_position, reason, actor)
        return
    name = _read_model_name(name)
    actor = _operator(projecting.os_user_name() if actor is None else actor)
    url = database_url()
    apply_migrations(url)
    department = ChannelDepartment(url)
    try:
        with acting_as(actor, (OPERATOR_ROLE,)):
            retried = projecting.retry(department, name, reason)
        checkpoint = ProjectionRunner(department, []).checkpoint(name)
    except ValidationFailed as invalid:
        console.print(f"[red]{invalid}[/red]")
        raise typer.Exit(2) from None
    finally:
        department.close()
    if retried is None:
        console.print(f"{name} is not failing (position {checkpoint})")
        raise typer.Exit(1)
    cleared, outcome = retried
    console.print(f"{name}: failing state cleared by {actor} (it stopped at position {cleared.position},"
                  f" {cleared.event_type}: {cleared.error}); the workers resume from position {checkpoint};"
                  f" recorded as the event at position {outcome.position} (record {outcome.id})")
    if outcome.extra.get("skip_decision") is not None:
        evidence = not getattr(next(p for p in all_projections() if p.name == name), "rebuildable", True)
        console.print(f"a skip of position {cleared.position} was already decided (record"
                      f" {outcome.extra['skip_decision']}, an interrupted skip): "
                      + ("the workers apply the event all the same: evidence never passes over one" if evidence
                         else "the workers pass over it"))


@projections_app.command("skip")
def projections_skip(
    name: str = typer.Argument(..., help="The read model, as in `projections status`."),
    position: int = typer.Option(..., min=1, help="The position the read model is stopped at."),
    reason: str = typer.Option(..., help="Why the event is skipped: kept in the audit event."),
    actor: str = typer.Option(..., help="Who decides: the audit event's actor."),
) -> None:
    """Same as `projections retry NAME --skip POSITION --reason TEXT --actor YOU`."""
    _skip(name, position, reason, actor)


def _operator(actor: str) -> str:
    """The actor as typed, without the spaces a shell quote lets through; refused when nothing
    is left (the event also records the OS user, host and database role, docs/audit.md)."""
    actor = actor.strip()
    if not actor:
        console.print("[red]--actor: a name is required[/red]")
        raise typer.Exit(2)
    return actor


def _skip(name: str, position: int, reason: str | None, actor: str | None) -> None:
    if not reason or not reason.strip() or not actor or not actor.strip():
        console.print("[red]a skip is an operator's recorded decision: give --reason and --actor[/red]")
        raise typer.Exit(2)
    name = _read_model_name(name)
    evidence = next(p for p in all_projections() if p.name == name)
    if not getattr(evidence, "rebuildable", True):
        console.print(f"[red]{name} is evidence, not a view: skipping an event would leave it out of the proofs"
                      f" (docs/audit.md). Fix the cause, then: channel-domain projections retry {name}[/red]")
        raise typer.Exit(2)
    actor = _operator(actor)
    url = database_url()
    apply_migrations(url)
    department = ChannelDepartment(url)
    try:
        with acting_as(actor, (OPERATOR_ROLE,)):
            outcome = projecting.skip(department, name, position, reason)
    except (projecting.SkipRefused, ValidationFailed) as refused:
        console.print(f"[red]{refused}[/red]")
        raise typer.Exit(2) from None
    finally:
        department.close()
    console.print(f"{name}: position {position} skipped, by {actor}; the decision is the event at position"
                  f" {outcome.position} (record {outcome.id}, GET /v1/audit/events?stream_id={outcome.id})")

@app.command()
def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
    older_than: str = typer.Option(
        None, help="Delete what is older than this (30d, 36h, 2w; at least a day) instead of the window "
                   f"{retention.RETENTION_VARIABLE} sets (default {retention.DEFAULT_WINDOW.days} days)."),
    batch_size: int = typer.Option(1000, min=1, help="Rows per transaction: each batch holds its locks briefly."),
) -> None:
    """Delete idempotency outcomes and keyed-import line records older than the retention window.
    A repeat of a request after that is a new command. Safe beside running servers."""
    try:
        window = retention.parse_window(older_than) if older_than else retention.retention_window()
    except ValueError as refused:
        console.print(f"[red]{refused}[/red]")
        raise typer.Exit(2) from None
    url = database_url()
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        found = retention.count(conn, window)
        console.print(f"older than {window} (recorded before {found.cutoff:%Y-%m-%d %H:%M:%S %Z}):")
        for table, rows in found.rows.items():
            console.print(f"  {table}: {rows} rows{'' if dry_run else ' to delete'}")
        if dry_run:
            console.print("dry run: nothing deleted")
            return
        with Progress(TextColumn("purging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task("purge", total=sum(found.rows.values()))
            done = retention.purge(conn, window, batch_size, lambda _table, rows: bar.advance(task, rows),
                                   cutoff=found.cutoff)
    for table, rows in done.rows.items():
        console.print(f"  {table}: {rows} rows deleted")
    left = {table: found.rows[table] - rows for table, rows in done.rows.items() if found.rows[table] > rows}
    if left:
        console.print(f"kept for now, in use by a running command: {left}; the next purge takes them")


# Relays to message brokers (docs/integration.md, "NATS JetStream relay") ----------------------

relay_app = typer.Typer(help="Relay the event log to a message broker, and see how far each relay is.",
                        no_args_is_help=True)
app.add_typer(relay_app, name="relay")

EXIT_NATS_UNAVAILABLE = 3


@relay_app.command("nats")
def relay_nats(
    url: str = typer.Option(..., envvar=nats_relay.URL_VARIABLE, help="NATS server, nats://HOST:4222."),
    stream: str = typer.Option(nats_relay.DEFAULT_STREAM, help="JetStream stream to publish to (created when missing)."),
    subject_prefix: str = typer.Option(
        nats_relay.DEFAULT_SUBJECT_PREFIX, help="Subjects are PREFIX.<stream type>.<event name>; the stream takes PREFIX.>."),
    batch_size: int = typer.Option(1000, min=1, help="Messages published before their acknowledgements are awaited."),
    poll_interval: float = typer.Option(0.02, min=0.001, help="Seconds between looks at the log when it has nothing new."),
    log_format: str | None = typer.Option(None, help="json or text (env CHANNEL_DOMAIN_LOG_FORMAT)."),
    continue_from: list[str] = typer.Option(
        [], metavar="SOURCE", help="Go on from a stream whose last message came from SOURCE (as the refusal names"
        " it): this database continues that one's log (restored or upgraded into a new cluster)."),
) -> None:
    """Publish every event, in position order, to JetStream subject PREFIX.<stream type>.<event
    name> with Nats-Msg-Id = the event id and the feed item as body, until interrupted. One relay
    runs per stream and prefix; start a second as a standby: it takes over within 5 s when the
    first dies (about 15 s when its host vanishes). Exit code 3 when NATS or JetStream cannot be
    reached at start; 2 for a stream or prefix NATS would refuse, or a stream whose last message
    another database or prefix published (at start or whenever the relay syncs)."""
    import asyncio

    try:
        logging_setup.configure(logging_setup.choose_format(log_format))
        nats_relay.check_names(stream, subject_prefix)
    except ValueError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    db_url = database_url()
    apply_migrations(db_url)
    department = ChannelDepartment(db_url)
    relay = nats_relay.NatsRelay(department, db_url, url=url, stream=stream, subject_prefix=subject_prefix,
                                 batch_size=batch_size, poll_s=poll_interval, continue_from=continue_from)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await relay.connect()
            console.print(f"relaying to stream {stream} ({subject_prefix}.>) on {nats_relay.shown_url(url)};"
                          " Ctrl-C to stop")
            await relay.run(stop)
        finally:
            await relay.close()

    try:
        asyncio.run(run())
    except nats_relay.NatsUnavailable as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(EXIT_NATS_UNAVAILABLE) from None
    except nats_relay.RelayConfigError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    finally:
        department.close()


@relay_app.command("status")
def relay_status() -> None:
    """Each relay this database has known: its stream and prefix, the last position JetStream
    acknowledged, the log's head, the lag, and whether a relay holds its lock now. Exit code 1
    when none is running, or when a position is beyond the log's head (events would be skipped)."""
    url = database_url()
    _schema_current(url)
    with psycopg.connect(url, autocommit=True) as conn:
        progress = nats_relay.relay_progress(conn)
    table = Table("stream", "subjects", "running", "position", "head", "lag", "updated", "last taken by")
    for p in progress:
        table.add_row(p.stream, f"{p.subject_prefix}.>", "[green]yes[/green]" if p.active else "[red]no[/red]",
                      f"[red]{p.position} > head[/red]" if p.beyond_head else str(p.position), str(p.head),
                      str(p.lag), f"{p.updated_at:%Y-%m-%d %H:%M:%S}",
                      f"{p.holder} since {p.holder_since:%Y-%m-%d %H:%M:%S}" if p.holder and p.holder_since else "")
    console.print(table)
    beyond = [p for p in progress if p.beyond_head]
    for p in beyond:
        console.print(f"[red]stream {p.stream} ({p.subject_prefix}.>): position {p.position} is beyond the log's head"
                      f" {p.head}: the checkpoint is not this log's (restored from an older backup? moved by hand?);"
                      " the relay would skip events up to it[/red]")
    if not any(p.active for p in progress):
        console.print("no relay is running")
        raise typer.Exit(1)
    if beyond:
        raise typer.Exit(1)
