-- Stockade's fleet-wide rate limiter: the core's GCRA decision, in one
-- script call, on integer microseconds (exact in Lua doubles below 2^53).
--
-- KEYS[1]  the limiter's key, a string "<tat><p>,<n>,<b>,<q>,<w>,<m>": the
--          TAT (µs since 1970, 16 digits, zero-padded: 10^16 µs is the
--          year 2286) and the canonical config: period ns, requests, burst
--          (0 = default), max_queue_size, queue_timeout ns, mode. One GET
--          and one SET ... PX per decision.
-- ARGV[1]  now in µs, or -1: read Redis TIME
-- ARGV[2]  op: 1 try_acquire, 2 reserve, 3 cancel
-- try_acquire / reserve:
--   ARGV[3] cost = n·T   ARGV[4] limit = B·T   ARGV[5] room = Q·T
--   ARGV[6] longest wait (µs, rounded down)   ARGV[7] extra permits to
--   lease on a grant   ARGV[8] T   ARGV[9] the canonical config, as
--   stored (Lua interns strings: comparing two is O(1))
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
local value = redis.call('GET', key)
local tat = nil
-- The stored config, kept on every rewrite.
local suffix = nil
if value then
  tat = tonumber(string.sub(value, 1, 16))
  suffix = string.sub(value, 17)
end
local lead = 0
if tat ~= nil and tat > now then
  lead = tat - now
end

-- Writes the TAT `now + new_lead`; the key lives until the bucket is full
-- again (an absent key is a full bucket) plus one second, by Redis's own
-- clock: a key present with its TAT in the past is a full bucket too, and
-- the second keeps the state when `now` comes from hosts' clocks a little
-- behind Redis's (TimeSource::Client). (`x / 1000` is exact enough for
-- `floor`: a quotient of integers below 2^53 by 1000 is never rounded up
-- to the next integer.)
local function write(new_lead)
  redis.call('SET', key, string.format('%016.0f', now + new_lead) .. suffix,
    'PX', math.floor(new_lead / 1000) + 1000)
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
    write(prev - now)
    return {5, now, prev - now}
  end
  -- The bucket is full again: an absent key.
  redis.call('DEL', key)
  return {5, now, 0}
end

if suffix == nil then
  suffix = ARGV[9]
elseif suffix ~= ARGV[9] then
  local stored = {9}
  for field in string.gmatch(suffix, '[^,]+') do
    stored[#stored + 1] = field
  end
  return stored
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
    -- floor((limit - next_lead) / interval), exactly (the division may
    -- round up to the next integer).
    local room_left = limit - next_lead
    leased = math.floor(room_left / interval)
    if leased * interval > room_left then
      leased = leased - 1
    elseif (leased + 1) * interval <= room_left then
      leased = leased + 1
    end
    if leased > extra then
      leased = extra
    end
    next_lead = next_lead + leased * interval
  end
  write(next_lead)
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
write(next_lead)
return {4, now, next_lead, over, now + next_lead, tat}
