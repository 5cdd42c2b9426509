-- Presence of one device: claim (a registration), release (its connection
-- closed) or refresh (the holding instance's heartbeat).
-- ARGV: prefix, op, ttl_ms, then device, token pairs (one pair for claim and
-- release). claim returns the previous value (or nil); release and refresh
-- return how many keys they touched. Release and refresh only act on a key
-- that still holds this token (refresh also on a missing one), so a newer
-- registration is never undone.
local p, op, ttl = ARGV[1], ARGV[2], ARGV[3]
if op == 'claim' then
  local key = p .. ':on:' .. ARGV[4]
  local previous = redis.call('GET', key)
  redis.call('SET', key, ARGV[5] .. '|pending', 'PX', ttl)
  return previous
end
local n = 0
for i = 4, #ARGV, 2 do
  local key = p .. ':on:' .. ARGV[i]
  local mine = ARGV[i + 1] .. '|'
  local current = redis.call('GET', key)
  if current and string.sub(current, 1, #mine) == mine then
    if op == 'release' then redis.call('DEL', key) else redis.call('PEXPIRE', key, ttl) end
    n = n + 1
  elseif not current and op == 'refresh' then
    -- Lost while this instance still holds the connection (Redis restarted
    -- without its data, or an outage longer than the TTL): put it back.
    redis.call('SET', key, mine .. 'up', 'PX', ttl)
    n = n + 1
  end
end
return n
