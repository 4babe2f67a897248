-- KEYS: schedule, id set (sidx:all), due set (sidx:due).
-- ARGV: base, schedule_id, expected version ('' to insert), new version, token, due score
-- ('' when not due-able: paused or no next_run_time), npairs, pairs... (every field of
-- the new record, its version and _w = token included).
-- Compare-and-set on the version field; the whole hash is replaced. A retry of a save
-- that had landed (the hash still carries its token and version) answers 1 again
-- instead of a false "someone else won".
local key = KEYS[1]
local id, expected, version, token, due = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local f = redis.call('HMGET', key, 'version', '_w')
if f[2] == token and f[1] == version then return 1 end
if expected == '' then
  if f[1] then return 0 end
elseif f[1] ~= expected then
  return 0
end
redis.call('DEL', key)
local npairs = tonumber(ARGV[7])
redis.call('HSET', key, unpack(ARGV, 8, 7 + npairs))
redis.call('ZADD', KEYS[2], 0, id)
if due == '' then
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('ZADD', KEYS[3], due, id)
end
return 1
