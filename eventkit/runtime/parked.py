"""Reactors' dead letters (parked events), kept in a JetStream key-value bucket, no SQL.

Bucket ``eventkit_<stream>_parked``, key ``<reactor>.<stream sequence>``, value the letter as
JSON (:class:`eventkit.runtime.deadletters.DeadLetter`). A letter is written before the event is
terminated on the consumer, so a crash in between leaves the event to be delivered (and parked)
again, never lost; writing it twice is harmless.

A letter can quote personal data (its subject, a handler's error text): every removal is a
secure erase of the bucket's message (``delete_msg``, overwritten on disk), never a purge,
whose bytes would stay in the block file; a letter written again erases its earlier version.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from eventkit.runtime.deadletters import DeadLetter, now, quotes, redacted
from eventkit.store.nats.buckets import ensure_erasable_bucket, open_bucket

ParkedLetter = DeadLetter
"""A reactor's dead letter (the name it had before the one model for every worker kind)."""


def bucket_name(stream: str) -> str:
    return f"eventkit_{stream}_parked"


class ParkedLetters:
    """The parked events of every reactor on one stream."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.bucket = bucket_name(store.stream)
        self._kv: KeyValue | None = None

    async def _open(self, create: bool) -> KeyValue | None:
        if self._kv is None:
            js = self.store.js
            replicas = getattr(self.store, "replicas", 1)
            try:
                info = await js.stream_info(f"KV_{self.bucket}")
            except nats.js.errors.NotFoundError:
                info = None
            if info is None and not create:
                return None
            if info is not None and info.config.deny_delete:
                await self._make_erasable(replicas)
            else:
                await ensure_erasable_bucket(js, self.bucket, replicas)
            config = KeyValueConfig(bucket=self.bucket, history=1, storage=StorageType.FILE)
            self._kv = await open_bucket(js, config, create=False)
        return self._kv

    async def _make_erasable(self, replicas: int) -> None:
        """A bucket of an earlier eventkit denies deletes (and the server cannot lift that):
        its letters move into an erasable bucket of the same name."""
        js = self.store.js
        old = await open_bucket(js, KeyValueConfig(bucket=self.bucket), create=False)
        values: list[tuple[str, bytes]] = []
        if old is not None:
            with contextlib.suppress(nats.js.errors.NoKeysError):
                for key in await old.keys():
                    with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                        entry = await old.get(key)
                        if entry.value:
                            values.append((key, entry.value))
        await js.delete_stream(f"KV_{self.bucket}")  # its files go with it
        await ensure_erasable_bucket(js, self.bucket, replicas)
        kv = await open_bucket(js, KeyValueConfig(bucket=self.bucket), create=False)
        assert kv is not None
        for key, value in values:
            await kv.put(key, value)

    async def _erase(self, key: str) -> bool:
        """Securely erase the bucket's message of ``key``; False when there was none."""
        kv = await self._open(create=False)
        if kv is None:
            return False
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return False
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.store.js.delete_msg(f"KV_{self.bucket}", entry.revision)
        return True

    async def _put(self, letter: DeadLetter) -> None:
        kv = await self._open(create=True)
        assert kv is not None
        key = f"{letter.name}.{letter.sequence}"
        await self._erase(key)  # an earlier version's bytes do not stay behind
        await kv.put(key, json.dumps(_fields(letter)).encode())

    async def park(self, letter: DeadLetter) -> None:
        await self._put(letter)

    async def get(self, name: str, sequence: int) -> DeadLetter | None:
        kv = await self._open(create=False)
        if kv is None:
            return None
        try:
            entry = await kv.get(f"{name}.{sequence}")
        except nats.js.errors.KeyNotFoundError:
            return None
        return _letter(entry.value)

    async def list(self, name: str | None = None) -> list[DeadLetter]:
        """Letters of reactor ``name`` (or all), by reactor then sequence."""
        kv = await self._open(create=False)
        if kv is None:
            return []
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        if name is not None:
            keys = [k for k in keys if k.rsplit(".", 1)[0] == name]
        out: list[DeadLetter] = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue
            letter = _letter(entry.value)
            if letter is not None:
                out.append(letter)
        return sorted(out, key=lambda x: (x.name, x.sequence))

    async def count(self, name: str) -> int:
        return len(await self.list(name))

    async def remove(self, name: str, sequence: int) -> None:
        await self._erase(f"{name}.{sequence}")

    async def forget(self, subject: str) -> int:
        """Erase every letter of ``subject`` (secure erase) and redact the errors of the other
        letters that quote it; returns the letters erased. Idempotent."""
        erased = 0
        for letter in await self.list():
            if letter.subject == subject:
                erased += await self._erase(f"{letter.name}.{letter.sequence}")
            elif quotes(letter, subject):
                await self._put(redacted(letter))
        return erased


def _fields(letter: DeadLetter) -> dict[str, Any]:
    return {
        "name": letter.name,
        "sequence": letter.sequence,
        "subject": letter.subject,
        "event_type": letter.event_type,
        "error": letter.error,
        "attempts": letter.attempts,
        "parked_at": letter.parked_at.isoformat(),
    }


def _letter(value: bytes | None) -> DeadLetter | None:
    if not value:
        return None
    try:
        d = json.loads(value)
        return DeadLetter(
            str(d["name"]),
            int(d["sequence"]),
            str(d["subject"]),
            str(d["event_type"]),
            str(d["error"]),
            int(d["attempts"]),
            datetime.fromisoformat(d["parked_at"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


__all__ = ["ParkedLetter", "ParkedLetters", "bucket_name", "now"]
