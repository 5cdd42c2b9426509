-- Outcome notices for senders. Keys: P:n:<dev> list of notice JSON, P:nt the
-- total kept, P:nb zset <dev> scored by when its newest notice runs out.
-- ARGV: prefix, op, device, now, then for 'push': JSON, per_device, total, ttl_ms.
-- push: {'online', holder} when the sender is up (the caller emits), else stores the
--   notice ({'stored', dropped}; the device's oldest give way when its box or
--   the total is full) or, when the total is full and this box is empty,
--   {'refused', 0}.
-- take: the device's notices, oldest first, removed.
-- sweep: removes boxes whose newest notice ran out; returns how many notices.
local p, op, dev, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if op == 'push' then
  local presence = redis.call('GET', p .. ':on:' .. dev)
  if is_up(presence) then return {'online', presence} end
  local box = p .. ':n:' .. dev
  local per_device, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
  local dropped = 0
  while redis.call('LLEN', box) >= per_device do
    redis.call('LPOP', box)
    dropped = dropped + 1
  end
  local total = tonumber(redis.call('GET', p .. ':nt') or '0') - dropped
  if total >= limit then
    if redis.call('LLEN', box) == 0 then
      redis.call('SET', p .. ':nt', total)
      return {'refused', tostring(dropped)}
    end
    redis.call('LPOP', box)
    dropped = dropped + 1
    total = total - 1
  end
  redis.call('RPUSH', box, ARGV[5])
  redis.call('SET', p .. ':nt', total + 1)
  redis.call('ZADD', p .. ':nb', now + tonumber(ARGV[8]), dev)
  return {'stored', tostring(dropped)}
elseif op == 'take' then
  local box = p .. ':n:' .. dev
  local items = redis.call('LRANGE', box, 0, -1)
  if #items > 0 then
    redis.call('DEL', box)
    redis.call('DECRBY', p .. ':nt', #items)
  end
  redis.call('ZREM', p .. ':nb', dev)
  return items
else
  local devs = redis.call('ZRANGEBYSCORE', p .. ':nb', '-inf', now, 'LIMIT', 0, 256)
  local gone = 0
  for _, d in ipairs(devs) do
    local box = p .. ':n:' .. d
    gone = gone + redis.call('LLEN', box)
    redis.call('DEL', box)
    redis.call('ZREM', p .. ':nb', d)
  end
  if gone > 0 then redis.call('DECRBY', p .. ':nt', gone) end
  return gone
end
