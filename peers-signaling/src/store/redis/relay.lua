-- The frame relay across instances, in the hash slots of its parts:
--   P:{d:<dev>}:rq       zset  <dev>'s waiting requests "<peer>|<token>", by
--                              when each lapses (at most max_pending_per_device)
--   P:{rp:<a>|<b>}:w     zset  the waiting requests between devices a < b:
--                              "<dev>|<address group>|<token>", by lapse
--   P:{relays}:z         zset  open relay ids by deadline (the relay cap)
--   P:{relays}:id        counter the last relay id given
--   P:{relays}:p:<id>    string "<a>|<b>|<a's address>|<b's address>", expires at the deadline
-- The open relays of each device and address group are counted in their
-- own slots (quota.lua on P:{d:<dev>}:rd and P:{ra:<addr>}). <token> is
-- "<instance>|<connection>"; an address is '' when unknown.
--
-- KEYS[1] is the base of the slot; ARGV[1] the operation:
--  pair slot:
--   meet  from, to, now          -> {'met', their address, their token} (their
--                                   waiting request, consumed) or {'none'}
--   wait  from, to, now, lapse, address, token
--                                -> as meet, or (none waiting) leaves this
--                                   request waiting: {'waiting'}
--   withdraw from, token         -> how many of that connection's requests went
--  device slot:
--   pend  to, token, now, lapse, max_pending -> 'ok' or 'busy'
--   unpend peer                  -> 1
--   drop  token                  -> the peers that connection was waiting for (removed)
--  relays slot:
--   open  now, max_relays, duration, parties -> {'open', id, deadline} or {'full'}
--   forget id                    -> the parties of an open relay, or ''
local k, op = KEYS[1], ARGV[1]

-- The first member of zset `key` starting with `prefix`.
local function find(key, prefix)
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(member, 1, #prefix) == prefix then return member end
  end
  return nil
end

if op == 'meet' or op == 'wait' then
  local from, to, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
  local w = k .. ':w'
  redis.call('ZREMRANGEBYSCORE', w, '-inf', now)
  local theirs = find(w, to .. '|')
  if theirs then
    redis.call('ZREM', w, theirs)
    local rest = string.sub(theirs, #to + 2)
    local bar = string.find(rest, '|', 1, true)
    if not bar then return redis.error_reply('bad relay request ' .. theirs) end
    return {'met', string.sub(rest, 1, bar - 1), string.sub(rest, bar + 1)}
  end
  if op == 'meet' then return {'none'} end
  local mine = find(w, from .. '|')
  if mine then redis.call('ZREM', w, mine) end
  redis.call('ZADD', w, ARGV[5], from .. '|' .. ARGV[6] .. '|' .. ARGV[7])
  redis.call('PEXPIREAT', w, ARGV[5])
  return {'waiting'}
end

if op == 'withdraw' then
  local w, prefix, suffix, n = k .. ':w', ARGV[2] .. '|', '|' .. ARGV[3], 0
  for _, member in ipairs(redis.call('ZRANGE', w, 0, -1)) do
    if string.sub(member, 1, #prefix) == prefix and string.sub(member, -#suffix) == suffix then
      redis.call('ZREM', w, member)
      n = n + 1
    end
  end
  return n
end

if op == 'pend' then
  local rq, to, now = k .. ':rq', ARGV[2], tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', rq, '-inf', now)
  local previous = find(rq, to .. '|')
  if previous then
    redis.call('ZREM', rq, previous)
  elseif redis.call('ZCARD', rq) >= tonumber(ARGV[6]) then
    return 'busy'
  end
  redis.call('ZADD', rq, ARGV[5], to .. '|' .. ARGV[3])
  redis.call('PEXPIREAT', rq, ARGV[5])
  return 'ok'
end

if op == 'unpend' then
  local rq = k .. ':rq'
  local member = find(rq, ARGV[2] .. '|')
  if member then redis.call('ZREM', rq, member) end
  return 1
end

if op == 'drop' then
  local rq, suffix, peers = k .. ':rq', '|' .. ARGV[2], {}
  for _, member in ipairs(redis.call('ZRANGE', rq, 0, -1)) do
    if string.sub(member, -#suffix) == suffix then
      redis.call('ZREM', rq, member)
      table.insert(peers, string.sub(member, 1, #member - #suffix))
    end
  end
  return peers
end

if op == 'open' then
  local now, max_relays, duration = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local z = k .. ':z'
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  if redis.call('ZCARD', z) >= max_relays then return {'full'} end
  local id = redis.call('INCR', k .. ':id')
  local deadline = now + duration
  redis.call('ZADD', z, deadline, id)
  redis.call('SET', k .. ':p:' .. id, ARGV[5], 'PX', duration)
  return {'open', tostring(id), tostring(deadline)}
end

if op == 'forget' then
  local id = ARGV[2]
  local parties = redis.call('GET', k .. ':p:' .. id) or ''
  redis.call('DEL', k .. ':p:' .. id)
  redis.call('ZREM', k .. ':z', id)
  return parties
end
return redis.error_reply('unknown relay operation ' .. tostring(op))
