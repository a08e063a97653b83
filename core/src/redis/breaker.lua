-- Stockade: one fleet-wide circuit breaker decision (see breaker.rs).
--
-- KEYS[1] the state hash: st (0 closed, 1 open, 2 half-open, 3 forced
--         open, 4 disabled), g (generation), since (µs the generation
--         began), cg (the generation the closed period began in; 0 for a
--         key created closed), succ (successful probes this round), seq
--         (the last failure or lease number), cfg (canonical config).
-- KEYS[2] failures: sorted set, member = number, score = µs.
-- KEYS[3] hosts that failed: sorted set, member = host, score = µs.
-- KEYS[4] probe leases: sorted set, member = lease number, score = expiry µs.
--
-- ARGV: 1 op (0 sync, 1 failure, 2 acquire, 3 verdict, 4 manual),
--       2 now (µs since 1970, or -1: Redis TIME), 3 host, 4 generation of
--       the call, 5 outcome (verdict: 1 success, 2 failure, 3 ignored) or
--       state (manual), 6 lease number (verdict), 7-14 the config
--       (failure_threshold, reset_timeout_us, half_open_timeout_us,
--       half_open_max_probes, half_open_successes_to_close (0 = none),
--       failure_window_us, quorum, probe_lease_us), 15 adopt (1 = use a
--       stored config that differs).
--
-- Reply: {code, st, g, since, now, a, b}
--   code 0 state only; 1 probe granted (a = lease, b = lease expiry);
--   2 refused (a = µs until worth asking again, -1 = forced open);
--   3 stale verdict or failure (nothing changed); 4 admitted as closed or
--   disabled (no probe); 5 probe not in flight (lease expired or reported);
--   6 the key is absent (st 0); -1 config mismatch {-1, stored, ours}.
-- Times are integer µs; doubles hold them exactly below 2^53.

local base, fkey, hkey, pkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local host = ARGV[3]
local cgen = tonumber(ARGV[4])
local arg = tonumber(ARGV[5])
local lease = ARGV[6]

local names = {'failure_threshold', 'reset_timeout_us', 'half_open_timeout_us',
  'half_open_max_probes', 'half_open_successes_to_close', 'failure_window_us',
  'quorum', 'probe_lease_us'}
local cfg = {}
local parts = {}
for i = 1, 8 do
  cfg[i] = tonumber(ARGV[6 + i])
  parts[i] = names[i] .. '=' .. ARGV[6 + i]
end
local ours = table.concat(parts, ',')

local h = redis.call('HMGET', base, 'st', 'g', 'since', 'cg', 'succ', 'cfg')
local exists = h[2] ~= false
local st, g, since, cg, succ = 0, 0, 0, 0, 0
if exists then
  st, g, since, cg, succ = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]),
    tonumber(h[4]), tonumber(h[5])
  local stored = h[6]
  if stored and stored ~= ours then
    if ARGV[15] ~= '1' then
      return {-1, stored, ours}
    end
    local i = 1
    for value in string.gmatch(stored, '=(%d+)') do
      cfg[i] = tonumber(value)
      i = i + 1
    end
  end
end
local threshold, reset, half, maxp, toclose, window, quorum, leasettl =
  cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], cfg[6], cfg[7], cfg[8]

local function reply(code, a, b)
  if not exists then
    return {6, 0, 0, 0, now, a or 0, b or 0}
  end
  return {code, st, g, since, now, a or 0, b or 0}
end

if op == 0 then
  return reply(0)
end

-- Every key expires when idle for longer than anything it must remember;
-- the manual modes that wait for a reset are kept.
local idle = math.max(window, reset + half, leasettl) + 1000000
local idle_ms = math.floor(idle / 1000) + 1
local function touch()
  if st == 3 or st == 4 then
    redis.call('PERSIST', base)
  else
    redis.call('PEXPIRE', base, idle_ms)
  end
  redis.call('PEXPIRE', fkey, idle_ms)
  redis.call('PEXPIRE', hkey, idle_ms)
  redis.call('PEXPIRE', pkey, idle_ms)
end

-- A key made now: closed, generation = now (so generations keep growing
-- across an expiry), every closed-period token accepted (cg = 0).
local function create()
  exists = true
  st, g, since, cg, succ = 0, now, now, 0, 0
  redis.call('HSET', base, 'st', 0, 'g', g, 'since', now, 'cg', 0, 'succ', 0,
    'seq', 0, 'cfg', ours)
end

local function move(to)
  g = g + 1
  st = to
  since = now
  succ = 0
  if to == 0 then
    cg = g
  end
  redis.call('HSET', base, 'st', st, 'g', g, 'since', since, 'cg', cg, 'succ', 0)
  redis.call('DEL', fkey, hkey, pkey)
  -- '%.0f': Lua's own number-to-string keeps 14 digits only.
  redis.call('PUBLISH', base .. ':events',
    string.format('%.0f:%.0f:%.0f', st, g, since))
end

if op == 1 then
  -- A failure of a call admitted while closed in generation cgen.
  if not exists then
    create()
  end
  if st ~= 0 or (cg > 0 and cgen < cg) then
    return reply(3)
  end
  local n = redis.call('HINCRBY', base, 'seq', 1)
  redis.call('ZADD', fkey, now, n)
  redis.call('ZREMRANGEBYSCORE', fkey, '-inf', now - window)
  redis.call('ZREMRANGEBYRANK', fkey, 0, -(threshold + 1))
  redis.call('ZADD', hkey, now, host)
  redis.call('ZREMRANGEBYSCORE', hkey, '-inf', now - window)
  local count = redis.call('ZCARD', fkey)
  local hosts = redis.call('ZCARD', hkey)
  if count >= threshold and hosts >= quorum then
    move(1)
  end
  touch()
  return reply(0, count, hosts)
end

if op == 4 then
  if not exists then
    create()
  end
  move(arg)
  touch()
  return reply(0)
end

if op == 2 then
  if not exists or st == 0 or st == 4 then
    return reply(4)
  end
  if st == 3 then
    return reply(2, -1)
  end
  if st == 1 then
    if now - since < reset then
      return reply(2, since + reset - now)
    end
    move(2)
  elseif now - since >= half then
    -- The round is over: closed if a probe succeeded (none failed, or
    -- it would be open), else a fresh round.
    if succ > 0 then
      move(0)
      touch()
      return reply(4)
    end
    move(2)
  end
  redis.call('ZREMRANGEBYSCORE', pkey, '-inf', now)
  local held = redis.call('ZCARD', pkey)
  if held < maxp then
    local n = redis.call('HINCRBY', base, 'seq', 1)
    redis.call('ZADD', pkey, now + leasettl, n)
    touch()
    return reply(1, n, now + leasettl)
  end
  local wait = since + half - now
  local first = redis.call('ZRANGE', pkey, 0, 0, 'WITHSCORES')
  if first[2] then
    wait = math.min(wait, tonumber(first[2]) - now)
  end
  touch()
  return reply(2, math.max(wait, 1))
end

if op == 3 then
  if not exists or st ~= 2 or g ~= cgen then
    return reply(3)
  end
  local expiry = redis.call('ZSCORE', pkey, lease)
  if not expiry then
    return reply(5)
  end
  redis.call('ZREM', pkey, lease)
  if tonumber(expiry) <= now then
    touch()
    return reply(5)
  end
  if arg == 2 then
    move(1)
  elseif arg == 1 then
    succ = succ + 1
    if (toclose > 0 and succ >= toclose) or now - since >= half then
      move(0)
    else
      redis.call('HSET', base, 'succ', succ)
    end
  end
  touch()
  return reply(0)
end

return redis.error_reply('stockade breaker: unknown operation ' .. tostring(op))
