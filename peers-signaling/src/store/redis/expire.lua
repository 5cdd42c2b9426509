-- Removes up to ARGV[3] messages whose expiry is at or before ARGV[2]. Only
-- one instance gets each one, so each sender hears "expired" once.
-- ARGV: prefix, now, limit. Returns seq, JSON, seq, JSON, ...
local p = ARGV[1]
local seqs = redis.call('ZRANGEBYSCORE', p .. ':dl', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, seq in ipairs(seqs) do
  local json = remove_message(p, seq)
  if json then
    table.insert(out, seq)
    table.insert(out, json)
  end
end
return out
