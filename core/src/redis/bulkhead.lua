-- Stockade's fleet-wide bulkhead: permits are leases with an expiry.
--
-- KEYS[1] config   the canonical config ("max_concurrent=N,max_queue=M")
-- KEYS[2] leases   sorted set: lease id -> expiry (µs since 1970)
-- KEYS[3] queue    sorted set: waiter id -> when it joined (µs): the order
-- KEYS[4] queue_exp sorted set: waiter id -> expiry (µs)
--
-- ARGV[1] op: acquire | wait | release | cancel | renew | read
-- ARGV[2] now in µs since 1970, or -1 to read Redis's TIME
-- ARGV[3] our canonical config
-- ARGV[4] 1 to adopt a stored config that differs, 0 to report it
-- ARGV[5] max_concurrent   ARGV[6] max_queue
-- ARGV[7] lease ttl (µs)   ARGV[8] waiter ttl (µs)
-- ARGV[9..] ids (lease id, then waiter id; or lease ids)
--
-- Reply: {status, in_use, waiting, effective config or '', ids...}
--   acquire/wait: status 1 = a lease is held (added now or before),
--                 0 = no permit (acquire), 2 = queued (wait),
--                 3 = no permit and the queue is full (wait),
--                 -1 = another config is stored (4th element: it)
--   release/cancel: status = leases removed
--   renew: status = leases renewed; ids = the given leases that had expired
--   read: status 0
-- A lease or waiter is valid while now < its expiry. Expected outcomes are
-- replies, never Lua errors.

local config_key, leases, queue, queue_exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local ours = ARGV[3]
local adopt = ARGV[4] == '1'
local max_concurrent = tonumber(ARGV[5])
local max_queue = tonumber(ARGV[6])
local lease_ttl = tonumber(ARGV[7])
local waiter_ttl = tonumber(ARGV[8])

-- Expired leases and waiters are gone.
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', queue_exp, '-inf', now)
for i = 1, #dead do
  redis.call('ZREM', queue, dead[i])
end
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', queue_exp, '-inf', now)
end

local function last_expiry(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then
    return tonumber(top[2])
  end
  return nil
end

-- `key` lives until `at` (µs), plus a millisecond: never before its last
-- member expires.
local function expire_at(key, at)
  redis.call('PEXPIRE', key, math.ceil((at - now) / 1000) + 1)
end

-- Every key expires with its last member (an absent leases key means no
-- permit taken). The config lives as long as the state, and `lease_ttl`
-- past the last use (`used`), so a mismatch is seen while anyone uses the
-- bulkhead and for `lease_ttl` after.
local function settle(used)
  local l = last_expiry(leases)
  local q = last_expiry(queue_exp)
  if l then
    expire_at(leases, l)
  end
  if q then
    expire_at(queue_exp, q)
    expire_at(queue, q)
  end
  local last = l
  if q and (not last or q > last) then
    last = q
  end
  if used and (not last or now + lease_ttl > last) then
    last = now + lease_ttl
  end
  if last and redis.call('PTTL', config_key) < math.ceil((last - now) / 1000) + 1 then
    expire_at(config_key, last)
  end
end

local function counts()
  return redis.call('ZCARD', leases), redis.call('ZCARD', queue)
end

-- The config in force: ours, or the stored one (adopted), or nil and the
-- stored one when they differ.
local function check_config()
  local stored = redis.call('GET', config_key)
  if not stored then
    redis.call('SET', config_key, ours)
    return ours
  end
  if stored == ours then
    return ours
  end
  if adopt then
    local mc, mq = string.match(stored, '^max_concurrent=(%d+),max_queue=(%d+)$')
    if mc then
      max_concurrent = tonumber(mc)
      max_queue = tonumber(mq)
      return stored
    end
  end
  return nil, stored
end

local function leave(waiter)
  redis.call('ZREM', queue, waiter)
  redis.call('ZREM', queue_exp, waiter)
end

if op == 'acquire' or op == 'wait' then
  local lease = ARGV[9]
  local waiter = ARGV[10]
  local effective, stored = check_config()
  if not effective then
    local in_use, waiting = counts()
    settle(false)
    return {-1, in_use, waiting, stored}
  end
  -- A retried call whose first attempt was applied: the lease is held.
  if redis.call('ZSCORE', leases, lease) then
    if waiter then
      leave(waiter)
    end
    settle(true)
    local in_use, waiting = counts()
    return {1, in_use, waiting, effective}
  end
  local in_use, waiting = counts()
  -- Permits free for this caller: those not owed to the waiters ahead of
  -- it (all of them for a newcomer, its rank for a waiter).
  local ahead = waiting
  if waiter then
    local rank = redis.call('ZRANK', queue, waiter)
    if rank then
      ahead = rank
    end
  end
  if in_use + ahead < max_concurrent then
    redis.call('ZADD', leases, now + lease_ttl, lease)
    if waiter then
      leave(waiter)
    end
    settle(true)
    in_use, waiting = counts()
    return {1, in_use, waiting, effective}
  end
  if op == 'acquire' then
    settle(true)
    return {0, in_use, waiting, effective}
  end
  if redis.call('ZSCORE', queue, waiter) then
    redis.call('ZADD', queue_exp, now + waiter_ttl, waiter)
    settle(true)
    return {2, in_use, waiting, effective}
  end
  if waiting >= max_queue then
    settle(true)
    return {3, in_use, waiting, effective}
  end
  redis.call('ZADD', queue, now, waiter)
  redis.call('ZADD', queue_exp, now + waiter_ttl, waiter)
  settle(true)
  return {2, in_use, waiting + 1, effective}
end

if op == 'release' then
  local removed = 0
  for i = 9, #ARGV do
    removed = removed + redis.call('ZREM', leases, ARGV[i])
  end
  settle(false)
  local in_use, waiting = counts()
  return {removed, in_use, waiting, ''}
end

if op == 'cancel' then
  local removed = redis.call('ZREM', leases, ARGV[9])
  if ARGV[10] then
    leave(ARGV[10])
  end
  settle(false)
  local in_use, waiting = counts()
  return {removed, in_use, waiting, ''}
end

if op == 'renew' then
  local renewed = 0
  local reply = {0, 0, 0, ''}
  for i = 9, #ARGV do
    if redis.call('ZSCORE', leases, ARGV[i]) then
      redis.call('ZADD', leases, now + lease_ttl, ARGV[i])
      renewed = renewed + 1
    else
      reply[#reply + 1] = ARGV[i]
    end
  end
  settle(false)
  local in_use, waiting = counts()
  reply[1] = renewed
  reply[2] = in_use
  reply[3] = waiting
  return reply
end

-- read
settle(false)
local in_use, waiting = counts()
return {0, in_use, waiting, ''}
