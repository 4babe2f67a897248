-- KEYS: worker id set (widx:all). ARGV: base, limit, start (a ZRANGEBYLEX bound: '-'
-- for the first page, '(' .. last id for the next). The first `limit` workers in id
-- order from `start` (every score is 0, so lexicographic order is member order), as one
-- JSON array of [worker_id, last_beat, data] triples.
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[3] or '-', '+', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. 'worker:' .. id, 'last_beat', 'data')
  if f[1] and f[2] then out[#out + 1] = {id, f[1], f[2]} end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
