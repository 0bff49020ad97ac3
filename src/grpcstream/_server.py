"""StreamServer: a grpc.aio server with signals, graceful drain, health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import grpc
import grpc.aio

from ._auth import BearerAuth
from ._batching import check_servicer_batching
from ._exceptions import UsageError
from ._options import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ChannelOption,
    Compression,
    KeepAliveEnforcement,
    message_size_options,
)
from ._server_handlers import ConcurrencyLimit, Registrar
from ._server_interceptors import MetadataLimit
from ._server_run import CLIENT_GONE_GRACE
from ._server_servicer import StreamServicer, check_servicer_settings
from ._telemetry import Telemetry
from ._tls import ServerTLS
from ._validate import check_compression, non_negative_seconds

__all__ = ["DEFAULT_GRACE", "StreamServer"]

logger = logging.getLogger("grpcstream.server")

DEFAULT_GRACE = 10.0
"""Seconds open RPCs get to finish after a drain starts, before they are cancelled."""

AddToServer = Callable[[Any, grpc.aio.Server], None]

HEALTH_EXTRA = "health=True needs grpcio-health-checking: pip install 'grpcstream[health]'"
REFLECTION_EXTRA = "reflection=True needs grpcio-reflection: pip install 'grpcstream[reflection]'"


class StreamServer:
    """A grpc.aio server that drains gracefully on SIGINT/SIGTERM.

    Args:
        address: where to listen, ``host:port``; port 0 picks a free port (see ``port``).
        grace: default seconds that open RPCs get to finish during a drain.
        health: serve ``grpc.health.v1.Health`` (needs the ``health`` extra); it reports
            SERVING after ``start()`` and NOT_SERVING from the moment a drain begins.
        reflection: serve the gRPC reflection service (needs the ``reflection`` extra).
        keepalive: the keepalive enforcement preset; its default accepts the client
            preset of ``connect()``. ``None`` keeps grpc's defaults.
        max_send_message_bytes: the largest message the server sends (default 4 MiB).
        max_receive_message_bytes: the largest message it accepts (default 4 MiB); a
            larger one fails that RPC with RESOURCE_EXHAUSTED.
        max_concurrent_streams: HTTP/2 streams allowed per connection; more wait.
        max_concurrent_rpcs: RPCs allowed in their handlers at once on the whole server;
            more are refused with RESOURCE_EXHAUSTED. A call takes its slot after ``auth``
            accepted it, so unauthenticated callers cannot exhaust the slots. (Synchronous
            handlers registered with a plain ``add_to_server`` are not counted.)
        options: extra raw grpc server options; they override the presets.
        interceptors: grpc.aio server interceptors.
        tls: a ``ServerTLS``; ``None`` serves plaintext.
        auth: a ``BearerAuth`` that every call (except health and reflection) must pass
            before any handler or other interceptor runs; ``None`` checks nothing.
        max_metadata_bytes: the largest request metadata (headers) accepted, in bytes,
            counted as HTTP/2 does (name + value + 32 per entry); a call with more fails
            with RESOURCE_EXHAUSTED before ``auth`` or any handler runs, however the
            client split its header frames. ``None`` keeps grpc's default (8 KiB, hard
            limit 16 KiB).
        compression: the default compression of every response (``Compression.Gzip``,
            ...); a handler may change it per call with ``set_compression()``. ``None``
            sends responses uncompressed.
        telemetry: a ``Telemetry`` that records metrics and spans for every call
            (including refused and health calls); ``None`` (the default) records nothing.

    Raises:
        ValueError: a non-positive limit or grace.
        TypeError: ``tls`` that is not a ``ServerTLS``, ``auth`` not a ``BearerAuth``, or
            ``telemetry`` not a ``Telemetry``.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        *,
        grace: float = DEFAULT_GRACE,
        health: bool = False,
        reflection: bool = False,
        keepalive: KeepAliveEnforcement | None = KeepAliveEnforcement(),  # noqa: B008
        max_send_message_bytes: int | None = None,
        max_receive_message_bytes: int | None = None,
        max_concurrent_streams: int | None = None,
        max_concurrent_rpcs: int | None = None,
        options: Sequence[ChannelOption] = (),
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        tls: ServerTLS | None = None,
        auth: BearerAuth | None = None,
        max_metadata_bytes: int | None = None,
        compression: Compression | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        non_negative_seconds("grace", grace)
        if telemetry is not None and not isinstance(telemetry, Telemetry):
            raise TypeError(f"telemetry must be a grpcstream.Telemetry or None, got {telemetry!r}")
        self._telemetry = telemetry
        if tls is not None and not isinstance(tls, ServerTLS):
            raise TypeError(f"tls must be a grpcstream.ServerTLS or None, got {type(tls).__name__}")
        if auth is not None and not isinstance(auth, BearerAuth):
            raise TypeError(f"auth must be a grpcstream.BearerAuth or None, got {auth!r}")
        for name, limit in (
            ("max_concurrent_streams", max_concurrent_streams),
            ("max_concurrent_rpcs", max_concurrent_rpcs),
            ("max_metadata_bytes", max_metadata_bytes),
        ):
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                raise ValueError(f"{name} must be an int >= 1 or None, got {limit!r}")
        check_compression(compression)
        self._compression = compression
        self._address = address
        self._grace = grace
        server_options: list[ChannelOption] = []
        if keepalive is not None:
            server_options.extend(keepalive.server_options())
        server_options.extend(
            message_size_options(
                # grpc alone would not limit what the server sends
                DEFAULT_MAX_MESSAGE_BYTES
                if max_send_message_bytes is None
                else max_send_message_bytes,
                max_receive_message_bytes,
            )
        )
        if max_concurrent_streams is not None:
            server_options.append(("grpc.max_concurrent_streams", max_concurrent_streams))
        if max_metadata_bytes is not None:
            # Both limits: between grpc's soft and hard limit it rejects at random.
            server_options.append(("grpc.max_metadata_size", max_metadata_bytes))
            server_options.append(("grpc.absolute_max_metadata_size", max_metadata_bytes))
        server_options.extend(options)
        self._server_options = server_options
        # The metadata limit goes first, then auth: nothing runs before them, except
        # telemetry, which sits between the two so that refused calls are measured too.
        self._interceptors: list[grpc.aio.ServerInterceptor] = [
            *([MetadataLimit(max_metadata_bytes)] if max_metadata_bytes is not None else []),
            *([telemetry._instruments.interceptor()] if telemetry is not None else []),
            *([auth] if auth is not None else []),
            *interceptors,
        ]
        # Counted by grpcstream, not grpc: grpc takes the slot before interceptors run, so
        # callers with bad tokens would hold the slots that valid calls need.
        self._concurrency = (
            ConcurrencyLimit(max_concurrent_rpcs) if max_concurrent_rpcs is not None else None
        )
        self._registrations: list[tuple[AddToServer, object]] = []
        self._tls: ServerTLS | None = tls
        self._health_wanted = health
        self._reflection_wanted = reflection
        self._health: Any = None
        self._service_names: list[str] = []
        self._closing = asyncio.Event()
        self._active: set[asyncio.Task[Any]] = set()  # streaming RPCs still cleaning up
        self._stopped = asyncio.Event()
        self._started = False
        self._stopping: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._server: grpc.aio.Server | None = None
        if health:
            self._health = _make_health_servicer()
        if reflection:
            _import_reflection()

    # -- configuration ---------------------------------------------------------------------

    def add(self, servicer: object, add_to_server: AddToServer | None = None) -> None:
        """Register a servicer.

        The generated ``add_<Service>Servicer_to_server`` function is found from the
        servicer's generated base class; pass ``add_to_server`` to name it explicitly.

        Raises:
            UsageError: the server already started, no generated base was found, or a
                handler declared with ``batching=`` whose method does not carry the batch
                type in the direction its pattern batches.
            ValueError: the servicer's ``max_queued`` is not an int >= 1, or its
                ``idle_timeout`` is neither None nor a positive number of seconds.
        """
        if self._started:
            raise UsageError("add() servicers before start()")
        check_servicer_settings(servicer)
        if add_to_server is None:
            add_to_server, service_name = _find_registration(servicer)
        else:
            service_name = _service_name_of(add_to_server)
        check_servicer_batching(servicer, service_name)
        self._registrations.append((add_to_server, servicer))
        if service_name:
            self._service_names.append(service_name)
        if isinstance(servicer, StreamServicer):
            servicer._grpcstream_bind(self._closing, self._active)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful with port 0).

        Raises:
            UsageError: before ``start()``.
        """
        if self._port is None:
            raise UsageError("the port is known after start()")
        return self._port

    @property
    def closing(self) -> asyncio.Event:
        """Set when a drain begins; every handler's ``closing`` is this event."""
        return self._closing

    @property
    def service_names(self) -> tuple[str, ...]:
        """Full names of the services added so far."""
        return tuple(self._service_names)

    async def start(self) -> None:
        """Bind and start serving; health reports SERVING.

        Raises:
            UsageError: already started.
            RuntimeError: the address could not be bound.
        """
        if self._started:
            raise UsageError("the server was already started")
        self._started = True
        self._server = grpc.aio.server(
            options=self._server_options,
            interceptors=self._interceptors,
            compression=self._compression,
        )
        registrar = Registrar(self._server, self._concurrency)
        for add_to_server, servicer in self._registrations:
            add_to_server(servicer, registrar)  # type: ignore[arg-type]
        if self._health is not None:
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            health_pb2_grpc.add_HealthServicer_to_server(self._health, registrar)
        registrar.register()
        if self._health is not None:
            for name in self._service_names:
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self._reflection_wanted:
            reflection = _import_reflection()
            names = [*self._service_names, reflection.SERVICE_NAME]
            if self._health is not None:
                names.append("grpc.health.v1.Health")
            reflection.enable_server_reflection(names, self._server)
        if self._tls is not None:
            port = self._server.add_secure_port(self._address, self._tls.server_credentials())
        else:
            port = self._server.add_insecure_port(self._address)
        if port == 0:
            raise RuntimeError(f"could not bind {self._address}")
        self._port = port
        await self._server.start()
        logger.info("serving %s on port %d", ", ".join(self._service_names) or "-", port)

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop. Idempotent; concurrent calls wait for the same drain.

        In order: health goes NOT_SERVING; new RPCs are refused (UNAVAILABLE); ``closing``
        is set so open handlers can finish (they then end with OK); RPCs still open after
        ``grace`` seconds (default: the server's) are cancelled.
        """
        if grace is not None:
            non_negative_seconds("grace", grace)
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self._drain(self._grace if grace is None else grace),
                name="grpcstream-server-drain",
            )
        await asyncio.shield(self._stopping)

    async def _drain(self, grace: float) -> None:
        logger.info("draining: %.1f s grace for open RPCs", grace)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._telemetry is not None:
            self._telemetry._instruments.drain_started()
        self._closing.set()
        if self._server is not None:
            await self._server.stop(grace)
        await self._wait_for_handlers()
        self._stopped.set()
        logger.info("stopped")

    async def _wait_for_handlers(self) -> None:
        # grpc's stop() returns once it has cancelled what outlived the grace period, but
        # those handlers still get CLIENT_GONE_GRACE to finish (and their producers and
        # writers to end). Returning earlier would let the application close resources
        # that handlers still use.
        pending = {task for task in self._active if not task.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=CLIENT_GONE_GRACE + 1.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def wait_stopped(self) -> None:
        """Wait until the server has stopped (after ``stop()`` or a signal)."""
        await self._stopped.wait()

    async def serve(
        self, *, signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Start (if needed), serve until SIGINT/SIGTERM or ``stop()``, then drain.

        Returns once the drain is over, so ``asyncio.run(main())`` exits with code 0.
        Signal handlers are only installed in the main thread on Unix.
        """
        if not self._started:
            await self.start()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        drain_requested = asyncio.Event()
        if sys.platform != "win32":
            for signum in signals:
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.add_signal_handler(signum, drain_requested.set)
                    installed.append(signum)
        try:
            stopped = loop.create_task(self._stopped.wait())
            requested = loop.create_task(drain_requested.wait())
            try:
                await asyncio.wait((stopped, requested), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                requested.cancel()
            await self.stop()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def __aenter__(self) -> StreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _find_registration(servicer: object) -> tuple[AddToServer, str]:
    """Find ``add_XServicer_to_server`` next to the generated ``XServicer`` base class."""
    for cls in type(servicer).__mro__:
        module = sys.modules.get(cls.__module__)
        if module is None or not cls.__module__.endswith("_pb2_grpc"):
            continue
        adder = getattr(module, f"add_{cls.__name__}_to_server", None)
        if callable(adder):
            return adder, _full_service_name(module, cls.__name__.removesuffix("Servicer"))
    raise UsageError(
        f"{type(servicer).__name__} does not subclass a generated *Servicer class "
        "(from a *_pb2_grpc module); pass add_to_server= explicitly"
    )


def _service_name_of(add_to_server: AddToServer) -> str:
    module = inspect.getmodule(add_to_server)
    name = getattr(add_to_server, "__name__", "")
    if module is None or not name.startswith("add_") or not name.endswith("Servicer_to_server"):
        return ""
    return _full_service_name(module, name.removeprefix("add_").removesuffix("Servicer_to_server"))


def _full_service_name(grpc_module: ModuleType, short_name: str) -> str:
    pb2_name = grpc_module.__name__.removesuffix("_grpc")
    with contextlib.suppress(ImportError):
        pb2 = importlib.import_module(pb2_name)
        service = pb2.DESCRIPTOR.services_by_name.get(short_name)
        if service is not None:
            return str(service.full_name)
    return short_name


def _make_health_servicer() -> Any:
    try:
        from grpc_health.v1.health import aio as health_aio
    except ImportError as exc:
        raise UsageError(HEALTH_EXTRA) from exc
    return health_aio.HealthServicer()


def _import_reflection() -> Any:
    try:
        from grpc_reflection.v1alpha import reflection
    except ImportError as exc:
        raise UsageError(REFLECTION_EXTRA) from exc
    return reflection
