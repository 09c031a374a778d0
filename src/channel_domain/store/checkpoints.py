"""Signed checkpoints of the Merkle tree, and the Ed25519 keys that sign them (docs/audit.md,
"Signed checkpoints and Merkle proofs").

The private key is a PEM file (PKCS #8, unencrypted), `var/keys/checkpoint.pem` with 0600
rights by default, or the file `CHANNEL_DOMAIN_CHECKPOINT_KEY_FILE` names (a secret store's
mount). It never enters the database: the process that signs — `serve`, `project` — reads the
file each time it signs, so a rotated key is used from the next checkpoint on without a restart.
Public keys are stored in `checkpoint_keys` and kept when retired, so that every checkpoint
ever signed stays verifiable by its `key_id`.

The signed body, byte for byte (UTF-8, each line ending in \\n):

    channel-domain/checkpoint/v1
    <tree size, decimal>
    <root hash, lowercase hex>
    <timestamp, UTC: YYYY-MM-DDTHH:MM:SS.ffffffZ>
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from channel_domain.store import merkle

logger = logging.getLogger(__name__)

BODY_TAG = "channel-domain/checkpoint/v1"
KEY_FILE_VARIABLE = "CHANNEL_DOMAIN_CHECKPOINT_KEY_FILE"
INTERVAL_VARIABLE = "CHANNEL_DOMAIN_CHECKPOINT_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0
KEY_FILE_MODE = 0o600


def default_key_file() -> Path:
    return Path(os.environ.get("CHANNEL_DOMAIN_VAR_DIR", "var")) / "keys" / "checkpoint.pem"


def key_file() -> Path:
    given = os.environ.get(KEY_FILE_VARIABLE, "").strip()
    return Path(given) if given else default_key_file()


def interval_s() -> float:
    given = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not given:
        return DEFAULT_INTERVAL_S
    try:
        value = float(given)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{INTERVAL_VARIABLE} must be a number of seconds above 0: {given!r}")
    return value


def body(tree_size: int, root_hash: bytes, timestamp: str) -> str:
    return f"{BODY_TAG}\n{tree_size}\n{root_hash.hex()}\n{timestamp}\n"


def timestamp_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def public_pem(raw_public: bytes) -> str:
    return Ed25519PublicKey.from_public_bytes(raw_public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# --- the key file ---------------------------------------------------------------------------


class KeyMissing(RuntimeError):
    """No signing key where the configuration says it is."""


class KeyRetired(KeyMissing):
    """The key file holds a key `keys rotate` has retired (a node left with an old copy): what
    it signed would pass for current, so it signs nothing until it has the current key."""


class TreeRewritten(RuntimeError):
    """The stored tree does not extend a checkpoint already signed: the tree's or the
    checkpoints' tables were altered. Signing it would vouch for the rewrite, so nothing is
    signed until an operator finds out what happened (`channel-domain verify --checkpoints`)."""


class KeyExists(RuntimeError):
    """`keys create` would overwrite a key."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    path: Path

    @property
    def raw_public(self) -> bytes:
        return raw_public_key(self.private.public_key())

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw_public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def load_key(path: Path | None = None) -> SigningKey:
    path = path or key_file()
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeyMissing(f"no checkpoint signing key at {path} (create one: channel-domain keys create;"
                         f" or set {KEY_FILE_VARIABLE})") from None
    except OSError as error:
        raise KeyMissing(f"the checkpoint signing key at {path} cannot be read: {error}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:  # not a PEM key, or one under a password
        raise KeyMissing(f"{path} holds no usable private key: {error}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyMissing(f"{path} holds no Ed25519 private key")
    return SigningKey(private, path)


def _pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def _write_new(path: Path, pem: bytes) -> None:
    """Create `path` with 0600 rights, refusing to overwrite (O_EXCL: no window in which
    another process's key could be replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.fchmod(descriptor, KEY_FILE_MODE)  # whatever the umask
        os.write(descriptor, pem)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def create_key_file(path: Path | None = None) -> SigningKey:
    path = path or key_file()
    private = Ed25519PrivateKey.generate()
    try:
        _write_new(path, _pem(private))
    except FileExistsError:
        raise KeyExists(f"{path} exists already: `channel-domain keys rotate` replaces a key") from None
    return SigningKey(private, path)


def replace_key_file(path: Path | None = None) -> tuple[SigningKey, SigningKey | None]:
    """A new key in place of the one at `path` (the new one and the old one, if any). The new
    file is written beside it and renamed over it, so a reader sees the old key or the new one,
    never half a file."""
    path = path or key_file()
    try:
        old = load_key(path)
    except KeyMissing:
        old = None
    private = Ed25519PrivateKey.generate()
    if old is not None:  # before the old key is gone: a crash between leaves it listed, never lost
        _remember_retired(path, old)
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)  # left by a rotation interrupted before its rename
    _write_new(fresh, _pem(private))
    os.replace(fresh, path)
    return SigningKey(private, path), old


def retired_keys_file(key_path: Path) -> Path:
    """The public keys `keys rotate` retired from `key_path`, one `<key_id> <raw, base64>` line
    each: what the maker trusts besides its own key, from outside the database."""
    return key_path.with_name(f"{key_path.name}.retired")


def _remember_retired(key_path: Path, old: SigningKey) -> None:
    listed = retired_keys_file(key_path)
    if old.key_id in _read_retired(listed):
        return
    descriptor = os.open(listed, os.O_WRONLY | os.O_CREAT | os.O_APPEND, KEY_FILE_MODE)
    try:
        os.write(descriptor, f"{old.key_id} {base64.b64encode(old.raw_public).decode()}\n".encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_retired(listed: Path) -> dict[str, bytes]:
    try:
        text = listed.read_text()
    except FileNotFoundError:
        return {}
    keys = {}
    for number, line in enumerate(text.splitlines(), 1):
        key_id, _, encoded = line.strip().partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32 or key_id_of(raw) != key_id:
            raise KeyMissing(f"line {number} of {listed} is not `<key_id> <public key, base64>` of one key")
        keys[key_id] = raw
    return keys


def trusted_public_keys(key: SigningKey) -> dict[str, bytes]:
    """Key id -> raw public key of every key whose signature the maker accepts on a checkpoint
    it builds on: its own and those it retired. Never the database's list, which whoever can
    write to the database could extend with a key of their own."""
    return {**_read_retired(retired_keys_file(key.path)), key.key_id: key.raw_public}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- public keys in the database ------------------------------------------------------------


def register(cursor: Any, key: SigningKey) -> None:
    cursor.execute("INSERT INTO checkpoint_keys (key_id, public_key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                   (key.key_id, key.raw_public))


def make_current(cursor: Any, key: SigningKey) -> list[str]:
    """Register `key` and retire every other key still current; returns the ids retired."""
    register(cursor, key)
    cursor.execute("UPDATE checkpoint_keys SET retired_at = now() WHERE retired_at IS NULL AND key_id <> %s"
                   " RETURNING key_id", (key.key_id,))
    return [row["key_id"] for row in cursor.fetchall()]


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes
    created_at: datetime
    retired_at: datetime | None

    def as_dict(self, current: str | None) -> dict[str, Any]:
        return {"key_id": self.key_id, "public_key": base64.b64encode(self.raw).decode(), "pem": public_pem(self.raw),
                "created_at": self.created_at, "retired_at": self.retired_at, "current": self.key_id == current}


def public_keys(cursor: Any) -> tuple[list[PublicKey], str | None]:
    """Every public key, oldest first, and the current one's id: the newest not retired."""
    cursor.execute("SELECT key_id, public_key, created_at, retired_at FROM checkpoint_keys ORDER BY created_at, key_id")
    keys = [PublicKey(row["key_id"], bytes(row["public_key"]), row["created_at"], row["retired_at"])
            for row in cursor.fetchall()]
    current = [key.key_id for key in keys if key.retired_at is None]
    return keys, current[-1] if current else None


# --- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    id: int
    tree_size: int
    root_hash: bytes
    timestamp: str
    key_id: str
    signature: bytes
    body: str

    def as_dict(self) -> dict[str, Any]:
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex(), "timestamp": self.timestamp,
                "key_id": self.key_id, "signature": base64.b64encode(self.signature).decode(), "body": self.body}


_COLUMNS = 'id, tree_size, root_hash, "timestamp", key_id, signature, body'


def _checkpoint(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(row["id"], row["tree_size"], bytes(row["root_hash"]), row["timestamp"], row["key_id"],
                      bytes(row["signature"]), row["body"])


def latest(cursor: Any) -> Checkpoint | None:
    cursor.execute(f"SELECT {_COLUMNS} FROM merkle_checkpoints ORDER BY id DESC LIMIT 1")  # noqa: S608
    row = cursor.fetchone()
    return _checkpoint(row) if row else None


def page(cursor: Any, after: int, limit: int) -> list[Checkpoint]:
    cursor.execute(f"SELECT {_COLUMNS} FROM merkle_checkpoints WHERE id > %s ORDER BY id LIMIT %s",  # noqa: S608
                   (after, limit))
    return [_checkpoint(row) for row in cursor.fetchall()]


# One maker at a time across every process: the one that holds it sees the others' checkpoints.
_MAKER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('merkle_checkpoints', 0))"


STATE_FILE_VARIABLE = "CHANNEL_DOMAIN_CHECKPOINT_STATE_FILE"

# The latest checkpoint each datastore's maker signed or checked, in this process; and on disk
# (`state_file`), so that a restarted maker remembers too. Both are outside the database: a
# rewrite that removes checkpoints, or replaces them with ones under a forger's key, is caught
# by a maker that signed or saw the real ones.
_vouched_for: weakref.WeakKeyDictionary[Any, Checkpoint] = weakref.WeakKeyDictionary()


def state_file(key_path: Path) -> Path:
    given = os.environ.get(STATE_FILE_VARIABLE, "").strip()
    return Path(given) if given else key_path.with_name(f"{key_path.name}.last-signed.json")


def _database_of(cursor: Any) -> str:
    """Which database a remembered checkpoint is of: as this process reaches it (host, port,
    name), a fact of its configuration the database's content cannot change."""
    info = cursor.connection.info
    return f"{info.host}:{info.port}/{info.dbname}"


@dataclass(frozen=True)
class Remembered:
    id: int
    tree_size: int
    root_hash: bytes


def _remembered(path: Path, database: str) -> Remembered | None:
    try:
        known = json.loads(path.read_text()).get(database)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as error:
        raise TreeRewritten(f"the maker's record of what it signed, {path}, cannot be read: {error}") from None
    if known is None:
        return None
    return Remembered(int(known["id"]), int(known["tree_size"]), bytes.fromhex(known["root_hash"]))


_said_unwritable: set[Path] = set()


def _remember(path: Path, database: str, checkpoint: Checkpoint) -> None:
    """Record `checkpoint` as the latest this maker vouches for in `database` (written beside
    and renamed over, so a reader sees the old record or the new one). Where the file cannot
    be written (a read-only secret mount) the process's memory is all there is: said once."""
    try:
        try:
            known = json.loads(path.read_text())
        except FileNotFoundError:
            known = {}
        previous = known.get(database)
        if previous is not None and previous["tree_size"] >= checkpoint.tree_size:
            return
        known[database] = {"id": checkpoint.id, "tree_size": checkpoint.tree_size,
                           "root_hash": checkpoint.root_hash.hex(), "timestamp": checkpoint.timestamp}
        fresh = path.with_name(f".{path.name}.new")
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
        try:
            os.write(descriptor, json.dumps(known, indent=1).encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(fresh, path)
    except (OSError, ValueError) as error:
        if path not in _said_unwritable:
            _said_unwritable.add(path)
            logger.warning("cannot record the checkpoints signed in %s (%s): a restarted maker will not remember"
                           " them; set %s to a writable file", path, error, STATE_FILE_VARIABLE)


def _signed_by(checkpoint: Checkpoint, trusted: dict[str, bytes]) -> bool:
    raw = trusted.get(checkpoint.key_id)
    if raw is None or checkpoint.body != body(checkpoint.tree_size, checkpoint.root_hash, checkpoint.timestamp):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(checkpoint.signature, checkpoint.body.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def _why_not_extending(cursor: Any, size: int, signed: Checkpoint | Remembered, where: str) -> str | None:
    """Why a tree of `size` leaves, as stored, is not an extension of the `signed` one (None when it is)."""
    if size < signed.tree_size:
        return f"the tree has {size} leaves, fewer than the {signed.tree_size} of {where}"
    try:
        stored = merkle.root_of(cursor, signed.tree_size)
    except merkle.TreeDamaged as damaged:
        return f"{damaged} ({where} has {signed.tree_size} leaves)"
    if stored != signed.root_hash:
        return (f"the tree's first {signed.tree_size} leaves now have the root {stored.hex()}, not the"
                f" {signed.root_hash.hex()} of {where}")
    return None


def _check_extends(datastore: Any, cursor: Any, size: int, key: SigningKey) -> Checkpoint | None:
    """Raise TreeRewritten unless the stored tree extends the latest checkpoint in the database,
    signed by a key this maker trusts from outside the database, and the latest checkpoint this
    maker remembers signing or checking. Returns the database's latest checkpoint."""
    last = latest(cursor)
    if last is not None:
        where = f"checkpoint #{last.id} ({last.timestamp}, key {last.key_id})"
        trusted = trusted_public_keys(key)
        if last.key_id not in trusted:
            raise TreeRewritten(
                f"{where} is signed by a key that is neither this maker's ({key.key_id}) nor one it retired"
                f" (listed in {retired_keys_file(key.path)}): the checkpoints table was written by someone else."
                " If that key was really yours, add its line there")
        if not _signed_by(last, trusted):
            raise TreeRewritten(f"{where} does not verify under key {last.key_id}")
        problem = _why_not_extending(cursor, size, last, where)
        if problem:
            raise TreeRewritten(problem)
    database = _database_of(cursor)
    recorded = _remembered(state_file(key.path), database)
    vouched = _vouched_for.get(datastore)
    for remembered, whose in ((vouched, "this process"), (recorded, f"this maker ({state_file(key.path)})")):
        if remembered is None:
            continue
        where = f"checkpoint #{remembered.id} of {remembered.tree_size} leaves, which {whose} signed or checked"
        if last is None or last.tree_size < remembered.tree_size:
            has = "no checkpoint" if last is None else f"checkpoints of {last.tree_size} leaves at most"
            raise TreeRewritten(f"the database has {has}, behind {where}: checkpoints were removed")
        problem = _why_not_extending(cursor, size, remembered, where)
        if problem:
            raise TreeRewritten(problem)
    return last


def make(datastore: Any, key: SigningKey | None = None, *, only_if_due: float | None = None) -> Checkpoint | None:
    """Sign the tree as it stands and store the checkpoint. With `only_if_due` (seconds), only
    when the tree grew since the latest checkpoint and that one is at least that old (None
    otherwise). Raises KeyMissing when there is no key to sign with, KeyRetired when the key
    has been rotated out, TreeRewritten when the tree does not extend what was signed before."""
    key = key or load_key()
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute(_MAKER_LOCK)
        # The time once the lock is held, not the transaction's start: a maker that waited for
        # another signs after it, so timestamps grow with the checkpoints.
        curs.execute("SELECT clock_timestamp() AS now")
        now = curs.fetchone()["now"]
        size = merkle.tree_size(curs)
        if only_if_due is not None:
            curs.execute("SELECT tree_size, made_at > %s - make_interval(secs => %s) AS recent"
                         " FROM merkle_checkpoints ORDER BY id DESC LIMIT 1", (now, only_if_due))
            last = curs.fetchone()
            if size == 0 or (last is not None and (last["tree_size"] >= size or last["recent"])):
                return None
        register(curs, key)
        curs.execute("SELECT retired_at FROM checkpoint_keys WHERE key_id = %s", (key.key_id,))
        if curs.fetchone()["retired_at"] is not None:
            raise KeyRetired(f"the key in {key.path} ({key.key_id}) was retired by `keys rotate`: copy the current"
                             " key file here; nothing is signed with a retired key")
        checked = _check_extends(datastore, curs, size, key)
        if checked is not None:
            _vouched_for[datastore] = checked
        root_hash = merkle.root_of(curs, size)
        stamp = timestamp_text(now)
        signed_body = body(size, root_hash, stamp)
        curs.execute(
            'INSERT INTO merkle_checkpoints (tree_size, root_hash, "timestamp", key_id, signature, body, made_at)'
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLUMNS,
            (size, root_hash, stamp, key.key_id, key.sign(signed_body.encode()), signed_body, now),
        )
        made = _checkpoint(curs.fetchone())
        database = _database_of(curs)
    _vouched_for[datastore] = made  # once committed: a rolled-back one was never signed for anyone
    _remember(state_file(key.path), database, made)
    return made


def run_maker(datastore: Any, stop: threading.Event, interval: float | None = None) -> None:
    """Make a checkpoint at least every `interval` seconds while the tree grows, until `stop`.
    Without a key it says so once and makes none (until one appears); a database away is
    logged and tried again."""
    if interval is None:
        try:
            interval = interval_s()
        except ValueError as error:  # serve and project refuse to start with it; a library caller may not
            logger.error("%s; using %s s", error, DEFAULT_INTERVAL_S)
            interval = DEFAULT_INTERVAL_S
    look_every = min(1.0, interval / 4)
    said_missing, trouble = False, ""
    while not stop.is_set():
        try:
            made = make(datastore, only_if_due=interval)
            if made is not None:
                logger.info("checkpoint signed: tree size %d, root %s, key %s", made.tree_size, made.root_hash.hex(),
                            made.key_id)
            said_missing, trouble = False, ""
        except KeyMissing as missing:
            if not said_missing:
                logger.warning("no checkpoints are made: %s", missing)
                said_missing = True
        except TreeRewritten as rewritten:
            text = f"REFUSING TO SIGN: the Merkle tree does not extend what was signed before: {rewritten}"
            if text != trouble:
                logger.error("%s; run `channel-domain verify --checkpoints` against the published checkpoints", text)
                trouble = text
        except Exception as error:  # noqa: BLE001 - the database away: tried again, never fatal to serve
            text = f"{type(error).__name__}: {error}"
            if text != trouble:
                logger.warning("making a checkpoint failed; trying again: %s", text)
                trouble = text
        stop.wait(look_every)


def start_in_background(datastore: Any, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run_maker, args=(datastore, stop), name="checkpoints", daemon=True)
    thread.start()
    return thread
