"""What the parts of the JetStream store share (:class:`Link`): the connection, the stream,
the settings of its requests and what this process has learnt of the stream (the appends it
saw, the chain heads it knows). The store owns it; its reader, chainer and appender are each
given it, and the store's attributes of the same names are the link's (:class:`Linked`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from nats.js import JetStreamContext

from eventkit.store.chain import ChainHeads
from eventkit.store.codec import Codec
from eventkit.store.nats.direct import DirectReader
from eventkit.store.nats.freshness import Freshness
from eventkit.store.nats.inbox import Denials, Inbox

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Link:
    """The connection and stream of one store, as its parts use them."""

    nc: Any
    js: JetStreamContext
    stream: str
    codec: Codec
    publish_timeout: float
    read_timeout: float
    retry_for: float
    inbox: Inbox
    reader: DirectReader
    denials: Denials
    fresh: Freshness
    """The last sequence of each subject this process wrote or read (read-your-writes)."""
    heads: ChainHeads
    """The chain heads this process read or wrote (an append after a load costs no read)."""
    verify_chains: bool = True
    replicas: int = 1
    server_version: str = "0.0.0"


class Linked(Generic[T]):
    """An attribute of the store that is its :class:`Link`'s (``store.replicas`` is
    ``store.link.replicas``, read and written); ``field`` names it on the link."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = self.field or name

    @overload
    def __get__(self, store: None, owner: type) -> Linked[T]: ...
    @overload
    def __get__(self, store: object, owner: type) -> T: ...
    def __get__(self, store: object | None, owner: type) -> Linked[T] | T:
        if store is None:
            return self
        value: T = getattr(store.link, self.field)  # type: ignore[attr-defined]
        return value

    def __set__(self, store: Any, value: T) -> None:
        setattr(store.link, self.field, value)


__all__ = ["Link", "Linked"]
