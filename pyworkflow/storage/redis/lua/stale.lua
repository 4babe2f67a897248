-- KEYS: active set. ARGV: base, now, limit. Runs whose lease ended before now (or none).
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
if #ids == 0 then return '[]' end
local out = {}
for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', ARGV[1] .. 'run:' .. id) end
return cjson.encode(out)
