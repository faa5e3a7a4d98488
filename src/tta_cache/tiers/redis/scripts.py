"""The Lua scripts of the Redis tier: tag versions, their bump, the lease read and the fill.

Each is one round trip and one atomic step. They repair what they read: a tag version key that holds
no valid version (lost, or corrupt) gets a fresh one; a corrupt lease key is taken over. They are
registered by SHA and called by EVALSHA (see :mod:`.sync` and :mod:`.asyncio`).
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

__all__ = [
    "BUMP_LUA",
    "BUMP_SHA",
    "FILL_LUA",
    "FILL_SHA",
    "LEASE_MANY_LUA",
    "LEASE_MANY_SHA",
    "LEASE_READ_LUA",
    "LEASE_READ_SHA",
    "PIPELINED",
    "RELEASE_LUA",
    "RELEASE_SHA",
    "TAKE_LUA",
    "TAKE_SHA",
    "VERSIONS_LUA",
    "VERSIONS_SHA",
    "Scripts",
]

# Tag versions start at the server's clock in microseconds, so a version recreated after data loss
# (restart, eviction, FLUSHDB, failover to an empty replica) is larger than any it replaces: stamps
# taken before the loss can never match again, and "merge by max" stays right. A key that holds no
# valid version is corrupt and replaced the same way, and counted (the last element of the reply):
# garbage, a sign, a leading zero, more than an int64 less one carries (one INCR more must still
# fit the envelope's stamp), or another Redis type (GET fails with WRONGTYPE, hence pcall).
_INIT = """
local fresh = nil
local replaced = 0
local function valid(v)
  if type(v) ~= 'string' then return false end
  if v == '0' then return true end
  if #v > 19 or not string.find(v, '^[1-9]%d*$') then return false end
  return #v < 19 or v < '9223372036854775807'
end
local function version(k, ttl)
  local v = redis.pcall('GET', k)
  if valid(v) then
    if redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end
    return v
  end
  if v then replaced = replaced + 1 end
  if not fresh then
    local t = redis.call('TIME')
    fresh = t[1] .. string.format('%06d', tonumber(t[2]))
  end
  redis.call('SET', k, fresh, 'EX', ttl)
  return fresh
end
"""

# KEYS: tag version keys. ARGV[1]: seconds a version must outlive. Returns the versions, then the
# number of corrupt keys replaced.
VERSIONS_LUA = (
    _INIT
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do out[i] = version(k, ttl) end
out[#KEYS + 1] = replaced
return out
"""
)

# KEYS: tag version keys. ARGV[1]: ttl; ARGV[2]: channel; ARGV[3]: message head (JSON object without
# its closing brace); ARGV[4..]: the tags, one per key. Bumps every version and publishes the tags
# and their new versions in the same atomic step, so subscribers see versions of one tag in
# increasing order. In a cluster it runs once per tag key, each run publishing its own tag.
# Returns the new versions, then the number of corrupt keys replaced.
#
# A bump moves a version to the server's clock in microseconds, or one past it if that is not
# larger (INCR: more than one bump in a microsecond, or a clock behind). So a version is never
# issued twice, even across a failover that lost bumps: the promoted replica's next bump is later
# than any the old master issued and lost, and an entry stamped with a lost version (still in some
# process's L1) can never match again. Equal-length digit strings compare as numbers; a Lua number
# would lose digits past 2^53.
BUMP_LUA = (
    _INIT
    + """
local ttl = tonumber(ARGV[1])
local out = {}
local names = {}
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
for i, k in ipairs(KEYS) do
  local v = version(k, ttl)
  if #v < #now or (#v == #now and v < now) then
    redis.call('SET', k, now, 'KEEPTTL')
  else
    redis.call('INCR', k)
  end
  out[i] = redis.call('GET', k)
  names[i] = ARGV[i + 3]
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ',"tags":' .. cjson.encode(names)
  .. ',"v":[' .. table.concat(out, ',') .. ']}')
out[#KEYS + 1] = replaced
return out
"""
)


# KEYS: the entry key, its lease key. ARGV: token, lease ms, force ("1": the caller cannot use the
# entry it finds, so take the lease even though the key exists). One round trip for a miss under
# ``lock=True``: returns {entry or false, 1 if the lease was granted else 0, the holder or false,
# 1 if a corrupt lease was replaced else 0}. An entry key of another type reads as '' (no envelope
# is empty: an undecodable miss, which the fill's SET overwrites). A lease key that holds no token
# (see ``TOKEN``) with an expiry, or another type, was not taken by a caller: it is taken over.
LEASE_READ_LUA = """
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then v = '' end
if v and ARGV[3] ~= '1' then return {v, 0, false, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {v, 1, ARGV[1], 0} end
local holder = redis.pcall('GET', KEYS[2])
if type(holder) == 'string' and #holder <= 128 and string.find(holder, '^[%w%.:_%-]+$')
    and redis.call('PTTL', KEYS[2]) > 0 then
  return {v, 0, holder, 0}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {v, 1, ARGV[1], 1}
"""

# KEYS: the lease key[, the entry key]. ARGV: token, channel, fill notice[, payload, px]. Writes the
# entry (if given; SET overwrites a key of any type), releases the lease only if it still holds our
# token, and tells the waiters of every process at once: a fill, a release and a wake-up in one
# round trip.
FILL_LUA = """
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5]) end
if redis.pcall('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# Batch loaders (``cached_many``, :mod:`.batch`). ``take(k)`` takes the lease key ``k`` for ARGV[1]
# (PX ARGV[2]) unless a live holder has it, and returns the holder (ARGV[1] when taken); a lease
# key holding no token, or without an expiry, is taken over and counted, as LEASE_READ_LUA does.
_TAKE = """
local replaced = 0
local function take(k)
  if redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
  local h = redis.pcall('GET', k)
  if type(h) == 'string' and #h <= 128 and string.find(h, '^[%w%.:_%-]+$')
      and redis.call('PTTL', k) > 0 then
    return h
  end
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
  replaced = replaced + 1
  return ARGV[1]
end
"""

# KEYS: n entry keys, then their n lease keys. ARGV: token, lease ms, one '0'/'1' per entry
# ('1': force, the caller cannot use the entry it found). For each entry: its value (a key of
# another type reads as '') and, when it is absent or forced, the lease's holder (false when
# not asked); then the number of corrupt leases replaced. One round trip for a whole batch.
LEASE_MANY_LUA = (
    _TAKE
    + """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local v = redis.pcall('GET', KEYS[i])
  if type(v) == 'table' then v = '' end
  local holder = false
  if not v or string.sub(ARGV[3], i, i) == '1' then holder = take(KEYS[n + i]) end
  out[2 * i - 1] = v
  out[2 * i] = holder
end
out[2 * n + 1] = replaced
return out
"""
)

# KEYS: lease keys. ARGV: token, lease ms. Each key's holder after trying to take it, then the
# number replaced (Cluster: the leases of one slot, taken after the entries were read).
TAKE_LUA = (
    _TAKE
    + """
local out = {}
for i, k in ipairs(KEYS) do out[i] = take(k) end
out[#KEYS + 1] = replaced
return out
"""
)

# KEYS: lease keys. ARGV: token, channel, fill notice. Releases each lease still holding the
# token and publishes the notice once: the waiters of every process wake.
RELEASE_LUA = """
for _, k in ipairs(KEYS) do
  if redis.pcall('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # what EVALSHA names it by


VERSIONS_SHA = _sha(VERSIONS_LUA)
BUMP_SHA = _sha(BUMP_LUA)
LEASE_READ_SHA = _sha(LEASE_READ_LUA)
FILL_SHA = _sha(FILL_LUA)
LEASE_MANY_SHA = _sha(LEASE_MANY_LUA)
TAKE_SHA = _sha(TAKE_LUA)
RELEASE_SHA = _sha(RELEASE_LUA)
PIPELINED = (
    VERSIONS_LUA,
    BUMP_LUA,
    LEASE_READ_LUA,
    FILL_LUA,
    LEASE_MANY_LUA,
    TAKE_LUA,
    RELEASE_LUA,
)
"""The scripts sent by EVALSHA inside pipelines (loaded again when Redis lost them)."""


class Scripts(NamedTuple):
    """The scripts registered with one client (redis-py ``Script`` objects: called, they send
    EVALSHA and load the script again if Redis lost it)."""

    versions: Any
    bump: Any
    lease_read: Any
    fill: Any

    @classmethod
    def register(cls, client: Any) -> Scripts:
        scripts = (VERSIONS_LUA, BUMP_LUA, LEASE_READ_LUA, FILL_LUA)
        return cls(*(client.register_script(script) for script in scripts))
