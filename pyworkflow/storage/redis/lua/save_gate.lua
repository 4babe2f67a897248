-- KEYS: gate hash. ARGV: base, expected version ('' to insert), new version, token,
-- pairs... (every field of the new record, its version and _w = token included).
-- The compare-and-set of versioned.lua, as save_schedule: the whole hash is replaced.
local saved = replace_versioned(KEYS[1], ARGV[2], ARGV[3], ARGV[4], 5, #ARGV)
if saved == REFUSED then return 0 end
return 1
