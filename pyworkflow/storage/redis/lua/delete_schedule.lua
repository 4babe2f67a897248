-- KEYS: schedule, id set, due set. ARGV: schedule_id. Whether the schedule existed.
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return existed
