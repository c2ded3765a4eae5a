"""Connecting: which servers, a bounded first connect, and the notices of a connection that
dropped, came back or dropped messages (what core-NATS listeners may have missed)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client as NATS

from eventkit.errors import PermissionDeniedError, StoreUnavailableError
from eventkit.store.nats.inbox import Denials
from eventkit.store.nats.jetstream_errors import JetStreamError
from eventkit.store.nats.retries import Backoff

T = TypeVar("T")

FIRST_CONNECT_ATTEMPTS = 2
"""Tries per server of the first connect; afterwards the connection reconnects for ever."""


@dataclass
class Connection:
    """A connected client and what its callbacks collect."""

    nc: NATS
    errors: collections.deque[Exception]
    denials: Denials
    listeners: list[Callable[[], None]] = field(default_factory=list)
    embedded: Any = None
    """The ``ServerInfo`` of the embedded server when eventkit started or reused one."""


async def open_connection(
    url: str | Sequence[str] | None, settings: Any, connect_options: dict[str, Any]
) -> Connection:
    """Connect to ``url`` (else the servers of ``settings``, else the embedded server)."""
    options: dict[str, Any] = {}
    embedded = None
    if settings is not None:
        options.update(settings.nats_connect_options())
    if url is not None:
        options["servers"] = [url] if isinstance(url, str) else list(url)
    if not options.get("servers"):
        from eventkit.server import ensure_running

        if settings is not None:
            info = ensure_running(
                settings.home,
                encrypt_key=settings.server_store_key,
                sync_interval=settings.server_sync,
            )
        else:
            info = ensure_running()
        options["servers"] = [info.url]
        embedded = info
    options.setdefault("name", "eventkit")
    options.setdefault("max_reconnect_attempts", -1)
    options.setdefault("reconnect_time_wait", 0.25)
    options.update(connect_options)
    errors: collections.deque[Exception] = collections.deque(maxlen=100)
    denials = Denials()
    user_error_cb = options.get("error_cb")
    hopeless: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    listeners: list[Callable[[], None]] = []

    def changed() -> None:
        for listener in listeners:
            listener()

    async def on_error(e: Exception) -> None:
        errors.append(e)
        denials.report(e)
        if isinstance(e, nats.errors.SlowConsumerError):
            changed()  # messages were dropped: what listens may have missed some
        if (
            isinstance(e, ssl.SSLError) or denials.authorization is not None
        ) and not hopeless.done():
            hopeless.set_result(e)  # retrying the first connect cannot help
        if user_error_cb is not None:
            await user_error_cb(e)

    options["error_cb"] = on_error
    for event in ("disconnected_cb", "reconnected_cb"):
        options[event] = chained(options.get(event), changed)
    # nats-py retries a failed first connect for ever unless attempts are bounded: bound the
    # first connect (bad credentials, TLS errors, a server that is down fail at once), then
    # restore the reconnect policy asked for
    reconnects = options["max_reconnect_attempts"]
    options["max_reconnect_attempts"] = FIRST_CONNECT_ATTEMPTS
    bound = float(options.get("connect_timeout", 2.0)) * (FIRST_CONNECT_ATTEMPTS + 1)
    bound = bound * len(options["servers"]) + 1.0
    try:
        nc = await first_connect(options, hopeless, bound)
    except (OSError, nats.errors.Error, TimeoutError) as e:
        if denials.authorization is not None:
            raise PermissionDeniedError(
                f"NATS at {options['servers']} refused the credentials "
                f"({denials.authorization}); check EVENTKIT_USER/EVENTKIT_PASSWORD, "
                f"EVENTKIT_TOKEN, EVENTKIT_NKEY or EVENTKIT_CREDS"
            ) from e
        raise StoreUnavailableError(
            f"cannot connect to NATS at {options['servers']}: {e!r}; is the server running "
            f"(eventkit server status), the URL right (EVENTKIT_NATS_URL) and TLS set up "
            f"as the server expects (EVENTKIT_TLS_*)?"
        ) from e
    nc.options["max_reconnect_attempts"] = reconnects
    return Connection(nc, errors, denials, listeners, embedded)


async def first_connect(
    options: dict[str, Any], hopeless: asyncio.Future[Exception], bound: float
) -> NATS:
    """``nats.connect`` that gives up at once on an error retrying cannot fix (TLS, bad
    credentials), and after ``bound`` seconds at the most: nats-py may otherwise wait for ever."""
    connecting = asyncio.ensure_future(nats.connect(**options))
    done, _ = await asyncio.wait(
        (connecting, hopeless), timeout=bound, return_when=asyncio.FIRST_COMPLETED
    )
    if connecting in done:
        return connecting.result()
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    if hopeless.done():
        raise hopeless.result()
    raise TimeoutError(f"no connection within {bound:.0f}s")


def chained(
    user_cb: Callable[[], Awaitable[None]] | None, ours: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    async def cb() -> None:
        ours()
        if user_cb is not None:
            await user_cb()

    return cb


async def until_answered(
    work: Callable[[], Awaitable[T]], nc: NATS, retry_for: float, what: str
) -> T:
    """``work()`` (the JetStream calls of connecting), tried again while JetStream does not
    answer (a timeout, 503) for up to ``retry_for`` seconds, as reads are: a replicated stream
    or the cluster's meta group may be electing a leader. Afterwards the error says which of
    an election or a server without JetStream it most likely is."""
    backoff: Backoff | None = None
    while True:
        try:
            return await work()
        except nats.errors.NoRespondersError as e:
            raise StoreUnavailableError(no_jetstream(nc, what)) from e
        except (StoreUnavailableError, JetStreamError, nats.errors.TimeoutError) as e:
            if isinstance(e, JetStreamError) and e.code == 0 and e.err_code == 0:
                # nats-py's answer to "no responders" on the JetStream API: none there
                raise StoreUnavailableError(no_jetstream(nc, what)) from e
            if not unanswered(e):
                raise
            error: Exception = e
        backoff = backoff or Backoff(retry_for, first_delay=0.1)
        if not await backoff.wait():
            raise StoreUnavailableError(unanswered_message(nc, what, retry_for)) from error


def unanswered(e: Exception) -> bool:
    """Whether an error of connecting is JetStream not answering (yet), worth waiting out."""
    if isinstance(e, JetStreamError):
        return e.code == 503
    if isinstance(e, nats.errors.TimeoutError):
        return True
    return isinstance(e.__cause__, nats.errors.TimeoutError | asyncio.TimeoutError)


def unanswered_message(nc: NATS, what: str, retry_for: float) -> str:
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    cluster = info.get("cluster")
    if cluster and info.get("jetstream", True):
        return (
            f"JetStream did not answer for {what} within {retry_for:g}s: the cluster "
            f"{cluster!r} is electing a leader (the stream's, or its JetStream meta leader) and "
            f"has not finished; a majority of its nodes must be up and see each other (check "
            f"`nats server report jetstream`); retry_for (seconds) sets how long to wait"
        )
    return no_jetstream(nc, what)


def no_jetstream(nc: NATS, what: str) -> str:
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    server = info.get("server_name") or info.get("server_id") or "the server"
    if not info.get("jetstream"):
        return (
            f"no JetStream for {what}: JetStream is not enabled on server {server}; start it "
            f"with JetStream (nats-server -js, or jetstream {{}} in its config)"
        )
    return (
        f"JetStream did not answer for {what} (server {server}): may this user's account use "
        f"JetStream (jetstream enabled for the account)?"
    )
