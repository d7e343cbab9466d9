"""Admission on Redis: every acquire and every reconcile is one atomic Lua script, on Redis' own clock.

Limits, budgets and reservations then hold across every process and worker that shares the Redis. Keys:
``{prefix}b:...`` buckets (hash t=tokens, s=stamp), ``{prefix}c:...`` counters (hash u=used, r=reserved),
``{prefix}res:ID`` a reservation (its JSON) and ``{prefix}reservations`` the open ones by deadline.

The scripts of every call (acquire, reconcile, levels) go over ``redis_wire.RedisWire``, pipelined on one
connection per event loop; the rare operations (extend, orphans, seed) over the redis-py client.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from contentmill.errors import AdmissionUnavailable
from contentmill.gateway.admission import Admission, Claim, Refusal, Reservation
from contentmill.gateway.redis_wire import TIMEOUT_S, Arg, RedisWire, Script
from contentmill.ids import ordered_id

_REFILL = """
local function bucket_tokens(key, limit, rate, now)
  local v = redis.call('HMGET', key, 't', 's')
  local tokens, stamp = tonumber(v[1]), tonumber(v[2])
  if tokens == nil then return limit end
  return math.min(limit, tokens + math.max(0, now - stamp) * rate)
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# Claims travel as the reservation's own JSON (one argument): [key, kind, amount, limit or null, period_s, ttl_s,
# label] each. KEYS: the claims' Redis keys, the open-reservations zset, the reservation key.
# ARGV: reservation id, ttl_s, reservation json.
_ACQUIRE = _REFILL + """
local claims = cjson.decode(ARGV[3]).claims
local n = #claims
local now = clock()
local levels = {}
for i = 1, n do
  local c = claims[i]
  local amount, limit = tonumber(c[3]), c[4]
  if c[2] == 'bucket' then
    local tokens = bucket_tokens(KEYS[i], limit, limit / c[5], now)
    levels[i] = tokens
    if amount > tokens then return {0, i, tostring(tokens), tostring(limit - tokens), '0'} end
  else
    local v = redis.call('HMGET', KEYS[i], 'u', 'r')
    local used, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
    if limit ~= cjson.null and used + amount > limit then
      return {0, i, tostring(limit - used), tostring(used - reserved), tostring(reserved)}
    end
  end
end
for i = 1, n do
  local c = claims[i]
  local amount, limit = tonumber(c[3]), c[4]
  if c[2] == 'bucket' then
    redis.call('HSET', KEYS[i], 't', tostring(math.max(0, levels[i] - amount)), 's', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil(c[5] * 2000))
  else
    redis.call('HINCRBYFLOAT', KEYS[i], 'u', amount)
    redis.call('HINCRBYFLOAT', KEYS[i], 'r', amount)
    local ttl_ms = math.floor(tonumber(c[6]) * 1000)
    if ttl_ms > 0 and redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ttl_ms) end
  end
end
redis.call('SET', KEYS[n + 2], ARGV[3])
redis.call('ZADD', KEYS[n + 1], now + tonumber(ARGV[2]), ARGV[1])
return {1, tostring(now)}
"""

# KEYS: the claims' Redis keys, the open-reservations zset, the reservation key.
# ARGV: reservation id, JSON list of the actual amount of each claim.
_RECONCILE = _REFILL + """
if redis.call('ZREM', KEYS[#KEYS - 1], ARGV[1]) == 0 then return 0 end
local stored = redis.call('GET', KEYS[#KEYS])
redis.call('DEL', KEYS[#KEYS])
if not stored then return 1 end
local claims = cjson.decode(stored).claims
local actual = cjson.decode(ARGV[2])
local now = clock()
for i = 1, #claims do
  local c = claims[i]
  local reserved, limit = tonumber(c[3]), c[4]
  local delta = tonumber(actual[i]) - reserved
  if c[2] == 'bucket' then
    local tokens = bucket_tokens(KEYS[i], limit, limit / c[5], now) - delta
    redis.call('HSET', KEYS[i], 't', tostring(math.min(limit, math.max(0, tokens))), 's', tostring(now))
  else
    local used = tonumber(redis.call('HINCRBYFLOAT', KEYS[i], 'u', delta))
    local left = tonumber(redis.call('HINCRBYFLOAT', KEYS[i], 'r', -reserved))
    if used < 0 then redis.call('HSET', KEYS[i], 'u', '0') end
    if left < 0 then redis.call('HSET', KEYS[i], 'r', '0') end
  end
end
return 1
"""

# KEYS: n claim keys. ARGV: n, then per claim: kind, limit, rate. Returns available, reserved per claim.
_LEVELS = _REFILL + """
local n = tonumber(ARGV[1])
local now = clock()
local out = {}
for i = 1, n do
  local a = 2 + (i - 1) * 3
  local kind, limit, rate = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if kind == 'b' then
    out[#out + 1] = tostring(bucket_tokens(KEYS[i], limit, rate, now)); out[#out + 1] = '0'
  else
    local v = redis.call('HMGET', KEYS[i], 'u', 'r')
    out[#out + 1] = tostring(limit - (tonumber(v[1]) or 0)); out[#out + 1] = tostring(tonumber(v[2]) or 0)
  end
end
return out
"""


def _unavailable_as_error(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A Redis that cannot be reached (down, cut mid-call, timing out), or that answers a command with an error
    (out of memory, a key of another type under our prefix), is an ``AdmissionUnavailable`` in one line that names
    where it is and which of the two it was, never a driver traceback."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except RedisError as exc:
            self = args[0]
            assert isinstance(self, RedisAdmission)
            if isinstance(exc, ResponseError):
                raise AdmissionUnavailable(
                    f"Redis at {self.where} answered with an error ({exc}): limits and budgets cannot be checked, "
                    "so nothing was called; see Redis' log (out of memory? another program's keys under "
                    "CONTENTMILL_REDIS_PREFIX?)") from None
            raise AdmissionUnavailable(
                f"Redis at {self.where} cannot be reached ({type(exc).__name__}: {exc}): limits and budgets cannot "
                "be checked, so nothing was called; start it or fix CONTENTMILL_REDIS_URL") from None

    return guarded


P = ParamSpec("P")
T = TypeVar("T")
ACQUIRE, RECONCILE, LEVELS = Script.of(_ACQUIRE), Script.of(_RECONCILE), Script.of(_LEVELS)
SETTLE_CHUNK = 32  # settlements sent to Redis at once (reconcile_many)


def _limit(claim: Claim) -> float:
    return -1.0 if math.isinf(claim.limit) else claim.limit


class RedisAdmission(Admission):
    """Admission shared by every process on one Redis. ``wire`` runs the scripts; without one, a wire to the
    Redis, database and user of ``client``."""

    def __init__(self, client: aioredis.Redis, prefix: str = "contentmill:adm:", wire: RedisWire | None = None
                 ) -> None:
        self.client = client
        self.wire = wire or RedisWire.like(client)
        self.prefix = prefix
        self._zset = prefix + "reservations"

    @classmethod
    def from_url(cls, url: str, prefix: str = "contentmill:adm:") -> RedisAdmission:
        client = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        return cls(client, prefix, RedisWire.from_url(url))

    @property
    def where(self) -> str:
        """host:port (or the unix socket) of the Redis, never its password."""
        return self.wire.where

    def _key(self, claim: Claim) -> str:
        return f"{self.prefix}{'b' if claim.kind == 'bucket' else 'c'}:{claim.key}"

    def _res_key(self, reservation_id: str) -> str:
        return f"{self.prefix}res:{reservation_id}"

    @_unavailable_as_error
    async def acquire(self, claims: Sequence[Claim], *, ttl_s: float, payload: str = "") -> Reservation | Refusal:
        reservation = Reservation(ordered_id(), tuple(claims), 0.0, payload)
        keys = [self._key(c) for c in claims] + [self._zset, self._res_key(reservation.id)]
        result = await self.wire.run(ACQUIRE, keys, [reservation.id, ttl_s, reservation.to_json()])
        if int(result[0]) == 1:
            now = float(result[1])
            reservation.created, reservation.deadline = now, now + ttl_s
            return reservation
        claim = claims[int(result[1]) - 1]
        available, used, reserved = (float(x) for x in result[2:5])
        wait = None
        if claim.kind == "bucket" and claim.amount <= claim.limit:
            wait = (claim.amount - available) / claim.rate
        return Refusal(claim, available, used, reserved, wait)

    async def reconcile(self, reservation: Reservation, actual: Sequence[float]) -> bool:
        return (await self.reconcile_many([(reservation, actual)]))[0]

    @_unavailable_as_error
    async def reconcile_many(self, settlements: Sequence[tuple[Reservation, Sequence[float]]]) -> list[bool]:
        """One script call each, pipelined, SETTLE_CHUNK at a time: Redis runs its commands one after another,
        so a call's acquire sent meanwhile waits behind one chunk (about 0.7 ms), not a whole ledger round."""
        calls: list[tuple[list[Arg], list[Arg]]] = [
            ([*(self._key(c) for c in reservation.claims), self._zset, self._res_key(reservation.id)],
             [reservation.id, orjson.dumps(list(actual))]) for reservation, actual in settlements]
        settled: list[bool] = []
        for start in range(0, len(calls), SETTLE_CHUNK):
            replies = await self.wire.run_many(RECONCILE, calls[start:start + SETTLE_CHUNK])
            settled += [int(reply) == 1 for reply in replies]
        return settled

    @_unavailable_as_error
    async def extend(self, reservation: Reservation, ttl_s: float) -> bool:
        seconds, micros = await self.client.time()
        deadline = seconds + micros / 1e6 + ttl_s
        if not await self.client.zadd(self._zset, {reservation.id: deadline}, xx=True, ch=True):
            return False  # no longer open (or its deadline was already this one)
        reservation.deadline = deadline
        return True

    @_unavailable_as_error
    async def levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        args: list[Any] = [len(claims)]
        for claim in claims:
            args += ["b" if claim.kind == "bucket" else "c", _limit(claim), claim.rate]
        raw = await self.wire.run(LEVELS, [self._key(c) for c in claims], args)
        values = [float(x) for x in raw]
        return [(math.inf if math.isinf(c.limit) else values[2 * i], values[2 * i + 1])
                for i, c in enumerate(claims)]

    @_unavailable_as_error
    async def orphans(self, now: float | None = None) -> list[Reservation]:
        if now is None:
            seconds, micros = await self.client.time()
            now = seconds + micros / 1e6
        late: list[Reservation] = []
        for raw_id in await self.client.zrangebyscore(self._zset, "-inf", now):
            reservation_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            raw = await self.client.get(self._res_key(reservation_id))
            if raw is None:
                await self.client.zrem(self._zset, reservation_id)
                continue
            reservation = Reservation.from_json(raw)
            # Settling at the reserved amounts removes it; only the sweeper that wins the ZREM keeps it.
            if await self.reconcile(reservation, [c.amount for c in reservation.claims]):
                late.append(reservation)
        return late

    @_unavailable_as_error
    async def seed(self, claim: Claim, used: float) -> None:
        key = self._key(claim)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "u", used)
            pipe.hsetnx(key, "r", 0)
            if claim.ttl_s:
                pipe.pexpire(key, int(claim.ttl_s * 1000), nx=True)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.wire.aclose()
        await self.client.aclose()
