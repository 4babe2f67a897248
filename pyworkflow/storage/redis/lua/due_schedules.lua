-- KEYS: due set. ARGV: base, now, limit. Due schedules, earliest first (ties: id order,
-- as the set orders equal scores), as one JSON array of HGETALL lists.
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
if #ids == 0 then return '[]' end
local out = {}
for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', ARGV[1] .. 'schedule:' .. id) end
return cjson.encode(out)
