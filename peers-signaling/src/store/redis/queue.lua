-- One device's queue (KEYS[1] = its base D, see common.lua). ARGV[1] is
-- the operation:
--   peek  dev, from, ttl_ms, size, per_device_messages, per_device_bytes
--         Where a signal from `from` goes. A sender the device's allow list
--         does not name is answered as for a device that does not exist: its
--         message goes to the shadow queue, never delivered.
--         -> {'deliver', presence} (up somewhere), {'expired'} (ttl 0),
--            {'full', n, b} (the queue's bounds), or
--            {'room', seq, shadowed ('1' or '0'), n, b}: a seq for `put`.
--   put   dev, seq, shadowed, size, per_device_messages, per_device_bytes, JSON
--         Queues the message under `seq`, checking again (the device may
--         have come up, or others filled the queue, since `peek`).
--         -> {'queued'}, {'deliver', presence} or {'full', n, b}
--   take  dev, token, limit
--         The oldest `limit` messages waiting, removed (seq, JSON, ...).
--         When none is left and the presence still belongs to this
--         registration (`token`), the device becomes "up": from then on
--         senders deliver directly, so nothing sent later can overtake what
--         was queued. A message from a sender the allow list (set by the
--         claim) does not name moves to the shadow queue instead, so an
--         empty reply means the queue is empty; nothing is taken once
--         another registration holds the device.
--   expire now, seq...
--         Removes those of `seq` due at `now` -> {seq, JSON, ...}
--   requeue seq, size, JSON, ...
--         Puts back messages `take` returned but could not hand over, with
--         their seqs, so the order holds.
local d, op = KEYS[1], ARGV[1]

if op == 'peek' then
  local dev, from, ttl, size = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local shadowed = not allowed(d, from)
  if not shadowed then
    local presence = redis.call('GET', d .. ':on')
    if is_up(presence) then return {'deliver', presence} end
  end
  if ttl <= 0 then return {'expired'} end
  local n, b = usage(d, shadowed)
  if n >= tonumber(ARGV[6]) or b + size > tonumber(ARGV[7]) then
    return {'full', tostring(n), tostring(b)}
  end
  local seq = redis.call('INCR', d .. ':seq')
  return {'room', tostring(seq), shadowed and '1' or '0', tostring(n), tostring(b)}
end

if op == 'put' then
  local dev, seq, shadowed, size = ARGV[2], ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
  local json = ARGV[8]
  if shadowed then
    json = shadowed_json(json, dev)
  else
    local presence = redis.call('GET', d .. ':on')
    if is_up(presence) then return {'deliver', presence} end
  end
  local n, b = usage(d, shadowed)
  if n >= tonumber(ARGV[6]) or b + size > tonumber(ARGV[7]) then
    return {'full', tostring(n), tostring(b)}
  end
  insert_message(d, seq, size, json)
  return {'queued'}
end

if op == 'take' then
  local dev, token = ARGV[2], ARGV[3]
  local current = redis.call('GET', d .. ':on')
  -- A registration replaced in the meantime takes nothing more: the newer one drains.
  if not current or string.sub(current, 1, #token + 1) ~= token .. '|' then return {} end
  local out = {}
  repeat
    local seqs = redis.call('ZRANGE', d .. ':q', 0, tonumber(ARGV[4]) - 1)
    for _, seq in ipairs(seqs) do
      local json = remove_message(d, seq)
      redis.call('ZREM', d .. ':q', seq)
      if json then
        local m = cjson.decode(json)
        if allowed(d, m.from) then
          table.insert(out, seq)
          table.insert(out, json)
        else
          insert_message(d, seq, math.floor(tonumber(m.size) or 0), shadowed_json(json, dev))
        end
      end
    end
  until #out > 0 or #seqs == 0
  if #out == 0 and current == token .. '|pending' then
    redis.call('SET', d .. ':on', token .. '|up', 'KEEPTTL')
  end
  return out
end

if op == 'expire' then
  local now = tonumber(ARGV[2])
  local out = {}
  for i = 3, #ARGV do
    local json = redis.call('HGET', d .. ':m', ARGV[i])
    if json and tonumber(cjson.decode(json).expires_at) <= now then
      remove_message(d, ARGV[i])
      table.insert(out, ARGV[i])
      table.insert(out, json)
    end
  end
  return out
end

if op == 'requeue' then
  for i = 2, #ARGV, 3 do
    insert_message(d, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2])
  end
  return (#ARGV - 1) / 3
end
return redis.error_reply('unknown queue operation ' .. tostring(op))
