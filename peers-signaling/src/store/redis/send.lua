-- A signal for ARGV[2]: deliver directly (the device is up somewhere; the
-- reply names the holder, whose instance the caller checks is alive), expire
-- at once (ttl 0), refuse (a bound is full) or queue. One atomic step, so the
-- bounds hold across instances.
-- ARGV: prefix, to, now, ttl_ms, size, per_device_messages, per_device_bytes,
--       total_messages, total_bytes, message JSON
local p, to = ARGV[1], ARGV[2]
local now, ttl, size = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local presence = redis.call('GET', p .. ':on:' .. to)
if is_up(presence) then return {'deliver', presence} end
if ttl <= 0 then return {'expired'} end
local n = tonumber(redis.call('HGET', p .. ':qn', to) or '0')
local b = tonumber(redis.call('HGET', p .. ':qb', to) or '0')
local tn = tonumber(redis.call('HGET', p .. ':tot', 'n') or '0')
local tb = tonumber(redis.call('HGET', p .. ':tot', 'b') or '0')
local usage = {tostring(n), tostring(b), tostring(tn), tostring(tb)}
if n >= tonumber(ARGV[6]) then return {'full', 'device_messages', unpack(usage)} end
if b + size > tonumber(ARGV[7]) then return {'full', 'device_bytes', unpack(usage)} end
if tn >= tonumber(ARGV[8]) then return {'full', 'total_messages', unpack(usage)} end
if tb + size > tonumber(ARGV[9]) then return {'full', 'total_bytes', unpack(usage)} end
local seq = redis.call('INCR', p .. ':seq')
insert_message(p, seq, to, now + ttl, size, ARGV[10])
return {'queued', tostring(seq)}
