"""Admission on Redis: every acquire and every reconcile is one atomic Lua script, on Redis' own clock.

Limits, budgets and reservations then hold across every process and worker that shares the Redis. Keys:
``{prefix}b:...`` buckets (hash t=tokens, s=stamp), ``{prefix}c:...`` counters (hash u=used, r=reserved),
``{prefix}res:ID`` a reservation (its JSON) and ``{prefix}reservations`` the open ones by deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from contentmill.gateway.admission import Admission, Claim, Refusal, Reservation, new_reservation_id

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

# KEYS: n claim keys, the open-reservations zset, the reservation key.
# ARGV: n, reservation id, ttl_s, reservation json, then per claim: kind, amount, limit (-1: none), rate, ttl_ms.
_ACQUIRE = _REFILL + """
local n = tonumber(ARGV[1])
local now = clock()
local levels = {}
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local kind, amount, limit, rate = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if kind == 'b' then
    local tokens = bucket_tokens(KEYS[i], limit, rate, now)
    levels[i] = tokens
    if amount > tokens then return {0, i, tostring(tokens), tostring(limit - tokens), '0'} end
  else
    local v = redis.call('HMGET', KEYS[i], 'u', 'r')
    local used, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
    if limit >= 0 and used + amount > limit then
      return {0, i, tostring(limit - used), tostring(used - reserved), tostring(reserved)}
    end
  end
end
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local kind, amount, limit, rate = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local ttl_ms = tonumber(ARGV[a + 4])
  if kind == 'b' then
    redis.call('HSET', KEYS[i], 't', tostring(math.max(0, levels[i] - amount)), 's', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil(limit / rate * 2000))
  else
    redis.call('HINCRBYFLOAT', KEYS[i], 'u', amount)
    redis.call('HINCRBYFLOAT', KEYS[i], 'r', amount)
    if ttl_ms > 0 and redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ttl_ms) end
  end
end
local deadline = now + tonumber(ARGV[3])
redis.call('SET', KEYS[n + 2], ARGV[4])
redis.call('ZADD', KEYS[n + 1], deadline, ARGV[2])
return {1, tostring(now)}
"""

# KEYS: n claim keys, the open-reservations zset, the reservation key.
# ARGV: n, reservation id, then per claim: kind, actual - reserved, reserved, limit, rate.
_RECONCILE = _REFILL + """
local n = tonumber(ARGV[1])
if redis.call('ZREM', KEYS[n + 1], ARGV[2]) == 0 then return 0 end
redis.call('DEL', KEYS[n + 2])
local now = clock()
for i = 1, n do
  local a = 3 + (i - 1) * 5
  local kind, delta, reserved = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local limit, rate = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if kind == 'b' then
    local tokens = bucket_tokens(KEYS[i], limit, rate, now) - delta
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


def _limit(claim: Claim) -> float:
    return -1.0 if math.isinf(claim.limit) else claim.limit


class RedisAdmission(Admission):
    """Admission shared by every process on one Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str = "contentmill:adm:") -> None:
        self.client = client
        self.prefix = prefix
        self._zset = prefix + "reservations"
        self._acquire = client.register_script(_ACQUIRE)
        self._reconcile = client.register_script(_RECONCILE)
        self._levels = client.register_script(_LEVELS)

    @classmethod
    def from_url(cls, url: str, prefix: str = "contentmill:adm:") -> RedisAdmission:
        return cls(aioredis.Redis.from_url(url), prefix)

    def _key(self, claim: Claim) -> str:
        return f"{self.prefix}{'b' if claim.kind == 'bucket' else 'c'}:{claim.key}"

    def _res_key(self, reservation_id: str) -> str:
        return f"{self.prefix}res:{reservation_id}"

    async def acquire(self, claims: Sequence[Claim], *, ttl_s: float, payload: str = "") -> Reservation | Refusal:
        reservation = Reservation(new_reservation_id(), tuple(claims), 0.0, payload)
        args: list[Any] = [len(claims), reservation.id, ttl_s, reservation.to_json()]
        for claim in claims:
            args += ["b" if claim.kind == "bucket" else "c", claim.amount, _limit(claim), claim.rate,
                     int(claim.ttl_s * 1000)]
        keys = [self._key(c) for c in claims] + [self._zset, self._res_key(reservation.id)]
        result = await self._acquire(keys=keys, args=args)
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
        args: list[Any] = [len(reservation.claims), reservation.id]
        for claim, amount in zip(reservation.claims, actual, strict=True):
            args += ["b" if claim.kind == "bucket" else "c", amount - claim.amount, claim.amount, _limit(claim),
                     claim.rate]
        keys = [self._key(c) for c in reservation.claims] + [self._zset, self._res_key(reservation.id)]
        return int(await self._reconcile(keys=keys, args=args)) == 1

    async def levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        args: list[Any] = [len(claims)]
        for claim in claims:
            args += ["b" if claim.kind == "bucket" else "c", _limit(claim), claim.rate]
        raw = await self._levels(keys=[self._key(c) for c in claims], args=args)
        values = [float(x) for x in raw]
        return [(math.inf if math.isinf(c.limit) else values[2 * i], values[2 * i + 1])
                for i, c in enumerate(claims)]

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

    async def seed(self, claim: Claim, used: float) -> None:
        key = self._key(claim)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "u", used)
            pipe.hsetnx(key, "r", 0)
            if claim.ttl_s:
                pipe.pexpire(key, int(claim.ttl_s * 1000), nx=True)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()
