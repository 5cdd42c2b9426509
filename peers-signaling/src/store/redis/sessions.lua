-- Sessions by code, each under keys of its own. Keys (P = the key prefix, ARGV[1]):
--   P:s:<id>      string the session <id> (JSON, as in the SQLite store)
--   P:slot:<n>    string the transfer id holding code slot <n>
--   P:slive       zset   live transfer ids, scored by their deadline
--   P:sdev:<dev>  zset   the live sessions <dev> created, by deadline
--   P:sip:<addr>  zset   the live sessions of address group <addr>, by deadline
--   P:sdone       zset   finished transfer ids, scored by the end of their grace time
-- An address is '' when unknown (no per-address count then).
--
-- ARGV[2] is the operation:
--   claim  id, device, address, deadline, per_device, per_address, max,
--          stale_before, slot...
--          Drops counts whose deadline passed before `stale_before` (a
--          session the expiry loop never saw: its instance died between the
--          claim and the write). Counts the live sessions of the device, its address and overall; if
--          one is at its limit returns {'full', device, address, total}.
--          Otherwise takes the first candidate slot that is free or held by a
--          finished session (which is forgotten) and counts the new session as
--          live: {'ok', slot, evicted id or ''}; {'none'} if every candidate
--          is held by a live session.
--   save   id, device, address, live ('1' or '0'), score, json
--          Writes a session; a live one is counted with its deadline
--          (`score`), a finished one is moved to P:sdone with the end of its
--          grace time (`score`).
--   forget id, slot
--          Forgets a finished session, and its slot if it still holds it.
local P, op = ARGV[1], ARGV[2]

local function uncount(id, device, address)
  redis.call('ZREM', P .. ':slive', id)
  redis.call('ZREM', P .. ':sdev:' .. device, id)
  if address ~= '' then redis.call('ZREM', P .. ':sip:' .. address, id) end
end

if op == 'claim' then
  local id, device, address, deadline = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local per_device, per_address, max = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  local stale = '(' .. ARGV[10]
  redis.call('ZREMRANGEBYSCORE', P .. ':slive', '-inf', stale)
  redis.call('ZREMRANGEBYSCORE', P .. ':sdev:' .. device, '-inf', stale)
  if address ~= '' then redis.call('ZREMRANGEBYSCORE', P .. ':sip:' .. address, '-inf', stale) end
  local mine = redis.call('ZCARD', P .. ':sdev:' .. device)
  local ours = 0
  if address ~= '' then ours = redis.call('ZCARD', P .. ':sip:' .. address) end
  local live = redis.call('ZCARD', P .. ':slive')
  if mine >= per_device or ours >= per_address or live >= max then
    return {'full', tostring(mine), tostring(ours), tostring(live)}
  end
  for i = 11, #ARGV do
    local slot_key = P .. ':slot:' .. ARGV[i]
    local evicted = ''
    local held = redis.call('GET', slot_key)
    if held and redis.call('ZSCORE', P .. ':slive', held) then
      held = nil
      slot_key = nil
    elseif held then
      -- A finished session (or a claim that was never written): forgotten.
      redis.call('DEL', P .. ':s:' .. held)
      redis.call('ZREM', P .. ':sdone', held)
      evicted = held
    end
    if slot_key then
      redis.call('SET', slot_key, id)
      redis.call('ZADD', P .. ':slive', deadline, id)
      redis.call('ZADD', P .. ':sdev:' .. device, deadline, id)
      if address ~= '' then redis.call('ZADD', P .. ':sip:' .. address, deadline, id) end
      return {'ok', ARGV[i], evicted}
    end
  end
  return {'none'}
elseif op == 'save' then
  local id, device, address, live, score = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  redis.call('SET', P .. ':s:' .. id, ARGV[8])
  if live == '1' then
    redis.call('ZADD', P .. ':slive', score, id)
    redis.call('ZADD', P .. ':sdev:' .. device, score, id)
    if address ~= '' then redis.call('ZADD', P .. ':sip:' .. address, score, id) end
  else
    uncount(id, device, address)
    redis.call('ZADD', P .. ':sdone', score, id)
  end
  return 1
elseif op == 'forget' then
  local id = ARGV[3]
  local slot_key = P .. ':slot:' .. ARGV[4]
  redis.call('DEL', P .. ':s:' .. id)
  redis.call('ZREM', P .. ':sdone', id)
  redis.call('ZREM', P .. ':slive', id)
  if redis.call('GET', slot_key) == id then redis.call('DEL', slot_key) end
  return 1
end
return redis.error_reply('unknown operation ' .. tostring(op))
