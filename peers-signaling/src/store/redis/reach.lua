-- Where a request of ARGV[1] for the device of KEYS[1] (its base, see
-- common.lua) goes: the device itself, ARGV[2] (it has no allow list, or
-- its list names ARGV[1]), or its shadow, never online (see privacy.rs).
if allowed(KEYS[1], ARGV[1]) then return ARGV[2] end
return shadow(ARGV[2])
