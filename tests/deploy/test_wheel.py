"""The service as an operator installs it: a built wheel in a virtualenv outside the checkout.

The wheel is built from a fresh copy of the checkout's tracked files, as a release is built from
a clean checkout: nothing from an earlier build is reused, and nothing is left in the checkout.

Its dependencies come from the test environment's site-packages through a `.pth` file (that
directory only, not the checkout: a `.pth` line adds a plain directory, whose own `.pth` files,
such as an editable install's, are not read), so the test costs a build and a copy, not a
download. PYTHONPATH is dropped and every command runs in a folder outside the checkout, so
nothing can be imported from the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from channel_domain.store.database import scratch_database
from channel_domain.store.migrations import MigrationsNotFound, migrate
from tests.servers import free_port, wait_until_up

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path  # outside the checkout

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def package(self) -> Path:
        return self.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "channel_domain"

    def run(self, *args: str, url: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=self.workdir, env=self.env(url), capture_output=True, text=True,
                              timeout=timeout)

    def env(self, url: str | None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        if url:
            env["CHANNEL_DOMAIN_DATABASE_URL"] = url
        return env


def check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}: {result.stdout}{result.stderr}"
    return result


def migration_files() -> list[str]:
    return sorted(p.stem for p in (REPO / "migrations").iterdir() if p.suffix in (".sql", ".py"))


def copy_tracked_files(destination: Path) -> None:
    """The checkout's tracked files as they are in the working tree (uncommitted edits included,
    untracked and ignored files left out), symlinks kept as symlinks. A build in the checkout
    itself reuses its `build/lib`, so a migration deleted or renamed since an earlier build
    stayed in the wheel, and it leaves `build/` and `src/*.egg-info` behind."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = REPO / name, destination / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree, not yet in the index
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


def build_outputs() -> dict[str, float]:
    """What a build in the checkout writes there (`build/`, `src/*.egg-info`), with mtimes."""
    found = [REPO / "build", *(REPO / "src").glob("*.egg-info")]
    return {str(path.relative_to(REPO)): path.stat().st_mtime
            for top in found if top.exists() for path in [top, *top.rglob("*")]}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO)
    source, dist, venv, workdir = root / "source", root / "dist", root / "venv", root / "work"
    workdir.mkdir()
    installation = Installed(venv, workdir)
    copy_tracked_files(source)
    in_the_checkout = build_outputs()
    # Without PYTHONPATH: pip would take the checkout's src/*.egg-info for an installed copy.
    check(installation.run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist),
                           str(source), timeout=300))
    assert build_outputs() == in_the_checkout, "the build wrote into the checkout"
    [wheel] = dist.glob("channel_domain-*.whl")
    check(installation.run(sys.executable, "-m", "venv", "--without-pip", str(venv)))
    check(installation.run(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                           "--no-deps", "--quiet", str(wheel), timeout=300))
    here = sysconfig.get_paths()
    dependencies = sorted({here["purelib"], here["platlib"]})
    (installation.package.parent / "_test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    yield installation
    shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_migrates_and_serves_from_outside_the_checkout(installed, server_url):
    located = check(installed.run(
        str(installed.bin / "python"), "-c",
        "import api, channel_domain, projections\n"
        "from channel_domain.store.migrations import MIGRATIONS_DIR\n"
        "print(channel_domain.__file__, api.__file__, projections.__file__, MIGRATIONS_DIR, sep='\\n')",
    )).stdout.split()
    for path in map(Path, located):
        assert path.is_relative_to(installed.venv), path
        assert not path.resolve().is_relative_to(REPO), path
    assert sorted(p.stem for p in Path(located[-1]).iterdir() if p.suffix in (".sql", ".py")) == migration_files()

    with scratch_database(server_url, prefix="cd_test_wheel") as url:
        migrated = check(installed.run(str(installed.bin / "channel-domain"), "migrate", url=url))
        with psycopg.connect(url) as conn:
            applied = sorted(row[0] for row in conn.execute("SELECT migration_id FROM _yoyo_migration"))
        assert applied == migration_files(), migrated.stdout

        created = check(installed.run(str(installed.bin / "channel-domain"), "tokens", "create", "--actor", "spec-1",
                                      "--role", "channel_specialist", url=url))
        token = created.stdout.strip().splitlines()[-1]
        port = free_port()
        log = installed.workdir / "serve.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [str(installed.bin / "channel-domain"), "serve", "--port", str(port), "--workers", "1",
                 "--no-projections"],
                cwd=installed.workdir, env=installed.env(url), stdout=output, stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, server, log.read_text)
            auth = {"Authorization": f"Bearer {token}"}
            answer = httpx.post(f"{base}/v1/partners", json={"kind": "retailer", "name": "Corner Shop"},
                                headers=auth, timeout=10)
            assert answer.status_code == 201, answer.text
            read = httpx.get(f"{base}{answer.headers['location']}", headers=auth, timeout=10)
            assert read.status_code == 200 and read.json()["name"] == "Corner Shop"
        finally:
            server.terminate()
            server.wait(timeout=15)


def test_an_install_without_its_migrations_refuses_to_migrate_or_serve(installed, server_url):
    shipped = installed.package / "migrations"
    aside = shipped.with_name("migrations-aside")
    shipped.rename(aside)
    try:
        with scratch_database(server_url, prefix="cd_test_wheel") as url:
            missing = installed.run(str(installed.bin / "channel-domain"), "migrate", url=url)
            assert missing.returncode != 0
            assert "cannot migrate: no migrations folder" in missing.stdout + missing.stderr
            shipped.mkdir()
            empty = installed.run(str(installed.bin / "channel-domain"), "migrate", url=url)
            assert empty.returncode != 0
            assert "holds no migrations" in empty.stdout + empty.stderr
            serve = installed.run(str(installed.bin / "channel-domain"), "serve", "--port", str(free_port()),
                                  url=url, timeout=60)
            assert serve.returncode != 0
            assert "MigrationsNotFound" in serve.stdout + serve.stderr
            with psycopg.connect(url) as conn:
                tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
            assert tables == 0  # refused before touching the database
    finally:
        shutil.rmtree(shipped, ignore_errors=True)
        aside.rename(shipped)


def test_migrate_refuses_a_missing_or_empty_folder(tmp_path, server_url):
    with scratch_database(server_url, prefix="cd_test_wheel") as url:
        with pytest.raises(MigrationsNotFound, match="no migrations folder"):
            migrate(url, directory=tmp_path / "absent")
        (tmp_path / "README").write_text("not a migration")
        with pytest.raises(MigrationsNotFound, match="holds no migrations"):
            migrate(url, directory=tmp_path)
