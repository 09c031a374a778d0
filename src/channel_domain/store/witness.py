"""Witnessing: signed checkpoints copied to a place outside the database, and the log checked
against them from that outside copy alone (docs/audit.md, "Publishing checkpoints to a witness").

A checkpoint kept only in PostgreSQL proves nothing against whoever controls PostgreSQL: they can
rewrite an event, every hash after it, the seals, the tree and — with a key of their own — the
checkpoints too. Once a checkpoint has been copied somewhere they cannot rewrite (a file another
system archives, a witness's HTTP endpoint), `verify_against` recomputes, from the events' stored
bytes only, the Merkle root of each published tree size and compares: the rewrite shows.

A published checkpoint is one JSON object per line (NDJSON): the checkpoint's answer fields
(`tree_size`, `root_hash`, `timestamp`, `key_id`, `signature`, `body`) and `public_key_pem`, the
key that signed it, so a reader needs nothing from the service to check the signature.

Where publishing resumes:
- a file: after the checkpoint on its last line, which must be one of this database's own (else
  publishing is refused: the checkpoints were replaced, or the file is another service's). The
  file is the record, so no second record can disagree with it;
- a URL: after the last checkpoint the endpoint answered 2xx to, kept in `witness_publications`
  (an HTTP endpoint offers no standard way to ask what it holds). At least once: a crash between
  the answer and that row posts the checkpoint again, so a witness keys what it keeps by
  signature. A redirect is a failure, never followed: the witness is the address the operator
  chose, and a checkpoint re-sent wherever a 3xx points would count as witnessed by whoever
  answers there.

A published line carries its own public key, so its signature alone proves nothing about who
signed it: whoever can append to the witness can sign lines with a key of their own. Checking
against pinned key ids (`trusted`) closes that; without pins the check reports which keys it
accepted, for a person to compare with the ones the service gave them.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from channel_domain.store import checkpoints, merkle
from channel_domain.store.integrity import GENESIS, event_hash, utc_text

FILE_NAME = "checkpoints.ndjson"
FILE_SUFFIXES = (".ndjson", ".jsonl", ".json")
FIELDS = ("tree_size", "root_hash", "timestamp", "key_id", "signature", "body", "public_key_pem")
POST_TIMEOUT_S = 30.0
TRUSTED_KEYS_VARIABLE = "CHANNEL_DOMAIN_TRUSTED_KEYS"
_KEY_ID = re.compile(r"[0-9a-f]{16}")


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def file_of(target: str | Path) -> Path:
    """Decided by what is on disk, never by a dot in the name (`/srv/witness.d` is a directory):
    an existing directory holds `checkpoints.ndjson`, any other existing path is the file; a path
    not there yet is a file when it ends in .ndjson, .jsonl or .json, else a directory to create."""
    path = Path(target)
    if path.is_dir():
        return path / FILE_NAME
    if path.exists() or path.suffix.lower() in FILE_SUFFIXES:
        return path
    return path / FILE_NAME


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Answers a 3xx as the error it is here: urllib would otherwise re-send a POST elsewhere
    (as a GET for 301/302, so the body never arrives) and report that address's answer."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None  # not followed: the default error handler raises HTTPError with the 3xx


_OPENER = urllib.request.build_opener(_NoRedirect)


def _redirected_to(url: str, error: urllib.error.HTTPError) -> str:
    location = error.headers.get("Location") if error.headers is not None else None
    return urllib.parse.urljoin(url, location) if location else "no address (the answer has no Location)"


def trusted_keys(given: list[str], environment: str | None = None) -> frozenset[str] | None:
    """The key ids to accept: those given, else those of CHANNEL_DOMAIN_TRUSTED_KEYS (comma-separated);
    None when neither names one (then every self-consistent signature is accepted, and reported).
    A malformed id is refused (ValueError): a typo must not pin nothing."""
    source = "--trust-key"
    if not given and environment and environment.strip(" ,"):
        given, source = environment.split(","), TRUSTED_KEYS_VARIABLE
    pinned = set()
    for key_id in (item.strip().lower() for item in given):
        if not key_id and source == TRUSTED_KEYS_VARIABLE:
            continue  # "K1,K2," is a list a person writes
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"{source}: {key_id!r} is not a key id (16 hex digits, as `channel-domain keys show`"
                             " prints it)")
        pinned.add(key_id)
    return frozenset(pinned) or None


def published_form(checkpoint: checkpoints.Checkpoint, raw_public: bytes) -> dict[str, Any]:
    return {**checkpoint.as_dict(), "public_key_pem": checkpoints.public_pem(raw_public)}


def line_of(checkpoint: checkpoints.Checkpoint, raw_public: bytes) -> bytes:
    return (json.dumps(published_form(checkpoint, raw_public), separators=(",", ":")) + "\n").encode()


class PublishRefused(RuntimeError):
    """The target says something this database contradicts: nothing was published."""


class PublishFailed(RuntimeError):
    """The target did not take a checkpoint; those before it were published."""

    def __init__(self, message: str, published: int) -> None:
        super().__init__(message)
        self.published = published


class PublishRedirected(PublishFailed):
    """The URL answered a redirect: not published there, nor sent where it pointed. Not a
    witness being away, so `--follow` stops on it too: someone must choose the address."""


@dataclass(frozen=True)
class Published:
    target: str
    count: int  # checkpoints published by this call
    last: dict[str, Any] | None  # the last checkpoint the target now holds, as published


def _after(cursor: Any, after_id: int) -> list[tuple[checkpoints.Checkpoint, bytes]]:
    cursor.execute(
        'SELECT c.id, c.tree_size, c.root_hash, c."timestamp", c.key_id, c.signature, c.body, k.public_key'
        " FROM merkle_checkpoints c JOIN checkpoint_keys k USING (key_id) WHERE c.id > %s ORDER BY c.id",
        (after_id,),
    )
    return [(checkpoints.Checkpoint(row["id"], row["tree_size"], bytes(row["root_hash"]), row["timestamp"],
                                    row["key_id"], bytes(row["signature"]), row["body"]), bytes(row["public_key"]))
            for row in cursor.fetchall()]


def _id_of(cursor: Any, published: dict[str, Any]) -> int | None:
    """The id of this database's checkpoint that `published` is, byte for byte (None: not one
    of ours). `made_at` is the timestamp signed, so its index finds it."""
    try:
        made_at = datetime.fromisoformat(published["timestamp"].replace("Z", "+00:00"))
        signature = base64.b64decode(published["signature"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    cursor.execute('SELECT id, body, key_id FROM merkle_checkpoints WHERE made_at = %s AND signature = %s',
                   (made_at, signature))
    row = cursor.fetchone()
    if row is None or row["body"] != published.get("body") or row["key_id"] != published.get("key_id"):
        return None
    return row["id"]


def _last_line(handle: int) -> bytes | None:
    """The file's last line (None when empty), read backwards from its end."""
    end = os.lseek(handle, 0, os.SEEK_END)
    if end == 0:
        return None
    tail, at = b"", end
    while at > 0:
        step = min(4096, at)
        at -= step
        os.lseek(handle, at, os.SEEK_SET)
        tail = os.read(handle, step) + tail
        if tail.count(b"\n") >= 2 or at == 0:
            break
    if not tail.endswith(b"\n"):
        raise PublishRefused("the file's last line is incomplete (no line feed at its end: a write was cut short?);"
                             " end it or archive the file and publish to a new one")
    return tail[:-1].rsplit(b"\n", 1)[-1]


def publish_to_file(datastore: Any, target: str | Path) -> Published:
    """Append to the file every checkpoint after the one on its last line. Two publishers at
    once take turns (an exclusive lock on the file), so no checkpoint is written twice."""
    path = file_of(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        last_line = _last_line(handle)
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            after, last = 0, None
            if last_line is not None:
                try:
                    last = json.loads(last_line)
                except ValueError:
                    raise PublishRefused(f"the last line of {path} is not JSON: not a file of published"
                                         " checkpoints") from None
                found = _id_of(curs, last) if isinstance(last, dict) else None
                if found is None:
                    raise PublishRefused(
                        f"the last checkpoint in {path} (tree size {last.get('tree_size')}, {last.get('timestamp')},"
                        f" key {last.get('key_id')}) is not one of this database's checkpoints: they were replaced"
                        f" or removed, or the file is another service's. Check the log against the file:"
                        f" channel-domain verify --checkpoints {path}")
                after = found
            pending = _after(curs, after)
        for checkpoint, raw_public in pending:
            os.write(handle, line_of(checkpoint, raw_public))  # one write per line, O_APPEND: never interleaved
            last = published_form(checkpoint, raw_public)
        if pending:
            os.fsync(handle)
        return Published(str(path), len(pending), last)
    finally:
        os.close(handle)  # releases the lock


def publish_to_url(datastore: Any, url: str, timeout_s: float = POST_TIMEOUT_S) -> Published:
    """POST each checkpoint the endpoint has not accepted yet, oldest first, as JSON; a 2xx
    answer is acceptance, remembered before the next is posted. The first other answer stops
    (PublishFailed, naming it); the next run starts from that checkpoint again."""
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT checkpoint_id FROM witness_publications WHERE target = %s", (url,))
        row = curs.fetchone()
        pending = _after(curs, row["checkpoint_id"] if row else 0)
    count, last = 0, None
    for checkpoint, raw_public in pending:
        document = published_form(checkpoint, raw_public)
        request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        named = f"the checkpoint of tree size {checkpoint.tree_size} ({checkpoint.timestamp})"
        try:
            with _OPENER.open(request, timeout=timeout_s) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
            if 300 <= status < 400:
                raise PublishRedirected(
                    f"{url} answered {status} to {named}, redirecting to {_redirected_to(url, error)}: not"
                    " published, and not sent there (a redirect is never followed; if the witness has moved,"
                    " publish to its new address with --to)", count) from None
        except (urllib.error.URLError, OSError) as error:
            raise PublishFailed(f"{url} could not be reached with {named}: {error}", count) from None
        if not 200 <= status < 300:
            raise PublishFailed(f"{url} answered {status} to {named}: not accepted", count)
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("INSERT INTO witness_publications (target, checkpoint_id) VALUES (%s, %s)"
                         " ON CONFLICT (target) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id,"
                         " published_at = now()", (url, checkpoint.id))
        count, last = count + 1, document
    return Published(url, count, last)


def publish(datastore: Any, target: str) -> Published:
    return publish_to_url(datastore, target) if is_url(target) else publish_to_file(datastore, target)


# --- checking the log against published checkpoints -------------------------------------------


@dataclass(frozen=True)
class Witnessed:
    """One published checkpoint, as read from the outside copy."""

    source: str
    line: int
    document: dict[str, Any]

    @property
    def tree_size(self) -> int:
        return self.document["tree_size"]

    @property
    def name(self) -> str:
        d = self.document
        return (f"the checkpoint on line {self.line} of {self.source} (tree size {d.get('tree_size')},"
                f" {d.get('timestamp')}, key {d.get('key_id')})")


class WitnessUnreadable(ValueError):
    """The published checkpoints cannot be read."""


def _fetch(url: str, timeout_s: float) -> str:
    """What a witness's URL answers to GET: the checkpoints it holds, one JSON object per line, as
    they were posted. A redirect is refused as when publishing: the copy checked is the one at the
    address the auditor chose."""
    request = urllib.request.Request(url, method="GET", headers={"Accept": "application/x-ndjson"})
    try:
        with _OPENER.open(request, timeout=timeout_s) as answer:
            return answer.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        error.close()
        if 300 <= error.code < 400:
            raise WitnessUnreadable(f"{url} answered {error.code}, redirecting to {_redirected_to(url, error)}: not"
                                    " followed; if the witness has moved, give its new address") from None
        raise WitnessUnreadable(f"cannot read published checkpoints at {url}: it answered {error.code}") from None
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as error:
        raise WitnessUnreadable(f"cannot read published checkpoints at {url}: {error}") from None


def read_published(target: str | Path, timeout_s: float = POST_TIMEOUT_S) -> list[Witnessed]:
    """The published checkpoints of a directory, a file or a witness's URL (GET)."""
    if isinstance(target, str) and is_url(target):
        return _parse(_fetch(target, timeout_s), target)
    path = file_of(target)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WitnessUnreadable(f"cannot read published checkpoints at {path}: {error}") from None
    return _parse(text, str(path))


def _parse(text: str, path: str) -> list[Witnessed]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError:
            raise WitnessUnreadable(f"line {number} of {path} is not JSON") from None
        lacking = [field for field in FIELDS if field not in document] if isinstance(document, dict) else FIELDS
        if lacking:
            raise WitnessUnreadable(f"line {number} of {path} is no published checkpoint: it lacks {', '.join(lacking)}")
        if not isinstance(document["tree_size"], int) or document["tree_size"] < 0:
            raise WitnessUnreadable(f"line {number} of {path}: tree_size is not a count")
        found.append(Witnessed(path, number, document))
    if not found:
        raise WitnessUnreadable(f"{path} holds no published checkpoint: there is nothing to check the log against")
    return found


def signature_problem(document: dict[str, Any]) -> str | None:
    """Why the published checkpoint does not stand on its own (None: it does): its body must
    say what its fields say, its key_id be its key's, and its signature that key's over the body."""
    try:
        root_hash = bytes.fromhex(document["root_hash"])
    except (TypeError, ValueError):
        return "root_hash is not hex"
    expected = checkpoints.body(document["tree_size"], root_hash, document["timestamp"])
    if document["body"] != expected or document["root_hash"] != root_hash.hex() or len(root_hash) != 32:
        return "its body does not say what its fields say"
    try:
        key = serialization.load_pem_public_key(document["public_key_pem"].encode())
    except (ValueError, TypeError, AttributeError):
        return "public_key_pem holds no public key"
    if not isinstance(key, Ed25519PublicKey):
        return "public_key_pem holds no Ed25519 key"
    if checkpoints.key_id_of(checkpoints.raw_public_key(key)) != document["key_id"]:
        return "key_id is not the id of public_key_pem"
    try:
        key.verify(base64.b64decode(document["signature"], validate=True), document["body"].encode("utf-8"))
    except (InvalidSignature, ValueError, TypeError):
        return "the signature does not verify: the checkpoint was altered or not signed by that key"
    return None


@dataclass(frozen=True)
class WitnessCheck:
    ok: bool
    checkpoints: int  # published checkpoints read
    events: int  # events read and hashed
    largest_tree: int
    failed: Witnessed | None = None
    problem: str | None = None
    # key id -> checkpoints it signed, in the order first seen; empty unless every signature checked
    signers: dict[str, int] = field(default_factory=dict)
    trusted: frozenset[str] | None = None  # the pins checked against; None: none given


class _Roots:
    """The Merkle root of the leaves so far, kept as the perfect subtrees the tree is made of
    (RFC 9162's tree of n leaves is those subtrees, largest first, joined right to left)."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, bytes]] = []  # (leaves, hash), sizes decreasing
        self.size = 0

    def add(self, leaf_input: bytes) -> None:
        self.size += 1
        self.stack.append((1, merkle.leaf_hash(leaf_input)))
        while len(self.stack) > 1 and self.stack[-1][0] == self.stack[-2][0]:
            (size, right), (_, left) = self.stack.pop(), self.stack.pop()
            self.stack.append((2 * size, merkle.node_hash(left, right)))

    def root(self) -> bytes:
        if not self.stack:
            return merkle.EMPTY_ROOT
        digest = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            digest = merkle.node_hash(left, digest)
        return digest


def _recomputed_hashes(datastore: Any, limit: int, batch: int) -> Iterator[bytes]:
    """The first `limit` events' hashes in position order, each recomputed from the event's
    stored bytes and the hash recomputed for its record's previous event: no stored hash, seal
    or tree node is read."""
    if limit == 0:
        return
    streams: dict[UUID, bytes] = {}
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor(name="witness") as curs:
        curs.itersize = batch
        curs.execute("SELECT position, originator_id, originator_version, topic, recorded_at, effective_on, state"
                     " FROM events ORDER BY position LIMIT %s", (limit,))
        for row in curs:
            stream = row["originator_id"]
            digest = event_hash(streams.get(stream, GENESIS), row["position"], stream, row["originator_version"],
                                row["topic"], utc_text(row["recorded_at"]),
                                row["effective_on"].isoformat() if row["effective_on"] else "", bytes(row["state"]))
            streams[stream] = digest
            yield digest


def untrusted_problem(document: dict[str, Any], trusted: frozenset[str]) -> str | None:
    key_id = document["key_id"]
    if key_id in trusted:
        return None
    return (f"it is signed by key {key_id}, which is not one of the trusted keys ({', '.join(sorted(trusted))}):"
            " a line anyone who can append to the witness could have signed with a key of their own")


def verify_against(datastore: Any, published: list[Witnessed], progress: Callable[[int], None] = lambda _: None,
                   batch: int = 10_000, trusted: frozenset[str] | None = None) -> WitnessCheck:
    """Check every published checkpoint's signature — and with `trusted`, that its key is one of
    those — then that the log as it is now has, at each published tree size, the root that
    checkpoint signed. The first failure is returned, the checkpoints in the order read for
    signatures, by tree size for the log."""
    signers: dict[str, int] = {}
    for witnessed in published:
        problem = signature_problem(witnessed.document)  # first: it proves key_id is the line's own key's
        if problem is None and trusted is not None:
            problem = untrusted_problem(witnessed.document, trusted)
        if problem:
            return WitnessCheck(False, len(published), 0, 0, witnessed, problem, trusted=trusted)
        key_id = witnessed.document["key_id"]
        signers[key_id] = signers.get(key_id, 0) + 1
    by_size: dict[int, list[Witnessed]] = {}
    for witnessed in published:
        by_size.setdefault(witnessed.tree_size, []).append(witnessed)
    largest = max(by_size, default=0)
    roots = _Roots()

    def check_size() -> WitnessCheck | None:
        root = roots.root().hex()
        for witnessed in by_size.get(roots.size, ()):
            if witnessed.document["root_hash"] != root:
                return WitnessCheck(
                    False, len(published), roots.size, largest, witnessed,
                    f"the log's first {roots.size} events, hashed again from their stored bytes, have the Merkle"
                    f" root {root}, not the {witnessed.document['root_hash']} this checkpoint signed: the log was"
                    " rewritten after it was published", signers, trusted)
        return None

    failed = check_size()  # a checkpoint of the empty tree
    if failed:
        return failed
    for digest in _recomputed_hashes(datastore, largest, batch):
        roots.add(digest)
        if roots.size % batch == 0:
            progress(roots.size)
        if roots.size in by_size:
            failed = check_size()
            if failed:
                return failed
    progress(roots.size)
    if roots.size < largest:
        short = min(size for size in by_size if size > roots.size)
        return WitnessCheck(False, len(published), roots.size, largest, by_size[short][0],
                            f"the log has only {roots.size} events, and this checkpoint signed a tree of {short}:"
                            " events were removed after it was published", signers, trusted)
    return WitnessCheck(True, len(published), roots.size, largest, signers=signers, trusted=trusted)

