-- Shared by the scripts about one device. KEYS[1] is the device's base
-- D = P:{d:<dev>}; every key below carries its hash tag (one slot):
--   D:on    string "<instance>|<connection>|pending|up", with a TTL
--   D:al    set    the devices allowed to reach <dev>, and '*' (so an
--                  empty list exists); absent: everyone may
--   D:m     hash   seq -> queued message JSON {q?, to, from, origin?, id, kind,
--                  body, sent_at, expires_at, size}
--   D:q     zset   the seqs waiting for <dev>, scored by seq (the order)
--   D:sq    zset   the seqs waiting in <dev>'s shadow queue: messages from
--                  senders <dev> does not allow (their JSON starts with
--                  {"q": <shadow id>, ...}); never delivered, they expire
--   D:c     hash   qn, qb: messages / bytes in D:q; sn, sb: in D:sq
--   D:seq   counter the last seq given
-- The sender's, the address's and the overall counts live in other slots
-- (quota.lua); the caller keeps them.

-- The count fields and the queue key of the real (false) or shadow queue.
local function queue_of(d, shadowed)
  if shadowed then return d .. ':sq', 'sn', 'sb' end
  return d .. ':q', 'qn', 'qb'
end

-- Counts one message of `size` bytes in or out (`sign`) of a queue.
local function count(d, shadowed, size, sign)
  local _, n, b = queue_of(d, shadowed)
  if redis.call('HINCRBY', d .. ':c', n, sign) <= 0 then redis.call('HDEL', d .. ':c', n) end
  if redis.call('HINCRBY', d .. ':c', b, sign * size) <= 0 then redis.call('HDEL', d .. ':c', b) end
end

-- Messages and bytes waiting in a queue.
local function usage(d, shadowed)
  local _, n, b = queue_of(d, shadowed)
  return tonumber(redis.call('HGET', d .. ':c', n) or '0'), tonumber(redis.call('HGET', d .. ':c', b) or '0')
end

-- Whether a JSON message waits in the shadow queue.
local function is_shadowed(json)
  return string.sub(json, 1, 5) == '{"q":'
end

-- Removes one queued message; returns its JSON (nil if unknown).
local function remove_message(d, seq)
  local json = redis.call('HGET', d .. ':m', seq)
  if not json then return nil end
  local m = cjson.decode(json)
  local shadowed = is_shadowed(json)
  local q = queue_of(d, shadowed)
  redis.call('HDEL', d .. ':m', seq)
  redis.call('ZREM', q, seq)
  count(d, shadowed, math.floor(tonumber(m.size) or 0), -1)
  return json
end

-- Adds one message with a known seq (a new one, or one put back).
local function insert_message(d, seq, size, json)
  local shadowed = is_shadowed(json)
  local q = queue_of(d, shadowed)
  redis.call('HSET', d .. ':m', seq, json)
  redis.call('ZADD', q, seq, seq)
  count(d, shadowed, size, 1)
end

-- Whether a presence value says the device takes direct deliveries.
local function is_up(presence)
  return presence and string.sub(presence, -3) == '|up'
end

-- The id a stranger's requests to `dev` go to (`privacy::shadow_of`).
local function shadow(dev)
  return redis.sha1hex('peers/v1 signaling shadow' .. dev)
end

-- Whether `from` may reach the device: it has no allow list, or it names `from`.
local function allowed(d, from)
  local key = d .. ':al'
  if redis.call('EXISTS', key) == 0 then return true end
  return redis.call('SISMEMBER', key, from) == 1
end

-- A message's JSON moved to the shadow queue of `dev` (see StoredMessage).
local function shadowed_json(json, dev)
  return '{"q":"' .. shadow(dev) .. '",' .. string.sub(json, 2)
end
