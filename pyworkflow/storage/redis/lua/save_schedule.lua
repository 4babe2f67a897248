-- KEYS: schedule, id set (sidx:all), due set (sidx:due).
-- ARGV: base, schedule_id, expected version ('' to insert), new version, token, due score
-- ('' when not due-able: paused or no next_run_time), npairs, pairs... (every field of
-- the new record, its version and _w = token included).
-- The compare-and-set of versioned.lua (the whole hash is replaced), then the index
-- entries (a retry of a save that had landed finds them written).
local id, expected, version, token, due = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local npairs = tonumber(ARGV[7])
local saved = replace_versioned(KEYS[1], expected, version, token, 8, 7 + npairs)
if saved == REFUSED then return 0 end
if saved == LANDED then return 1 end
redis.call('ZADD', KEYS[2], 0, id)
if due == '' then
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('ZADD', KEYS[3], due, id)
end
return 1
