-- The frame relay across instances. Keys (P = the key prefix, ARGV[1]):
--   P:rq:<dev>   zset   <dev>'s waiting requests: member "<peer>|<instance>|<connection>",
--                       scored by when the request lapses (unix ms)
--   P:rid        counter the last relay id given
--   P:relays     zset   open relay ids, scored by their deadline (unix ms)
--   P:r:<id>     string "<a>|<a token>|<b>|<b token>", expires at the deadline
--
-- ARGV[2] is the operation:
--   open   from, to, token, now, wait_ms, max_pending, max_relays, duration_ms
--          -> {'open', id, deadline, token of the waiting request}, {'waiting'},
--             {'busy'} (too many waiting), {'full'} (too many relays)
--   forget id           -> 1 if the relay was open
--   drop   dev, token   -> how many waiting requests of that connection went
local p, op = ARGV[1], ARGV[2]

-- The member of P:rq:<dev> asking for <peer>, if any (at most max_pending members).
local function find(key, peer)
  local prefix = peer .. '|'
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(member, 1, #prefix) == prefix then return member end
  end
  return nil
end

if op == 'open' then
  local from, to, token, now = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
  local wait_ms, max_pending = tonumber(ARGV[7]), tonumber(ARGV[8])
  local max_relays, duration = tonumber(ARGV[9]), tonumber(ARGV[10])
  local theirs = p .. ':rq:' .. to
  redis.call('ZREMRANGEBYSCORE', theirs, '-inf', now)
  local waiting = find(theirs, from)
  if waiting then
    redis.call('ZREM', theirs, waiting)
    local relays = p .. ':relays'
    redis.call('ZREMRANGEBYSCORE', relays, '-inf', now)
    if redis.call('ZCARD', relays) >= max_relays then return {'full'} end
    local id = redis.call('INCR', p .. ':rid')
    local deadline = now + duration
    local their_token = string.sub(waiting, #from + 2)
    redis.call('ZADD', relays, deadline, id)
    redis.call('SET', p .. ':r:' .. id, to .. '|' .. their_token .. '|' .. from .. '|' .. token, 'PX', duration)
    return {'open', tostring(id), tostring(deadline), their_token}
  end
  local mine = p .. ':rq:' .. from
  redis.call('ZREMRANGEBYSCORE', mine, '-inf', now)
  local previous = find(mine, to)
  if previous then
    redis.call('ZREM', mine, previous)
  elseif redis.call('ZCARD', mine) >= max_pending then
    return {'busy'}
  end
  redis.call('ZADD', mine, now + wait_ms, to .. '|' .. token)
  redis.call('PEXPIRE', mine, wait_ms)
  return {'waiting'}
end

if op == 'forget' then
  redis.call('DEL', p .. ':r:' .. ARGV[3])
  return redis.call('ZREM', p .. ':relays', ARGV[3])
end

if op == 'drop' then
  local key, suffix, n = p .. ':rq:' .. ARGV[3], '|' .. ARGV[4], 0
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(member, -#suffix) == suffix then
      redis.call('ZREM', key, member)
      n = n + 1
    end
  end
  return n
end
return redis.error_reply('unknown relay operation')
