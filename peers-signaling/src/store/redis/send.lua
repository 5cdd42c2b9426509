-- A signal for ARGV[2]: deliver directly (the device is up somewhere; the
-- reply names the holder, whose instance the caller checks is alive), expire
-- at once (ttl 0), refuse (a bound is full) or queue. One atomic step, so the
-- bounds hold across instances.
-- ARGV: prefix, to, now, ttl_ms, size, per_device_messages, per_device_bytes,
--       total_messages, total_bytes, message JSON, from, origin ('' if
--       unknown), per_sender_messages, per_sender_bytes,
--       per_address_messages, per_address_bytes
-- The bounds are checked in the order of `QueueLimits::full_bound`.
-- A sender `to` does not allow is answered as for a device that does not
-- exist: its message goes to the queue of `to`'s shadow, never online.
local p, to = ARGV[1], ARGV[2]
local now, ttl, size = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local json = ARGV[10]
if not allowed(p, ARGV[11], to) then
  to = shadow(to)
  json = shadowed_json(json, to)
end
local presence = redis.call('GET', p .. ':on:' .. to)
if is_up(presence) then return {'deliver', presence} end
if ttl <= 0 then return {'expired'} end
local n = tonumber(redis.call('HGET', p .. ':qn', to) or '0')
local b = tonumber(redis.call('HGET', p .. ':qb', to) or '0')
local tn = tonumber(redis.call('HGET', p .. ':tot', 'n') or '0')
local tb = tonumber(redis.call('HGET', p .. ':tot', 'b') or '0')
local from, origin = ARGV[11], ARGV[12]
local sn = tonumber(redis.call('HGET', p .. ':sn', from) or '0')
local sb = tonumber(redis.call('HGET', p .. ':sb', from) or '0')
local an, ab = 0, 0
if origin ~= '' then
  an = tonumber(redis.call('HGET', p .. ':an', origin) or '0')
  ab = tonumber(redis.call('HGET', p .. ':ab', origin) or '0')
end
local usage = {tostring(n), tostring(b), tostring(tn), tostring(tb),
               tostring(sn), tostring(sb), tostring(an), tostring(ab)}
if n >= tonumber(ARGV[6]) then return {'full', 'device_messages', unpack(usage)} end
if b + size > tonumber(ARGV[7]) then return {'full', 'device_bytes', unpack(usage)} end
if sn >= tonumber(ARGV[13]) then return {'full', 'sender_messages', unpack(usage)} end
if sb + size > tonumber(ARGV[14]) then return {'full', 'sender_bytes', unpack(usage)} end
if an >= tonumber(ARGV[15]) then return {'full', 'address_messages', unpack(usage)} end
if ab + size > tonumber(ARGV[16]) then return {'full', 'address_bytes', unpack(usage)} end
if tn >= tonumber(ARGV[8]) then return {'full', 'total_messages', unpack(usage)} end
if tb + size > tonumber(ARGV[9]) then return {'full', 'total_bytes', unpack(usage)} end
local seq = redis.call('INCR', p .. ':seq')
insert_message(p, seq, to, now + ttl, size, json)
return {'queued', tostring(seq)}
