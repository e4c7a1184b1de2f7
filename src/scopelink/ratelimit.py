"""Token buckets: the one rate limiter of commands, signaling messages and retransmissions.

A bucket fills at `rate` tokens a second up to `burst`; taking costs tokens (one per message,
or the bytes of a packet) and is refused when the bucket holds fewer. `KeyedLimiter` keeps one
bucket per client in bounded memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

#: Clients a `KeyedLimiter` remembers; the longest idle is forgotten first (it starts full again).
MAX_KEYS = 4096


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, at most `burst` held; full when made unless `tokens` is given.

    `rate` and `burst` may change between takes (a budget that follows a bitrate): the time
    since the last take refills at the rate in force when it is taken.
    """

    rate: float
    burst: float
    #: Held now; more than `burst` is cut to `burst` at the next take (so the default is full).
    tokens: float = math.inf
    stamp: float = field(default_factory=time.monotonic)

    def take(self, cost: float = 1.0, now: float | None = None) -> bool:
        """Take `cost` tokens if the bucket holds them; False (and nothing taken) if not."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


class KeyedLimiter:
    """One `TokenBucket` per key (a client): `rate` a second each, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst, stamp=now)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket.take(1.0, now)

    def __len__(self) -> int:
        return len(self._buckets)
