-- Shared by the queue scripts. Keys (P = the key prefix, ARGV[1]):
--   P:m          hash   seq -> message JSON {to, from, id, kind, body, sent_at, expires_at, size}
--   P:q:<dev>    zset   the seqs waiting for <dev>, scored by seq (the order)
--   P:dl         zset   every queued seq, scored by its expiry (unix ms)
--   P:qn, P:qb   hash   <dev> -> messages / bytes waiting for <dev>
--   P:sn, P:sb   hash   <dev> -> messages / bytes <dev> has sent that wait
--   P:an, P:ab   hash   <address group> -> messages / bytes its senders have waiting
--   P:tot        hash   n, b -> messages / bytes waiting overall
--   P:on:<dev>   string "<instance>|<connection>|pending|up", with a TTL
--   P:al:<dev>   set    the devices allowed to reach <dev>, and '*' (so an
--                       empty list exists); absent: everyone may
-- A message from a device its recipient does not allow waits in the queue of
-- the recipient's shadow; its JSON then starts with {"q": <shadow>, ...}.

-- Counts one message of `size` bytes for `key` in the hashes `n` and `b`
-- (`sign` 1 adds, -1 removes), forgetting keys that reach zero.
local function count_held(n, b, key, size, sign)
  if not key or key == '' or key == cjson.null then return end
  if redis.call('HINCRBY', n, key, sign) <= 0 then redis.call('HDEL', n, key) end
  if redis.call('HINCRBY', b, key, sign * size) <= 0 then redis.call('HDEL', b, key) end
end

-- Counts a message against (or frees it from) its sender's and its address's quotas.
local function count_sender(p, m, size, sign)
  count_held(p .. ':sn', p .. ':sb', m.from, size, sign)
  count_held(p .. ':an', p .. ':ab', m.origin, size, sign)
end

-- Removes one queued message everywhere; returns its JSON (nil if unknown).
local function remove_message(p, seq)
  local json = redis.call('HGET', p .. ':m', seq)
  redis.call('ZREM', p .. ':dl', seq)
  if not json then return nil end
  local m = cjson.decode(json)
  local size = math.floor(tonumber(m.size) or 0)
  local q = m.q or m.to
  redis.call('HDEL', p .. ':m', seq)
  redis.call('ZREM', p .. ':q:' .. q, seq)
  if redis.call('HINCRBY', p .. ':qn', q, -1) <= 0 then redis.call('HDEL', p .. ':qn', q) end
  if redis.call('HINCRBY', p .. ':qb', q, -size) <= 0 then redis.call('HDEL', p .. ':qb', q) end
  redis.call('HINCRBY', p .. ':tot', 'n', -1)
  redis.call('HINCRBY', p .. ':tot', 'b', -size)
  count_sender(p, m, size, -1)
  return json
end

-- Adds one message with a known seq (a new one, or one put back).
local function insert_message(p, seq, to, expires_at, size, json)
  redis.call('HSET', p .. ':m', seq, json)
  redis.call('ZADD', p .. ':q:' .. to, seq, seq)
  redis.call('ZADD', p .. ':dl', expires_at, seq)
  redis.call('HINCRBY', p .. ':qn', to, 1)
  redis.call('HINCRBY', p .. ':qb', to, size)
  redis.call('HINCRBY', p .. ':tot', 'n', 1)
  redis.call('HINCRBY', p .. ':tot', 'b', size)
  count_sender(p, cjson.decode(json), size, 1)
end

-- Whether a presence value says the device takes direct deliveries.
local function is_up(presence)
  return presence and string.sub(presence, -3) == '|up'
end

-- The id a stranger's requests to `dev` go to (`privacy::shadow_of`).
local function shadow(dev)
  return redis.sha1hex('peers/v1 signaling shadow' .. dev)
end

-- Whether `from` may reach `to`: `to` has no allow list, or it names `from`.
local function allowed(p, from, to)
  local key = p .. ':al:' .. to
  if redis.call('EXISTS', key) == 0 then return true end
  return redis.call('SISMEMBER', key, from) == 1
end

-- A message's JSON moved to the shadow queue `q` (see StoredMessage).
local function shadowed_json(json, q)
  return '{"q":"' .. q .. '",' .. string.sub(json, 2)
end
