-- Stockade's fleet-wide rate limiter: the core's GCRA decision, in one
-- script call, on integer microseconds (exact in Lua doubles below 2^53).
--
-- KEYS[1]  the limiter's hash: t = TAT (µs since 1970), and the canonical
--          config p (period ns), n (requests), b (burst, 0 = default),
--          q (max_queue_size), w (queue_timeout ns), m (mode).
-- ARGV[1]  now in µs, or -1: read Redis TIME
-- ARGV[2]  op: 1 try_acquire, 2 reserve, 3 cancel
-- try_acquire / reserve:
--   ARGV[3] cost = n·T   ARGV[4] limit = B·T   ARGV[5] room = Q·T
--   ARGV[6] longest wait (µs, rounded down)   ARGV[7] extra permits to
--   lease on a grant   ARGV[8] T   ARGV[9..14] the canonical config
-- cancel:
--   ARGV[3] the TAT the booking wrote   ARGV[4] the TAT it replaced
--   ARGV[5] its ready time (µs)
--
-- Replies (integers; lead = TAT - now after the call, at least 0):
--   {0, now, lead, leased}            granted now (plus `leased` extra)
--   {1, now, lead, retry_after}       try_acquire refused
--   {2, now, lead, retry_after}       reserve refused: queue full
--   {3, now, lead, wait}              reserve refused: wait too long
--   {4, now, lead, wait, tat, prev}   booked, ready after `wait`
--   {5, now, lead}                    cancelled
--   {6, now, lead}                    not cancelled: booked after
--   {7, now, lead}                    not cancelled: ready
--   {9, p, n, b, q, w, m}             another config is stored
-- Expected outcomes never raise Lua errors.

local key = KEYS[1]
local now = tonumber(ARGV[1])
if now < 0 then
  -- Redis before 5 replicates scripts verbatim and forbids writes after
  -- TIME unless effects are replicated (the default since 5, a no-op in 7).
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local op = tonumber(ARGV[2])
local f = redis.call('HMGET', key, 't', 'p', 'n', 'b', 'q', 'w', 'm')
local tat = tonumber(f[1])
local lead = 0
if tat ~= nil and tat > now then
  lead = tat - now
end

local function int(x)
  return string.format('%.0f', x)
end

-- floor(a / b) exactly for 0 <= a, 0 < b < 2^53 (the division may round).
local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- Writes the TAT `now + new_lead`; the key lives until the bucket is full
-- again (an absent key is a full bucket), plus slack.
local function write(new_lead, fresh)
  if fresh then
    redis.call('HSET', key, 't', int(now + new_lead), 'p', ARGV[9], 'n', ARGV[10],
      'b', ARGV[11], 'q', ARGV[12], 'w', ARGV[13], 'm', ARGV[14])
  else
    redis.call('HSET', key, 't', int(now + new_lead))
  end
  redis.call('PEXPIRE', key, floor_div(new_lead, 1000) + 2)
end

if op == 3 then
  local booked = tonumber(ARGV[3])
  local prev = tonumber(ARGV[4])
  local ready = tonumber(ARGV[5])
  if now >= ready then
    return {7, now, lead}
  end
  if tat == nil or tat ~= booked then
    return {6, now, lead}
  end
  if prev > now then
    redis.call('HSET', key, 't', int(prev))
    redis.call('PEXPIRE', key, floor_div(prev - now, 1000) + 2)
    return {5, now, prev - now}
  end
  -- The bucket is full again: an absent key.
  redis.call('DEL', key)
  return {5, now, 0}
end

local fresh = tat == nil
if not fresh then
  for i = 2, 7 do
    if f[i] ~= ARGV[i + 7] then
      local stored = {9}
      for j = 2, 7 do
        stored[j] = f[j] or ''
      end
      return stored
    end
  end
end

local cost = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local room = tonumber(ARGV[5])
local max_wait = tonumber(ARGV[6])
local extra = tonumber(ARGV[7])
local interval = tonumber(ARGV[8])
local next_lead = lead + cost
local over = next_lead - limit

if over <= 0 then
  local leased = 0
  if extra > 0 then
    leased = floor_div(limit - next_lead, interval)
    if leased > extra then
      leased = extra
    end
    next_lead = next_lead + leased * interval
  end
  write(next_lead, fresh)
  return {0, now, next_lead, leased}
end
if op == 1 then
  return {1, now, lead, over}
end
if over > room then
  return {2, now, lead, over - room}
end
if over > max_wait then
  return {3, now, lead, over}
end
write(next_lead, fresh)
return {4, now, next_lead, over, now + next_lead, tat}
