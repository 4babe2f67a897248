-- KEYS: gate hash. ARGV: base, expected version ('' to insert), new version, token,
-- pairs... (every field of the new record, its version and _w = token included).
-- Compare-and-set on the version field, as save_schedule: the whole hash is replaced. A
-- retry of a save that had landed (the hash still carries its token and version)
-- answers 1 again instead of a false "someone else won".
local key = KEYS[1]
local expected, version, token = ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', key, 'version', '_w')
if f[2] == token and f[1] == version then return 1 end
if expected == '' then
  if f[1] then return 0 end
elseif f[1] ~= expected then
  return 0
end
redis.call('DEL', key)
redis.call('HSET', key, unpack(ARGV, 5))
return 1
