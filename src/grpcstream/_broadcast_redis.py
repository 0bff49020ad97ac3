"""The Redis Streams backend of Broadcast (extra ``grpcstream[redis]``).

Positions and stream ids. Entry ``p`` of the log is stream entry ``0-p``: the millisecond
part of every id is 0 and the sequence part is the position. Publishers add entries with
``XADD <stream> 0-*``, so Redis numbers them 1, 2, 3... in the order it receives them,
atomically, whichever process publishes. Positions are therefore dense, the same on every
replica, and a hole in them means entries are gone from the stream; the replica records
it and reports it to the subscribers that cross it, it is never skipped silently.

Each replica keeps the newest ``max_entries`` entries in the Broadcast's own in-memory log
(its mirror). One task per replica tails the stream with ``XREAD BLOCK`` and appends what
it reads to the mirror, so subscribers, replay, gaps and the slow-subscriber policies are
exactly those of the in-memory log, and Redis sees one reader per replica, not one per
viewer. The stream is trimmed with ``MAXLEN ~ max_entries``, so a replica that starts (or
restarts) finds the same window in Redis that the others hold.

Publishing goes through one Lua script per batch of entries. It makes a retried batch
idempotent (a publisher that lost the reply sends the same batch number again and gets
the positions it already has, not a second copy) and it never lets a position be reused:
if Redis lost entries (a restart without persistence, a failover to a replica behind),
the script moves the numbering past the newest position this publisher had seen.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from ._exceptions import FailedPrecondition, Unavailable, UsageError
from ._redis_config import RedisStreams, redacted_url

if TYPE_CHECKING:
    from ._broadcast import Broadcast

__all__ = ["RedisLog"]

T = TypeVar("T")

logger = logging.getLogger("grpcstream.broadcast")

NOT_STARTED: Final = "the Redis-backed broadcast is not started (await log.start() first)"
PUBLISH_ONLY: Final = "this broadcast only publishes (RedisStreams(tail=False)): no subscribers"
LOAD_PAGE: Final = 5_000  # entries per XREVRANGE while a replica loads the stream
BLOCK_MS: Final = 2_000  # XREAD BLOCK: an idle replica asks again every 2 s
FIELD: Final = b"e"

# KEYS: stream, publishers hash. ARGV: publisher id, batch number, floor, maxlen, entries...
PUBLISH_LUA: Final = """
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if previous then
  local sep = string.find(previous, ':', 1, true)
  if string.sub(previous, 1, sep - 1) == ARGV[2] then
    return {tonumber(string.sub(previous, sep + 1)), 0}
  end
end
local floor = tonumber(ARGV[3])
local first = nil
local moved = 0
for i = 5, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '0-*', 'e', ARGV[i])
  local seq = tonumber(string.sub(id, 3))
  if first == nil and seq <= floor then
    redis.call('XDEL', KEYS[1], id)
    redis.call('XSETID', KEYS[1], '0-' .. ARGV[3])
    moved = floor - seq + 1
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '0-*', 'e', ARGV[i])
    seq = tonumber(string.sub(id, 3))
  end
  if first == nil then first = seq end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. string.format('%d', first))
return {first, moved}
"""

# KEYS: stream. ARGV: 0-<newest position this replica read>. Returns 1 if Redis had gone
# back below it (it lost entries) and the numbering was moved past it, else 0.
BUMP_LUA: Final = """
local added = redis.pcall('XADD', KEYS[1], ARGV[1], 'e', '')
if type(added) == 'table' and added.err then return 0 end
redis.call('XDEL', KEYS[1], added)
return 1
"""

_LOST: Final = (RedisError, OSError, TimeoutError)


class RedisLog(Generic[T]):
    """Connects one Broadcast (its mirror) to a Redis stream: reader loop and publisher."""

    def __init__(self, log: Broadcast[T], config: RedisStreams) -> None:
        entry_type: Any = log._type
        if not callable(getattr(entry_type, "FromString", None)) or not callable(
            getattr(entry_type, "SerializeToString", None)
        ):
            raise TypeError(
                f"a Redis-backed Broadcast stores protobuf messages; {entry_type.__name__}"
                " has no FromString()/SerializeToString()"
            )
        field = config.position_field
        if field is not None:
            try:
                setattr(entry_type(), field, 1)
            except (AttributeError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"position_field={field!r} is not an integer field of"
                    f" {entry_type.__name__}: {exc}"
                ) from None
        self._log = log
        self._config = config
        self._decode = entry_type.FromString
        self._url = redacted_url(config.url)
        self._key = config.stream
        self._publishers_key = f"{config.stream}:publishers"
        self._client: aioredis.Redis | None = None
        self._publish_script: Any = None
        self._bump_script: Any = None
        self._publisher_id = uuid.uuid4().hex
        self._batches = 0
        self._floor = 0  # newest position this process published
        self._last = 0  # newest position this replica read
        self._pending: deque[tuple[bytes, asyncio.Future[int]]] = deque()
        self._publisher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        log._entries.positions = []  # positions come from Redis, not from a counter
        log._lost = []
        log._failure = NOT_STARTED

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._stopped:
            raise UsageError("start() after aclose(): the broadcast has ended")
        if self._started:
            return
        config = self._config
        try:
            client = aioredis.Redis.from_url(
                config.url,
                socket_connect_timeout=config.timeout,
                retry=Retry(NoBackoff(), 0),  # we retry, with our own backoff and errors
                health_check_interval=0,
            )
        except ValueError as exc:
            raise ValueError(f"bad Redis URL {self._url!r}: {exc}") from None
        try:
            async with asyncio.timeout(config.timeout):
                info = await client.info("server")
        except _LOST as exc:
            await client.aclose()
            raise Unavailable(
                f"cannot reach Redis at {self._url} (tried for up to {config.timeout} s):"
                f" {exc or type(exc).__name__}"
            ) from exc
        version = str(info.get("redis_version", "0"))
        if tuple(int(part) for part in version.split(".")[:2]) < (7, 0):
            await client.aclose()
            raise FailedPrecondition(
                f"Redis at {self._url} is {version}; RedisStreams needs 7.0 or newer"
                " (for XADD <ms>-* ids)"
            )
        self._client = client
        self._publish_script = client.register_script(PUBLISH_LUA)
        self._bump_script = client.register_script(BUMP_LUA)
        if config.tail:
            try:
                await self._load()
            except _LOST as exc:
                await client.aclose()
                raise Unavailable(
                    f"cannot read stream {self._key!r} from {self._url}: {exc}"
                ) from exc
            self._log._failure = None
            self._reader = asyncio.get_running_loop().create_task(
                self._read_loop(), name="grpcstream-broadcast-redis-reader"
            )
        else:
            self._log._failure = PUBLISH_ONLY
        self._started = True

    async def stop(self) -> None:
        """Publish what is queued (within ``publish_timeout``), stop reading, disconnect."""
        if self._stopped:
            return
        self._stopped = True
        publisher = self._publisher
        if publisher is not None:
            await asyncio.wait({publisher})
        reader = self._reader
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader})
        if self._client is not None:
            await self._client.aclose()

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, entry: T) -> int:
        if not self._started:
            raise UsageError(f"apublish() before start(): {NOT_STARTED}")
        data: bytes = entry.SerializeToString()  # type: ignore[attr-defined]
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((data, future))
        if self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(
                self._publish_loop(), name="grpcstream-broadcast-redis-publisher"
            )
        return await future

    async def _publish_loop(self) -> None:
        try:
            while self._pending:
                batch: list[tuple[bytes, asyncio.Future[int]]] = []
                while self._pending and len(batch) < self._config.max_batch:
                    batch.append(self._pending.popleft())
                try:
                    first = await self._send([data for data, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for offset, (_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(first + offset)
        finally:
            self._publisher = None

    async def _send(self, entries: list[bytes]) -> int:
        """One batch through the publish script: retried, idempotent, never reusing ids."""
        config = self._config
        self._batches += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.publish_timeout
        delay = 0.05
        floor = max(self._floor, self._last)
        args = [self._publisher_id, self._batches, floor, self._log._entries.max_entries, *entries]
        while True:
            try:
                async with asyncio.timeout(config.timeout):
                    first, moved = await self._publish_script(
                        keys=[self._key, self._publishers_key], args=args
                    )
                break
            except ResponseError as exc:
                raise FailedPrecondition(
                    f"Redis refused to publish to {self._key!r}: {exc}; nothing was published"
                ) from exc
            except _LOST as exc:
                if loop.time() + delay > deadline:
                    raise Unavailable(
                        f"Redis at {self._url} unreachable for {config.publish_timeout} s"
                        f" ({exc or type(exc).__name__}): {len(entries)} entries not"
                        " confirmed; they may or may not be in the stream"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        first = int(first)
        if moved:
            logger.warning(
                "Redis stream %r had lost entries: its numbering restarted below position"
                " %d, which this publisher already had; numbering moved past it",
                self._key,
                floor,
            )
        self._floor = max(self._floor, first + len(entries) - 1)
        return first

    # -- reading ---------------------------------------------------------------------------

    async def _load(self) -> None:
        """Fill the mirror with the newest entries the stream holds."""
        client = self._client
        assert client is not None
        log = self._log
        entries = log._entries
        try:
            async with asyncio.timeout(self._config.timeout):
                info = await client.xinfo_stream(self._key)
            newest = _position(info["last-generated-id"])
        except ResponseError:  # no such key: nothing was ever published
            newest = 0
        rows: list[Any] = []
        end = "+"
        while len(rows) < entries.max_entries:  # pages, each within the command timeout
            count = min(LOAD_PAGE, entries.max_entries - len(rows))
            async with asyncio.timeout(self._config.timeout):
                page: Any = await client.xrevrange(self._key, max=end, count=count)
            rows.extend(page or ())
            if len(page or ()) < count:
                break
            end = f"({page[-1][0].decode()}"
        rows.reverse()
        if rows:
            first = _position(rows[0][0])
            if first > 1:
                entries.last_evicted = first - 1  # older positions are gone: OutOfRange
            self._last = first - 1
            for stream_id, fields in rows:
                await self._mirror(stream_id, fields)
        elif newest:
            # Everything ever published was trimmed or lost: start after it.
            entries.last_evicted = entries.newest = self._last = newest

    async def _read_loop(self) -> None:
        client = self._client
        assert client is not None
        config = self._config
        connected = True
        delay = 0.05
        while not self._stopped:
            try:
                if not connected:
                    async with asyncio.timeout(config.timeout):
                        await self._reconnected()
                    connected = True
                    delay = 0.05
                async with asyncio.timeout(BLOCK_MS / 1000 + config.timeout):
                    reply: Any = await client.xread(
                        {self._key: f"0-{self._last}"}, count=config.max_batch, block=BLOCK_MS
                    )
            except _LOST as exc:
                if self._stopped:
                    # redis-py can turn our cancellation into a connection error.
                    return
                if connected:
                    self._lose(exc)
                    connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            for _stream, rows in reply or ():
                for stream_id, fields in rows:
                    await self._mirror(stream_id, fields)

    async def _reconnected(self) -> None:
        if self._last:
            assert self._bump_script is not None
            if await self._bump_script(keys=[self._key], args=[f"0-{self._last}"]):
                logger.error(
                    "Redis stream %r went back below position %d, which this replica had"
                    " read: Redis lost entries; numbering moved past them",
                    self._key,
                    self._last,
                )
        self._log._failure = None
        logger.info("reconnected to Redis at %s, reading %r", self._url, self._key)

    def _lose(self, exc: BaseException) -> None:
        log = self._log
        log._failure = f"this replica lost its connection to Redis ({exc or type(exc).__name__})"
        logger.warning("lost Redis at %s: %s; reconnecting", self._url, exc)
        # Subscribers that have caught up end now (UNAVAILABLE) and resume elsewhere.
        log._wake_waiting()

    async def _mirror(self, stream_id: bytes | str, fields: dict[Any, bytes]) -> None:
        try:
            position = _position(stream_id)
        except ValueError as exc:
            logger.error("skipped an entry of %r: %s", self._key, exc)
            return
        log = self._log
        if position <= self._last:
            return
        if position > self._last + 1:
            assert log._lost is not None
            log._lost.append((self._last + 1, position - 1))
            if len(log._lost) > 64:
                del log._lost[:32]  # far older than anything still held
            logger.error(
                "entries %d..%d are missing from Redis stream %r (lost or trimmed before"
                " this replica read them); subscribers crossing them are told",
                self._last + 1,
                position - 1,
                self._key,
            )
        self._last = position
        try:
            entry: T = self._decode(fields[FIELD])
            if self._config.position_field is not None:
                setattr(entry, self._config.position_field, position)
            size = log._entries.entry_size(entry)
        except Exception:
            logger.exception(
                "entry %d of %r cannot be read; it counts as lost", position, self._key
            )
            assert log._lost is not None
            log._lost.append((position, position))
            return
        while True:
            drop, freed = log._entries.evictions(size)
            if not (log._blocking and log._holds_back(drop)):
                break
            # A 'block' subscriber holds this replica's reader back (not the publishers).
            if log._room is None:
                log._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(log._room)
        log._append(entry, position, size, drop, freed)


def _position(stream_id: bytes | str) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    milliseconds, _, sequence = text.partition("-")
    if milliseconds != "0":
        raise ValueError(f"stream id {text} was not written by grpcstream (expected 0-<position>)")
    return int(sequence)
