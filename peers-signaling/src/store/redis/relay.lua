-- The frame relay across instances. Keys (P = the key prefix, ARGV[1]):
--   P:rq:<dev>   zset   <dev>'s waiting requests: member
--                       "<peer>|<address group>|<instance>|<connection>",
--                       scored by when the request lapses (unix ms)
--   P:rid        counter the last relay id given
--   P:relays     zset   open relay ids, scored by their deadline (unix ms)
--   P:r:<id>     string "<a>|<a token>|<b>|<b token>", expires at the deadline
--   P:rd:<dev>   zset   the open relays <dev> is a party of, by deadline
--   P:ra:<addr>  zset   the open relays the devices of <addr> are parties of
--   P:rp:<id>    string "<a>|<b>|<a's address>|<b's address>", expires at the deadline
-- An address is '' when unknown (no per-address quota then).
--
-- ARGV[2] is the operation:
--   open   from, to, token, now, wait_ms, max_pending, max_relays, duration_ms,
--          from's address, per_device, per_address
--          -> {'open', id, deadline, token of the waiting request}, {'waiting'},
--             {'busy'} (too many waiting), {'full'} (too many relays),
--             {'quota', 'device' | 'address' | 'peer' | 'peer-address'}
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

-- How many open relays the quota set `key` holds (lapsed ones are dropped).
local function open_count(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end

-- The quota refusal for `dev` and `addr`, if either is at its limit.
local function over_quota(dev, addr, now, per_device, per_address, who)
  if open_count(p .. ':rd:' .. dev, now) >= per_device then return who end
  if addr ~= '' and open_count(p .. ':ra:' .. addr, now) >= per_address then return who .. '-address' end
  return nil
end

if op == 'open' then
  local from, to, token, now = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
  local wait_ms, max_pending = tonumber(ARGV[7]), tonumber(ARGV[8])
  local max_relays, duration = tonumber(ARGV[9]), tonumber(ARGV[10])
  local addr, per_device, per_address = ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
  local mine_over = over_quota(from, addr, now, per_device, per_address, 'device')
  if mine_over then
    if mine_over == 'device-address' then mine_over = 'address' end
    return {'quota', mine_over}
  end
  local theirs = p .. ':rq:' .. to
  redis.call('ZREMRANGEBYSCORE', theirs, '-inf', now)
  local waiting = find(theirs, from)
  if waiting then
    redis.call('ZREM', theirs, waiting)
    local rest = string.sub(waiting, #from + 2)
    local bar = string.find(rest, '|', 1, true)
    if not bar then return redis.error_reply('bad relay request ' .. waiting) end
    local their_addr, their_token = string.sub(rest, 1, bar - 1), string.sub(rest, bar + 1)
    local theirs_over = over_quota(to, their_addr, now, per_device, per_address, 'peer')
    if theirs_over then return {'quota', theirs_over} end
    local relays = p .. ':relays'
    redis.call('ZREMRANGEBYSCORE', relays, '-inf', now)
    if redis.call('ZCARD', relays) >= max_relays then return {'full'} end
    local id = redis.call('INCR', p .. ':rid')
    local deadline = now + duration
    redis.call('ZADD', relays, deadline, id)
    redis.call('SET', p .. ':r:' .. id, to .. '|' .. their_token .. '|' .. from .. '|' .. token, 'PX', duration)
    redis.call('SET', p .. ':rp:' .. id, to .. '|' .. from .. '|' .. their_addr .. '|' .. addr, 'PX', duration)
    for _, key in ipairs({p .. ':rd:' .. to, p .. ':rd:' .. from}) do
      redis.call('ZADD', key, deadline, id)
      redis.call('PEXPIRE', key, duration)
    end
    for _, a in ipairs({their_addr, addr}) do
      if a ~= '' then
        redis.call('ZADD', p .. ':ra:' .. a, deadline, id)
        redis.call('PEXPIRE', p .. ':ra:' .. a, duration)
      end
    end
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
  redis.call('ZADD', mine, now + wait_ms, to .. '|' .. addr .. '|' .. token)
  redis.call('PEXPIRE', mine, wait_ms)
  return {'waiting'}
end

if op == 'forget' then
  local id = ARGV[3]
  local parties = redis.call('GET', p .. ':rp:' .. id)
  if parties then
    local fields = {}
    for field in string.gmatch(parties .. '|', '([^|]*)|') do table.insert(fields, field) end
    for i = 1, 2 do
      if fields[i] and fields[i] ~= '' then redis.call('ZREM', p .. ':rd:' .. fields[i], id) end
      if fields[i + 2] and fields[i + 2] ~= '' then redis.call('ZREM', p .. ':ra:' .. fields[i + 2], id) end
    end
  end
  redis.call('DEL', p .. ':r:' .. id, p .. ':rp:' .. id)
  return redis.call('ZREM', p .. ':relays', id)
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
