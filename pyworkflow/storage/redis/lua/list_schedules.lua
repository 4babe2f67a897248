-- KEYS: id set. ARGV: base, has_workflow, workflow_name, has_status, status, limit.
-- Walks the ids in order (a lex range per batch), keeping the schedules that pass the
-- filters; their HGETALL lists as one JSON array.
local P, has_wf, wf = ARGV[1], ARGV[2] == '1', ARGV[3]
local has_status, status, limit = ARGV[4] == '1', ARGV[5], tonumber(ARGV[6])
local batch = math.min(math.max(limit, 64), 1000)
local out, from = {}, '-'
while #out < limit do
  local ids = redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    local key = P .. 'schedule:' .. id
    local ok = true
    if has_wf or has_status then
      local f = redis.call('HMGET', key, 'workflow_name', 'status')
      ok = (not has_wf or f[1] == wf) and (not has_status or f[2] == status)
    end
    if ok then
      out[#out + 1] = redis.call('HGETALL', key)
      if #out == limit then break end
    end
  end
  if #ids < batch then break end
  from = '(' .. ids[#ids]
end
if #out == 0 then return '[]' end
return cjson.encode(out)
