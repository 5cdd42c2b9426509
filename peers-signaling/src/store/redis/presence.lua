-- Presence of one device: claim (a registration), release (its connection
-- closed), refresh (the holding instance's heartbeat) or allow (a new allow
-- list from the registered connection).
-- ARGV: prefix, op, ttl_ms, then device, token pairs (one pair for claim,
-- release and allow). claim and allow then take '0' (no list: everyone may
-- reach the device) or '1' followed by the allowed ids. claim returns the
-- previous value (or nil); release, refresh and allow return how many keys
-- they touched. Release, refresh and allow only act on a key that still
-- holds this token (refresh also on a missing one), so a newer registration
-- is never undone. The allow list P:al:<dev> lives and dies with the presence.

-- Replaces the allow list of `dev` with ARGV[7..] (ARGV[6] == '1') or none.
local function set_allow(p, dev, ttl)
  local key = p .. ':al:' .. dev
  redis.call('DEL', key)
  if ARGV[6] ~= '1' then return end
  redis.call('SADD', key, '*')
  for i = 7, #ARGV, 500 do
    redis.call('SADD', key, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  redis.call('PEXPIRE', key, ttl)
end

local p, op, ttl = ARGV[1], ARGV[2], ARGV[3]
if op == 'claim' then
  local key = p .. ':on:' .. ARGV[4]
  local previous = redis.call('GET', key)
  redis.call('SET', key, ARGV[5] .. '|pending', 'PX', ttl)
  set_allow(p, ARGV[4], ttl)
  return previous
end
if op == 'allow' then
  local current = redis.call('GET', p .. ':on:' .. ARGV[4])
  local mine = ARGV[5] .. '|'
  if not current or string.sub(current, 1, #mine) ~= mine then return 0 end
  set_allow(p, ARGV[4], ttl)
  return 1
end
local n = 0
for i = 4, #ARGV, 2 do
  local key = p .. ':on:' .. ARGV[i]
  local allow = p .. ':al:' .. ARGV[i]
  local mine = ARGV[i + 1] .. '|'
  local current = redis.call('GET', key)
  if current and string.sub(current, 1, #mine) == mine then
    if op == 'release' then
      redis.call('DEL', key, allow)
    else
      redis.call('PEXPIRE', key, ttl)
      redis.call('PEXPIRE', allow, ttl)
    end
    n = n + 1
  elseif not current and op == 'refresh' then
    -- Lost while this instance still holds the connection (Redis restarted
    -- without its data, or an outage longer than the TTL): put it back.
    redis.call('SET', key, mine .. 'up', 'PX', ttl)
    n = n + 1
  end
end
return n
