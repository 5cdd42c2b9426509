-- A lock: a holder token with a TTL. KEYS[1] the lock; ARGV: op ('take' or
-- 'give'), token, ttl_ms. take returns 1 if this token now holds it; give
-- releases it only if it does.
local key, op, token = KEYS[1], ARGV[1], ARGV[2]
if op == 'take' then
  if redis.call('SET', key, token, 'NX', 'PX', ARGV[3]) then return 1 end
  return 0
end
if redis.call('GET', key) == token then
  redis.call('DEL', key)
  return 1
end
return 0
