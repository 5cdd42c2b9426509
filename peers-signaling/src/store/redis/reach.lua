-- Where a request of ARGV[2] for each of ARGV[3..] goes: the device itself
-- (it has no allow list, or its list names ARGV[2]) or its shadow, never
-- online (see privacy.rs). ARGV: prefix, from, devices. Returns the ids.
local p, from = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  if allowed(p, from, ARGV[i]) then
    table.insert(out, ARGV[i])
  else
    table.insert(out, shadow(ARGV[i]))
  end
end
return out
