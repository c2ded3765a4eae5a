"""``App``: the registry of one service (stream, aggregates, projectors, reactors), as the CLI
loads it."""

from __future__ import annotations

import base64
import importlib
import inspect
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event
from eventkit.errors import ConfigError
from eventkit.projection.projector import Projector, SystemEvents
from eventkit.store.base import EventStore
from eventkit.store.subjects import validate_filter, validate_stream_name

if TYPE_CHECKING:
    from eventkit.config import Settings
    from eventkit.store.jetstream import JetStreamEventStore


class App:
    """One service::

        app = App(stream="bank", aggregates=[Account, Customer],
                  projectors=[Balances(), Ledger()], migrations="samples.bank:migrations")

    ``eventkit --app samples.bank.app:app run`` loads it. ``migrations`` names the Alembic
    script location of the service's own read-model tables (``package:folder``), upgraded by
    ``eventkit db upgrade`` after eventkit's own tables. ``writes=[ReviewOpened]`` declares event
    types the service writes that none of its handlers reads (``eventkit schema export``).
    """

    def __init__(
        self,
        stream: str,
        *,
        aggregates: Iterable[type[Aggregate]] = (),
        projectors: Iterable[Projector] = (),
        reactors: Iterable[Any] = (),
        migrations: str | None = None,
        personal_subjects: Sequence[str] = (),
        writes: Iterable[type[Event]] = (),
    ) -> None:
        self.stream = validate_stream_name(stream)
        self.aggregates = list(aggregates)
        for a in self.aggregates:
            if not (isinstance(a, type) and issubclass(a, Aggregate)):
                raise ConfigError(f"App aggregates must be Aggregate subclasses, got {a!r}")
        self.projectors = list(projectors)
        names: set[str] = set()
        for p in self.projectors:
            if not isinstance(p, Projector):
                raise ConfigError(
                    f"App projectors must be Projector instances, got {p!r} "
                    f"(write Balances(), not Balances)"
                )
            if p.name in names:
                raise ConfigError(f"two projectors are named {p.name!r}; names must be unique")
            names.add(p.name)
        from eventkit.reaction.reactor import Reactor

        self.reactors: list[Reactor] = list(reactors)
        for r in self.reactors:
            if not isinstance(r, Reactor):
                raise ConfigError(
                    f"App reactors must be Reactor instances, got {r!r} "
                    f"(write LargeWithdrawals(), not LargeWithdrawals)"
                )
            if r.name in names:
                raise ConfigError(
                    f"two projectors or reactors are named {r.name!r}; names must be unique"
                )
            names.add(r.name)
        self.writes = list(writes)
        """Event types the service writes that none of its handlers reads (a reactor's outputs):
        ``eventkit schema export`` includes them for other services."""
        for w in self.writes:
            if not (isinstance(w, type) and issubclass(w, Event)):
                raise ConfigError(f"App writes must be Event classes, got {w!r}")
        self.migrations = migrations
        extra = [validate_filter(s, stream) for s in personal_subjects]
        self.personal_subjects = [
            f"{stream}.{a.aggregate_type}.*" for a in self.aggregates if a.personal_data
        ] + extra

    def system_events(self, store: EventStore) -> SystemEvents:
        """The system events this app's runners follow: other services' GDPR forgets."""
        from eventkit.gdpr.notice import ForgetNotices

        return ForgetNotices(store.stream, store.codec.cipher)

    def projector(self, name: str) -> Projector:
        for p in self.projectors:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.projectors) or "none"
        raise ConfigError(f"no projector named {name!r} in this app (known: {known})")

    def select(self, names: Sequence[str]) -> list[Projector]:
        return [self.projector(n) for n in names] if names else list(self.projectors)

    def reactor(self, name: str) -> Any:
        for r in self.reactors:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.reactors) or "none"
        raise ConfigError(f"no reactor named {name!r} in this app (known: {known})")

    def select_workers(self, names: Sequence[str]) -> tuple[list[Projector], list[Any]]:
        """The projectors and reactors ``names`` picks (all of both when empty)."""
        if not names:
            return list(self.projectors), list(self.reactors)
        if not self.reactors:
            return self.select(names), []
        projectors = {p.name: p for p in self.projectors}
        reactors = {r.name: r for r in self.reactors}
        for n in names:
            if n not in projectors and n not in reactors:
                known = ", ".join([*projectors, *reactors]) or "none"
                raise ConfigError(f"no projector or reactor named {n!r} (known: {known})")
        return (
            [projectors[n] for n in names if n in projectors],
            [reactors[n] for n in names if n in reactors],
        )

    async def connect(
        self, settings: Settings | None = None, **options: Any
    ) -> JetStreamEventStore:
        """Connect to this app's stream with ``settings`` (default: from the environment)."""
        from eventkit.config import Settings
        from eventkit.store.codec import Codec
        from eventkit.store.jetstream import JetStreamEventStore

        settings = settings or Settings.from_env()
        cipher = None
        master_key = settings.master_key
        if master_key is None and self.personal_subjects and settings.uses_embedded_server:
            master_key = development_master_key(settings.home)
        if master_key is not None:
            from eventkit.gdpr.keys import KeyStore

            cipher = KeyStore(master_key=master_key, personal=self.personal_subjects)
        elif self.personal_subjects:
            raise ConfigError(
                f"the app declares personal data ({', '.join(self.personal_subjects)}) but no "
                f"master key is set: set EVENTKIT_MASTER_KEY to a base64 32-byte key "
                f"(python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')"
            )
        store = await JetStreamEventStore.connect(
            stream=self.stream,
            settings=settings,
            replicas=settings.replicas,
            codec=Codec(cipher=cipher),
            **options,
        )
        if cipher is not None:
            await cipher.attach(store)
        return store


def development_master_key(home: Path) -> bytes:
    """The embedded defaults' master key: ``<home>/master.key``, created (mode 0600) on first use.

    Only for the embedded development server; a deployment sets EVENTKIT_MASTER_KEY.
    """
    path = home / "master.key"
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = base64.b64decode(path.read_bytes().strip())
        if len(key) != 32:
            raise ConfigError(
                f"{path} does not hold a base64 32-byte key; delete it only if nothing "
                f"encrypted with it must stay readable"
            ) from None
        return key
    key = os.urandom(32)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key) + b"\n")
    return key


def load_app(target: str) -> App:
    """Import ``module:attr`` and return the ``App`` it names."""
    if not isinstance(target, str) or ":" not in target:
        raise ConfigError(
            f"app target {target!r} must be 'module:attribute', e.g. 'samples.bank.app:app' "
            f"(set --app or EVENTKIT_APP)"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import {module_name!r} for app {target!r}: {e}") from e
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(app, type):
        raise ConfigError(
            f"{target!r} is the class {app.__name__}, not an eventkit App: point --app at an "
            f"App instance (app = App(...)) or a function returning one"
        )
    if callable(app) and not isinstance(app, App):
        app = _call_factory(target, app)
    if not isinstance(app, App):
        raise ConfigError(f"{target!r} is a {type(app).__name__}, not an eventkit App")
    return app


def _call_factory(target: str, factory: Any) -> Any:
    """Call an App factory (a callable taking no arguments); anything else is a ``ConfigError``."""
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise ConfigError(
            f"{target!r} is a callable that needs arguments, not an App factory: point --app at "
            f"an App instance or a function taking no arguments that returns one"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): try the call
        pass
    try:
        return factory()
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"calling the App factory {target!r} failed: {type(e).__name__}: {e}"
        ) from e
