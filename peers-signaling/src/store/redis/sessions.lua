-- Sessions by code: the code slots and the live and finished sessions of
-- all instances, in one hash slot. KEYS[1] is their base L = P:{sl}:
--   L:slot:<n>  string the transfer id holding code slot <n>
--   L:live      zset   live transfer ids, scored by their deadline
--   L:done      zset   finished transfer ids, scored by the end of their grace time
-- Each session's record (P:{s:<id>}) and lock are in the session's own
-- slot, and the live sessions each device and address group created are
-- counted in theirs (quota.lua, P:{ss:<dev>}, P:{sa:<addr>}); the caller
-- keeps those.
--
-- ARGV[1] is the operation:
--   claim  id, deadline, max, stale_before, slot...
--          Drops live entries whose deadline passed before `stale_before`
--          (a session the expiry loop never saw: its instance died between
--          the claim and the write). If `max` sessions are live returns
--          {'full', live}. Otherwise takes the first candidate slot that is
--          free or held by a finished session (forgotten here; the caller
--          deletes its record) and counts the new session as live:
--          {'ok', slot, evicted id or ''}; {'none'} if every candidate is
--          held by a live session.
--   save   id, live ('1' or '0'), score
--          A live session is counted with its deadline (`score`), a
--          finished one moves to L:done with the end of its grace time.
--   forget id, slot
--          Forgets a finished session, and its slot if it still holds it.
local L, op = KEYS[1], ARGV[1]
local live, done = L .. ':live', L .. ':done'

if op == 'claim' then
  local id, deadline, max = ARGV[2], ARGV[3], tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', live, '-inf', '(' .. ARGV[5])
  local count = redis.call('ZCARD', live)
  if count >= max then return {'full', tostring(count)} end
  for i = 6, #ARGV do
    local slot_key = L .. ':slot:' .. ARGV[i]
    local held = redis.call('GET', slot_key)
    if not (held and redis.call('ZSCORE', live, held)) then
      local evicted = ''
      if held then
        -- A finished session (or a claim that was never written): forgotten.
        redis.call('ZREM', done, held)
        evicted = held
      end
      redis.call('SET', slot_key, id)
      redis.call('ZADD', live, deadline, id)
      return {'ok', ARGV[i], evicted}
    end
  end
  return {'none'}
elseif op == 'save' then
  local id = ARGV[2]
  if ARGV[3] == '1' then
    redis.call('ZADD', live, ARGV[4], id)
  else
    redis.call('ZREM', live, id)
    redis.call('ZADD', done, ARGV[4], id)
  end
  return 1
elseif op == 'forget' then
  local id = ARGV[2]
  local slot_key = L .. ':slot:' .. ARGV[3]
  redis.call('ZREM', done, id)
  redis.call('ZREM', live, id)
  if redis.call('GET', slot_key) == id then redis.call('DEL', slot_key) end
  return 1
end
return redis.error_reply('unknown operation ' .. tostring(op))
