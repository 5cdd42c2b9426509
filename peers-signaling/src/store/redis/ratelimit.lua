-- One rate budget (GCRA), KEYS[1] its state. ARGV: op, now (unix ms),
-- interval (ms per request), burst, then for lease and give a count n.
-- take: 1 if the budget has room (and now counts the request), else 0
-- (nothing changes). lease: counts up to n requests at once, as many as
-- the budget has room for, and returns how many (0: none, nothing
-- changes); the caller spends them itself (an instance's lease of an
-- address's budget). give: gives back n requests (default 1) that take or
-- lease counted and nobody made (the caller's other budget had no room, or
-- a lease ran out unspent); the budget never holds more than its burst.
local key, op = KEYS[1], ARGV[1]
local now, interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', key) or '0')
if op == 'give' then
  if tat > now then
    tat = tat - interval * tonumber(ARGV[5] or '1')
    if tat > now then
      redis.call('SET', key, tostring(tat), 'PX', math.ceil(tat - now) + 1)
    else
      redis.call('DEL', key)
    end
  end
  return 1
end
if tat < now then tat = now end
local n = 1
if op == 'lease' then
  -- The requests the budget has room for: take's test, n times.
  local room = math.floor((now + burst * interval - tat) / interval + 1e-9)
  n = math.min(tonumber(ARGV[5]), room)
  if n <= 0 then return 0 end
elseif tat + interval - burst * interval > now then
  return 0
end
local next_tat = tat + n * interval
redis.call('SET', key, tostring(next_tat), 'PX', math.ceil(next_tat - now) + 1)
return n
