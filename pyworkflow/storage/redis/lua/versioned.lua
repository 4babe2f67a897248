-- Shared by save_schedule and save_gate; scripts.py puts it before each of them.

local REFUSED, REPLACED, LANDED = 0, 1, 2

-- The compare-and-set of a record hash on its version field: replace the hash at key
-- with the pairs ARGV[first..last] (every field of the new record, its version and
-- _w = token included) if its version is still `expected` ('' to insert: there must be
-- no hash). REPLACED: it did. REFUSED: it did not (another writer got there first).
-- LANDED: the hash still carries this save's token and version: a retry of a save that
-- had landed, which answers success again instead of a false "someone else won".
local function replace_versioned(key, expected, version, token, first, last)
  local f = redis.call('HMGET', key, 'version', '_w')
  if f[2] == token and f[1] == version then return LANDED end
  if expected == '' then
    if f[1] then return REFUSED end
  elseif f[1] ~= expected then
    return REFUSED
  end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(ARGV, first, last))
  return REPLACED
end
