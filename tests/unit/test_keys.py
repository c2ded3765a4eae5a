"""KeyStore: per-subject AES-256-GCM keys, wrapped by the master key, shredded for good."""

from __future__ import annotations

import os

import nats.js.errors
import pytest

from eventkit.domain.events import Event
from eventkit.errors import ConfigError, EventDecodeError, ForgottenError
from eventkit.gdpr.keys import TOMBSTONE, KeyStore, derive_key
from eventkit.store.codec import Codec, PayloadCipher
from eventkit.store.memory import InMemoryEventStore


class _Entry:
    def __init__(self, value: bytes, revision: int) -> None:
        self.value = value
        self.revision = revision


class FakeKV:
    """The few KV calls KeyStore makes, with stream sequences like the server's."""

    def __init__(self) -> None:
        self.data: dict[str, _Entry] = {}
        self.seq = 0
        self.erased: list[int] = []

    async def get(self, key: str) -> _Entry:
        if key not in self.data:
            raise nats.js.errors.KeyNotFoundError()
        return self.data[key]

    async def create(self, key: str, value: bytes) -> int:
        if key in self.data:
            raise nats.js.errors.KeyWrongLastSequenceError()
        return await self.put(key, value)

    async def put(self, key: str, value: bytes) -> int:
        self.seq += 1
        self.data[key] = _Entry(value, self.seq)
        return self.seq

    async def delete_msg(self, stream: str, seq: int) -> bool:
        for k, e in list(self.data.items()):
            if e.revision == seq:
                del self.data[k]
                self.erased.append(seq)
                return True
        raise nats.js.errors.NotFoundError()


def attached(master: bytes, kv: FakeKV, personal: list[str] | None = None) -> KeyStore:
    keys = KeyStore(master_key=master, personal=personal or ["bank.customer.*"])
    keys._kv = kv
    keys._js = kv
    keys.bucket = "bank_keys"
    return keys


class Ssn(Event):
    personal_data = True
    ssn: str


def test_keystore_fulfils_the_payload_cipher_protocol() -> None:
    keys: PayloadCipher = KeyStore(master_key=os.urandom(32))
    assert keys.covers("bank.customer.c-1", None) is False


def test_covers_personal_filters_and_personal_events_only() -> None:
    keys = KeyStore(master_key=os.urandom(32), personal=["bank.customer.*"])
    assert keys.covers("bank.customer.c-1", None)
    assert not keys.covers("bank.account.a-1", None)
    assert keys.covers("bank.account.a-1", Ssn(ssn="123"))


async def test_encrypt_then_decrypt_round_trips_and_hides_the_plaintext() -> None:
    kv = FakeKV()
    keys = attached(os.urandom(32), kv)
    await keys.prepare(["bank.customer.c-1"], create=True)
    key_id, sealed = keys.encrypt("bank.customer.c-1", b'{"name":"Mira Okafor"}')
    assert b"Ada" not in sealed
    assert keys.decrypt("bank.customer.c-1", key_id, sealed) == b'{"name":"Mira Okafor"}'
    (entry,) = kv.data.values()
    assert b"c-1" not in entry.value and "c-1" not in next(iter(kv.data))


async def test_a_key_is_made_once_and_found_by_another_process() -> None:
    kv, master = FakeKV(), os.urandom(32)
    one, two = attached(master, kv), attached(master, kv)
    await one.prepare(["bank.customer.c-1"], create=True)
    key_id, sealed = one.encrypt("bank.customer.c-1", b"x")
    await two.prepare(["bank.customer.c-1"], create=False)
    assert two.decrypt("bank.customer.c-1", key_id, sealed) == b"x"
    assert len(kv.data) == 1


async def test_no_key_is_made_for_subjects_nothing_encrypts() -> None:
    kv = FakeKV()
    keys = attached(os.urandom(32), kv)
    await keys.prepare(["bank.account.a-1"], create=False)
    assert kv.data == {}


async def test_shred_erases_the_key_message_and_leaves_a_tombstone() -> None:
    kv, master = FakeKV(), os.urandom(32)
    keys = attached(master, kv)
    await keys.prepare(["bank.customer.c-1"], create=True)
    key_id, sealed = keys.encrypt("bank.customer.c-1", b"secret")
    first_rev = next(iter(kv.data.values())).revision
    assert await keys.shred("bank.customer.c-1") is True
    assert kv.erased == [first_rev]
    assert next(iter(kv.data.values())).value == TOMBSTONE
    with pytest.raises(ForgottenError):
        keys.decrypt("bank.customer.c-1", key_id, sealed)
    other = attached(master, kv)  # a fresh process sees the tombstone
    await other.prepare(["bank.customer.c-1"], create=False)
    with pytest.raises(ForgottenError):
        other.decrypt("bank.customer.c-1", key_id, sealed)
    with pytest.raises(ForgottenError):
        await other.prepare(["bank.customer.c-1"], create=True)  # no resurrection
    assert await keys.shred("bank.customer.c-1") is False  # idempotent
    assert await keys.state("bank.customer.c-1") == "forgotten"


async def test_a_wrong_master_key_is_a_clear_config_error() -> None:
    kv = FakeKV()
    first = attached(os.urandom(32), kv)
    await first.verify_master_key()
    await first.verify_master_key()  # the same key passes again
    with pytest.raises(ConfigError, match="EVENTKIT_MASTER_KEY is not the master key"):
        await attached(os.urandom(32), kv).verify_master_key()


async def test_ciphertext_moved_to_another_subject_does_not_open() -> None:
    keys = attached(os.urandom(32), FakeKV())
    await keys.prepare(["bank.customer.c-1", "bank.customer.c-2"], create=True)
    key_id, sealed = keys.encrypt("bank.customer.c-1", b"x")
    with pytest.raises(EventDecodeError):
        keys.decrypt("bank.customer.c-2", key_id, sealed)


def test_master_key_must_be_32_bytes() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        KeyStore(master_key=b"short")


def test_derived_keys_differ_by_purpose() -> None:
    master = os.urandom(32)
    assert derive_key(master, "audit") != derive_key(master, "notice")
    assert len(derive_key(master, "audit")) == 32


async def test_in_memory_store_encrypts_personal_subjects_with_the_keystore() -> None:
    class CustomerNamed(Event):
        name: str

    keys = attached(os.urandom(32), FakeKV())
    store = InMemoryEventStore(stream="bank", codec=Codec(cipher=keys))
    await store.append("bank.customer.c-1", [CustomerNamed(name="Ada")])
    (raw,) = [m async for m in store.read_raw("bank.customer.c-1")]
    assert b"Ada" not in raw.data
    assert (await store.read("bank.customer.c-1"))[0].event == CustomerNamed(name="Ada")
    await keys.shred("bank.customer.c-1")
    with pytest.raises(ForgottenError):
        await store.read("bank.customer.c-1")
