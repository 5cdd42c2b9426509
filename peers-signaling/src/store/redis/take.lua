-- The oldest ARGV[4] messages waiting for ARGV[2], removed. When none is left
-- and the presence still belongs to this registration (ARGV[3] = its token),
-- the device becomes "up": from then on senders deliver directly, so nothing
-- sent later can overtake what was queued.
-- ARGV: prefix, device, token, limit. Returns seq, JSON, seq, JSON, ...
-- (nothing once another registration holds the device).
local p, dev, token = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('GET', p .. ':on:' .. dev)
-- A registration replaced in the meantime takes nothing more: the newer one drains.
if not current or string.sub(current, 1, #token + 1) ~= token .. '|' then return {} end
local qkey = p .. ':q:' .. dev
local seqs = redis.call('ZRANGE', qkey, 0, tonumber(ARGV[4]) - 1)
local out = {}
for _, seq in ipairs(seqs) do
  local json = remove_message(p, seq)
  redis.call('ZREM', qkey, seq)
  if json then
    table.insert(out, seq)
    table.insert(out, json)
  end
end
if #seqs == 0 and current == token .. '|pending' then
  redis.call('SET', p .. ':on:' .. dev, token .. '|up', 'KEEPTTL')
end
return out
