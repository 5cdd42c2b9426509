-- Presence of one device (KEYS[1] = its base D, see common.lua): claim (a
-- registration), release (its connection closed), refresh (the holding
-- instance's heartbeat) or allow (a new allow list from the registered
-- connection).
-- ARGV: op, ttl_ms, token; claim and allow then take '0' (no list: everyone
-- may reach the device) or '1' followed by the allowed ids; release may then
-- take now (unix ms) and the device's request budget as its holder left it
-- (its GCRA state, see ratelimit.lua), kept in D:rl whoever holds the
-- presence (the larger of the two, so a budget is never refilled by it).
-- claim returns {the previous value or '', D:rl or ''}: the budget the last
-- holder left; release, refresh and allow return 1 if they acted. Release, refresh and allow only act on a key that still holds
-- this token (refresh also on a missing one), so a newer registration is
-- never undone. The allow list D:al lives and dies with the presence D:on.
local d, op, ttl, token = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local key, allow = d .. ':on', d .. ':al'

-- Replaces the allow list with ARGV[5..] (ARGV[4] == '1') or none.
local function set_allow()
  redis.call('DEL', allow)
  if ARGV[4] ~= '1' then return end
  redis.call('SADD', allow, '*')
  for i = 5, #ARGV, 500 do
    redis.call('SADD', allow, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  redis.call('PEXPIRE', allow, ttl)
end

local current = redis.call('GET', key)
if op == 'claim' then
  redis.call('SET', key, token .. '|pending', 'PX', ttl)
  set_allow()
  return {current or '', redis.call('GET', d .. ':rl') or ''}
end
if op == 'release' and ARGV[5] then
  local now, tat = tonumber(ARGV[4]), tonumber(ARGV[5])
  local kept = tonumber(redis.call('GET', d .. ':rl') or '0')
  if kept > tat then tat = kept end
  if tat > now then redis.call('SET', d .. ':rl', tostring(tat), 'PX', math.ceil(tat - now) + 1) end
end
local mine = token .. '|'
local held = current and string.sub(current, 1, #mine) == mine
if op == 'allow' then
  if not held then return 0 end
  set_allow()
  return 1
end
if held then
  if op == 'release' then
    redis.call('DEL', key, allow)
  else
    redis.call('PEXPIRE', key, ttl)
    redis.call('PEXPIRE', allow, ttl)
  end
  return 1
end
if not current and op == 'refresh' then
  -- Lost while this instance still holds the connection (Redis restarted
  -- without its data, or an outage longer than the TTL): not put back, as
  -- its allow list and what senders queued meanwhile would not be; the
  -- instance closes the connection so the device registers again.
  return 2
end
return 0
