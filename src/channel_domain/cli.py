"""`channel-domain`: migrate the schema, serve the API."""

from __future__ import annotations

import os

import typer
from rich.console import Console

from channel_domain.store.database import DATABASE_URL_VARIABLE, database_url
from channel_domain.store.migrations import migrate as apply_migrations

app = typer.Typer(help="channel-domain: the sales-channel department service.", no_args_is_help=True)
console = Console()


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema from migrations/ (safe to run again)."""
    url = database_url()
    applied = apply_migrations(url)
    if applied:
        for migration_id in applied:
            console.print(f"applied [bold]{migration_id}[/bold]")
    else:
        console.print("schema is up to date")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes."),
) -> None:
    """Serve the HTTP API with uvicorn (migrates first)."""
    import uvicorn

    url = database_url()
    apply_migrations(url)
    # Workers are separate processes: hand them the resolved URL, embedded server included.
    os.environ[DATABASE_URL_VARIABLE] = url
    console.print(f"serving on http://{host}:{port}  (health: http://{host}:{port}/health)")
    uvicorn.run(
        "api.app:app_from_environment", factory=True, host=host, port=port, workers=workers
    )
