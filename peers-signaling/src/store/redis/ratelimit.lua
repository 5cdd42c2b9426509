-- GCRA over several budgets at once: ARGV[1] is the time (unix ms), then one
-- triple per budget: its key, its interval (ms per request) and its burst.
-- The request is allowed only if every budget has room, and then counts
-- against all of them; otherwise nothing changes. Returns 0 if allowed, or
-- the 1-based index of the first budget without room.
local now = tonumber(ARGV[1])
local n = (#ARGV - 1) / 3
local next_tats = {}
for i = 1, n do
  local key, interval, burst = ARGV[3 * i - 1], tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local next_tat = tat + interval
  if next_tat - burst * interval > now then return i end
  next_tats[i] = next_tat
end
for i = 1, n do
  redis.call('SET', ARGV[3 * i - 1], tostring(next_tats[i]), 'PX', math.ceil(next_tats[i] - now) + 1)
end
return 0
