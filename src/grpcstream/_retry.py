"""RetryPolicy: backoff with jitter inside one overall deadline, built on tenacity.

tenacity drives the decisions: its ``stop``, ``wait`` and ``retry`` strategies are
evaluated against a ``tenacity.RetryCallState`` for every failed attempt. grpcstream owns
the loop itself, because a stream is retried from inside iteration (or from its writer
task), where tenacity's decorators and ``AsyncRetrying`` cannot reach.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
import tenacity
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base
from typing_extensions import override

from ._exceptions import RpcError, UsageError

__all__ = ["RetryEvent", "RetryPolicy", "Retrier", "PUSHBACK_TRAILER"]

logger = logging.getLogger("grpcstream.retry")

PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
"""Trailer a server sets to say when (or, if negative, whether) to retry."""

DEFAULT_REPLAY_BUFFER_BYTES = 256 * 1024
_MIN_ATTEMPT_SECONDS = 0.005  # an attempt with less budget than this could not succeed


class RetryEvent(NamedTuple):
    """What ``RetryPolicy.on_retry`` receives before each retry.

    Attributes:
        method: the full method name.
        attempt: the number of the attempt that just failed (1 for the first).
        code: the status it failed with.
        delay: seconds until the next attempt.
        error: the typed error of the failed attempt.
    """

    method: str
    attempt: int
    code: grpc.StatusCode
    delay: float
    error: RpcError


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often to retry a call.

    The defaults retry UNAVAILABLE up to 9 attempts in all. Before attempt n+1 it waits a
    random time between half and all of a cap that doubles: 0.1 s, 0.2 s, 0.4 s, ... 6.4 s,
    then 10 s (exponential backoff with "equal" jitter). So the default patience, the
    waits together, is between 11.4 s and 22.7 s (17 s on average): enough to ride out a
    server restart of about 10 s, and never less. Nothing retries forever by default.

    Args:
        max_attempts: attempts in all, including the first (>= 1).
        initial_backoff: cap of the first wait, in seconds.
        max_backoff: cap of every wait, in seconds.
        multiplier: growth of the cap per attempt.
        jitter: wait a random time between half the cap and the cap ("equal jitter":
            spreads clients apart while keeping a known minimum patience); False waits
            the cap.
        retry_on: status codes worth retrying.
        deadline: total seconds for all attempts and waits together (``None``: only the
            call's own timeout per attempt limits it).
        stop: a tenacity stop strategy; replaces ``max_attempts`` and ``deadline``-based
            stopping (the deadline still bounds every attempt).
        wait: a tenacity wait strategy; replaces the backoff settings.
        retry: a tenacity retry strategy (it sees the ``RpcError`` as the outcome);
            replaces ``retry_on``.
        replay_buffer_bytes: how much a client or bidi stream keeps of what it sent, to
            replay it on a new attempt. Past this, the stream is no longer retried.
        on_retry: called with a [`RetryEvent`][grpcstream.RetryEvent] before each retry.
        sleep: the sleep function (tests inject one to assert backoff without waiting).

    Raises:
        ValueError: a non-positive count or duration.
    """

    max_attempts: int = 9
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: bool = True
    retry_on: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})
    deadline: float | None = None
    stop: stop_base | None = None
    wait: wait_base | None = None
    retry: retry_base | None = None
    replay_buffer_bytes: int = DEFAULT_REPLAY_BUFFER_BYTES
    on_retry: Callable[[RetryEvent], None] | None = None
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff", "multiplier"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be positive or None, got {self.deadline!r}")
        if self.replay_buffer_bytes < 0:
            raise ValueError("replay_buffer_bytes must be >= 0")
        object.__setattr__(self, "retry_on", frozenset(self.retry_on))

    def wait_strategy(self) -> wait_base:
        """The tenacity wait strategy in effect."""
        if self.wait is not None:
            return self.wait
        if self.jitter:
            return _EqualJitter(
                multiplier=self.initial_backoff, max=self.max_backoff, exp_base=self.multiplier
            )
        return tenacity.wait_exponential(
            multiplier=self.initial_backoff, max=self.max_backoff, exp_base=self.multiplier
        )

    def patience(self) -> tuple[float, float]:
        """The shortest and longest total wait before giving up, in seconds.

        Computed from ``max_attempts`` and the backoff settings (attempts themselves take
        time too, and ``deadline`` may end it sooner). Not available with custom ``stop``
        or ``wait`` strategies.

        Raises:
            UsageError: the policy uses a custom ``stop`` or ``wait`` strategy.
        """
        if self.stop is not None or self.wait is not None:
            raise UsageError("patience() is only known for the built-in stop and wait")
        caps = [
            min(self.max_backoff, self.initial_backoff * self.multiplier**n)
            for n in range(self.max_attempts - 1)
        ]
        longest = sum(caps)
        return (longest / 2 if self.jitter else longest), longest

    def stop_strategy(self) -> stop_base:
        """The tenacity stop strategy in effect."""
        if self.stop is not None:
            return self.stop
        return tenacity.stop_after_attempt(self.max_attempts)


class Retrier:
    """One call's retry state: attempts, the budget, and the decision for each failure."""

    __slots__ = ("_deadline_at", "_method", "_policy", "_state", "_timeout")

    def __init__(self, policy: RetryPolicy, method: str, timeout: float | None) -> None:
        self._policy = policy
        self._method = method
        self._timeout = timeout
        self._deadline_at: float | None = None  # set when the first attempt starts
        self._state = tenacity.RetryCallState(
            tenacity.AsyncRetrying(
                stop=policy.stop_strategy(), wait=policy.wait_strategy(), sleep=policy.sleep
            ),
            None,
            (),
            {},
        )

    @property
    def attempt(self) -> int:
        """The number of the current attempt (1 for the first)."""
        return self._state.attempt_number

    def attempt_timeout(self) -> float | None:
        """The smaller of the call timeout and what is left of the overall deadline.

        The first call starts the deadline's clock (the first attempt is about to start).
        """
        if self._deadline_at is None and self._policy.deadline is not None:
            self._deadline_at = time.monotonic() + self._policy.deadline
        remaining = self.remaining()
        if remaining is None:
            return self._timeout
        if self._timeout is None:
            return remaining
        return min(self._timeout, remaining)

    def remaining(self) -> float | None:
        """Seconds left of the overall deadline, or None without one."""
        if self._deadline_at is None:
            return None
        return max(0.001, self._deadline_at - time.monotonic())

    def made_progress(self) -> None:
        """A resumable stream delivered messages: later failures start a fresh backoff."""
        self._state = tenacity.RetryCallState(self._state.retry_object, None, (), {})

    def is_retryable(self, error: RpcError) -> bool:
        """Whether ``error``'s status is one to retry (before counting attempts)."""
        if self._policy.retry is not None:
            self._state.set_exception((type(error), error, error.__traceback__))
            return bool(self._policy.retry(self._state))
        return error.code in self._policy.retry_on

    async def backoff(self, error: RpcError) -> bool:
        """Decide about a failed attempt; if retrying, log, notify and sleep first.

        Returns:
            True when the caller should start another attempt.
        """
        if not self.is_retryable(error):
            return False
        pushback = _pushback_seconds(error)
        if pushback is not None and pushback < 0:
            logger.info(
                "%s: not retrying %s: the server's pushback says no", self._method, error.code.name
            )
            return False
        state = self._state
        state.set_exception((type(error), error, error.__traceback__))
        if state.retry_object.stop(state):
            return False
        delay = pushback if pushback is not None else float(state.retry_object.wait(state))
        if (
            self._deadline_at is not None
            and time.monotonic() + delay >= self._deadline_at - _MIN_ATTEMPT_SECONDS
        ):
            return False  # the next attempt could not start (and do anything) in the budget
        event = RetryEvent(self._method, state.attempt_number, error.code, delay, error)
        logger.info(
            "%s: attempt %d failed with %s; retrying in %.3f s",
            self._method,
            event.attempt,
            error.code.name,
            delay,
        )
        if self._policy.on_retry is not None:
            self._policy.on_retry(event)
        state.idle_for += delay
        await self._policy.sleep(delay)
        state.prepare_for_next_attempt()
        return True


class _EqualJitter(tenacity.wait_exponential):
    """A random wait between half the exponential cap and the cap."""

    @override
    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        cap = super().__call__(retry_state)
        return cap / 2 + random.uniform(0, cap / 2)


def _pushback_seconds(error: RpcError) -> float | None:
    for key, value in error.trailing_metadata:
        if key == PUSHBACK_TRAILER:
            text = value.decode() if isinstance(value, bytes) else value
            try:
                return int(text) / 1000
            except ValueError:
                return -1.0  # malformed pushback: the spec says do not retry
    return None
