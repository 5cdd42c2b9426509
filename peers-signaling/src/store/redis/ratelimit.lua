-- GCRA: one request of ARGV[1]'s budget at time ARGV[2] (unix ms), at
-- ARGV[3] ms per request with a burst of ARGV[4]. Returns 1 if allowed.
local key, now, interval, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - burst * interval > now then return 0 end
redis.call('SET', key, tostring(next_tat), 'PX', math.ceil(next_tat - now) + 1)
return 1
