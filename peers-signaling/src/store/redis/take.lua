-- The oldest ARGV[4] messages waiting for ARGV[2], removed. When none is left
-- and the presence still belongs to this registration (ARGV[3] = its token),
-- the device becomes "up": from then on senders deliver directly, so nothing
-- sent later can overtake what was queued.
-- A message from a sender the device's allow list (set by the claim) does
-- not name is not returned: it moves to the shadow queue and expires there.
-- So an empty reply always means the queue is empty.
-- ARGV: prefix, device, token, limit. Returns seq, JSON, seq, JSON, ...
-- (nothing once another registration holds the device).
local p, dev, token = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('GET', p .. ':on:' .. dev)
-- A registration replaced in the meantime takes nothing more: the newer one drains.
if not current or string.sub(current, 1, #token + 1) ~= token .. '|' then return {} end
local qkey = p .. ':q:' .. dev
local out = {}
repeat
  local seqs = redis.call('ZRANGE', qkey, 0, tonumber(ARGV[4]) - 1)
  for _, seq in ipairs(seqs) do
    local json = remove_message(p, seq)
    redis.call('ZREM', qkey, seq)
    if json then
      local m = cjson.decode(json)
      if allowed(p, m.from, dev) then
        table.insert(out, seq)
        table.insert(out, json)
      else
        local q = shadow(dev)
        insert_message(p, seq, q, m.expires_at, m.size, shadowed_json(json, q))
      end
    end
  end
until #out > 0 or #seqs == 0
if #out == 0 and current == token .. '|pending' then
  redis.call('SET', p .. ':on:' .. dev, token .. '|up', 'KEEPTTL')
end
return out
