-- Puts back messages a registration took but could not hand over (its
-- connection went away), with their original seqs so the order holds.
-- ARGV: prefix, then seq, to, expires_at, size, JSON per message.
local p = ARGV[1]
for i = 2, #ARGV, 5 do
  insert_message(p, ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4])
end
return (#ARGV - 1) / 5
