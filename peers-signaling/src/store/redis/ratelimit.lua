-- One rate budget (GCRA), KEYS[1] its state. ARGV: op, now (unix ms),
-- interval (ms per request), burst.
-- take: 1 if the budget has room (and now counts the request), else 0
-- (nothing changes). give: gives back one request `take` counted (the
-- caller's other budget had no room).
local key, op = KEYS[1], ARGV[1]
local now, interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', key) or '0')
if op == 'give' then
  if tat > now then
    tat = tat - interval
    if tat > now then
      redis.call('SET', key, tostring(tat), 'PX', math.ceil(tat - now) + 1)
    else
      redis.call('DEL', key)
    end
  end
  return 1
end
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - burst * interval > now then return 0 end
redis.call('SET', key, tostring(next_tat), 'PX', math.ceil(next_tat - now) + 1)
return 1
