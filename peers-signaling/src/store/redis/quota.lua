-- The queued messages counted against one owner: a sending device
-- (P:{qs:<dev>}), an address group (P:{qa:<addr>}) or all of them (P:{qt}).
-- KEYS[1] is the owner's base O; every key carries its hash tag:
--   O:z    zset  "<recipient>|<seq>" of each message counted, scored by its
--                expiry (unix ms); for P:{qt} this is the expiry index
--   O:sz   hash  member -> size in bytes
--   O:b    string the bytes counted
-- A message is counted here before its recipient's queue takes it and
-- uncounted after the queue gives it up; an instance that dies in between
-- leaves a count that lapses at the message's expiry (`prune`, and the
-- expiry loop for P:{qt}).
-- ARGV[1] is the operation:
--   reserve now, member, expiry, size, max_messages, max_bytes, prune ('1' or '0')
--           -> {'ok', n, b} (now counted; also when it already was: two
--              parties of one relay on one address count it once) or
--              {'full', n, b} (not counted)
--   force   member, expiry, size -> 1 (counted without a check: a put back)
--   swap    old, new, expiry -> 1 if `old` was counted (it is then counted
--           as `new`, with `expiry`), else 0
--   release member... -> how many were counted
--   due     now, lease_ms, limit -> members due at `now`, each leased (its
--           score moved to now + lease_ms, so one instance takes it)
--   unlease member, score, ... -> removes each member still at that score
local o, op = KEYS[1], ARGV[1]
local z, sz, bytes = o .. ':z', o .. ':sz', o .. ':b'

local function drop(member)
  local size = tonumber(redis.call('HGET', sz, member) or '0')
  redis.call('HDEL', sz, member)
  if redis.call('ZREM', z, member) == 0 then return 0 end
  if redis.call('DECRBY', bytes, size) <= 0 then redis.call('DEL', bytes) end
  return 1
end

if op == 'reserve' then
  local now, member, expiry, size = tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
  if ARGV[8] == '1' then
    for _, lapsed in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 256)) do drop(lapsed) end
  end
  local n, b = redis.call('ZCARD', z), tonumber(redis.call('GET', bytes) or '0')
  if redis.call('ZSCORE', z, member) then return {'ok', tostring(n - 1), tostring(b - size)} end
  if n >= tonumber(ARGV[6]) or b + size > tonumber(ARGV[7]) then
    return {'full', tostring(n), tostring(b)}
  end
  redis.call('ZADD', z, expiry, member)
  redis.call('HSET', sz, member, size)
  redis.call('INCRBY', bytes, size)
  return {'ok', tostring(n), tostring(b)}
end

if op == 'force' then
  local member, size = ARGV[2], tonumber(ARGV[4])
  drop(member)
  redis.call('ZADD', z, ARGV[3], member)
  redis.call('HSET', sz, member, size)
  redis.call('INCRBY', bytes, size)
  return 1
end

if op == 'swap' then
  local old, new = ARGV[2], ARGV[3]
  local size = redis.call('HGET', sz, old)
  if not size or redis.call('ZREM', z, old) == 0 then return 0 end
  redis.call('HDEL', sz, old)
  redis.call('ZADD', z, ARGV[4], new)
  redis.call('HSET', sz, new, size)
  return 1
end

if op == 'release' then
  local n = 0
  for i = 2, #ARGV do n = n + drop(ARGV[i]) end
  return n
end

if op == 'due' then
  local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
  local members = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, member in ipairs(members) do redis.call('ZADD', z, now + lease, member) end
  return members
end

if op == 'unlease' then
  local n = 0
  for i = 2, #ARGV, 2 do
    if tonumber(redis.call('ZSCORE', z, ARGV[i]) or '-1') == tonumber(ARGV[i + 1]) then
      n = n + drop(ARGV[i])
    end
  end
  return n
end
return redis.error_reply('unknown quota operation ' .. tostring(op))
