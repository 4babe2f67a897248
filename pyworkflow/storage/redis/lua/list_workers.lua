-- KEYS: worker id set (widx:all). ARGV: base, limit. The first `limit` workers in id
-- order (every score is 0, so rank order is member order), as one JSON array of
-- [worker_id, last_beat, data] triples.
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. 'worker:' .. id, 'last_beat', 'data')
  if f[1] and f[2] then out[#out + 1] = {id, f[1], f[2]} end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
