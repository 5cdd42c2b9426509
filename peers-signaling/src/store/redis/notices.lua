-- Outcome notices for senders, in two slots.
-- The sender's box, KEYS[1] = its device base D (see common.lua):
--   D:n     list   notice JSON (with its expiry), oldest first
-- The index, KEYS[1] = P:{nt}:
--   P:{nt}:c  hash   <dev> -> notices in its box
--   P:{nt}:t  string notices kept overall
--   P:{nt}:z  zset   <dev> scored by when its newest notice runs out
-- The index counts by changes (+1, -dropped, -taken), so steps of several
-- instances add up.
-- ARGV[1] is the operation:
--   push (box)   JSON, per_device, total (kept overall, as `total` read it), limit
--       -> {'online', presence} when the sender is up (the caller emits);
--          else the box's oldest give way to keep `per_device`, and one more
--          when the total is still at `limit`: {'stored', dropped}, or
--          {'refused', dropped} when the box is then empty (not kept)
--   total (index) -> notices kept overall
--   kept (index) dev, change, expiry -> counts a box's change (and when its
--       newest runs out, if `expiry` is not '')
--   take (box)   -> the box's notices, oldest first, removed
--   due  (index) now, lease_ms, limit -> boxes whose newest ran out, leased
--   sweep (box)  now -> removes the box if its newest ran out; how many
local k, op = KEYS[1], ARGV[1]
if op == 'push' then
  local presence = redis.call('GET', k .. ':on')
  if is_up(presence) then return {'online', presence} end
  local box, per_device = k .. ':n', tonumber(ARGV[3])
  local total, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
  local dropped = 0
  while redis.call('LLEN', box) >= per_device do
    redis.call('LPOP', box)
    dropped = dropped + 1
  end
  if total - dropped >= limit then
    if redis.call('LLEN', box) == 0 then return {'refused', tostring(dropped)} end
    redis.call('LPOP', box)
    dropped = dropped + 1
  end
  redis.call('RPUSH', box, ARGV[2])
  return {'stored', tostring(dropped)}
elseif op == 'total' then
  return tonumber(redis.call('GET', k .. ':t') or '0')
elseif op == 'kept' then
  local dev, change = ARGV[2], tonumber(ARGV[3])
  redis.call('INCRBY', k .. ':t', change)
  if redis.call('HINCRBY', k .. ':c', dev, change) <= 0 then
    redis.call('HDEL', k .. ':c', dev)
    redis.call('ZREM', k .. ':z', dev)
  elseif ARGV[4] ~= '' then
    redis.call('ZADD', k .. ':z', ARGV[4], dev)
  end
  if tonumber(redis.call('GET', k .. ':t')) <= 0 then redis.call('DEL', k .. ':t') end
  return 1
elseif op == 'take' then
  local box = k .. ':n'
  local items = redis.call('LRANGE', box, 0, -1)
  redis.call('DEL', box)
  return items
elseif op == 'due' then
  local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
  local devs = redis.call('ZRANGEBYSCORE', k .. ':z', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, dev in ipairs(devs) do redis.call('ZADD', k .. ':z', now + lease, dev) end
  return devs
elseif op == 'sweep' then
  local box = k .. ':n'
  local newest = redis.call('LINDEX', box, -1)
  if not newest or tonumber(cjson.decode(newest).expires_at) > tonumber(ARGV[2]) then return 0 end
  local n = redis.call('LLEN', box)
  redis.call('DEL', box)
  return n
end
return redis.error_reply('unknown notices operation ' .. tostring(op))
