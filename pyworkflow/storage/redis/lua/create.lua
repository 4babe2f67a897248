-- KEYS: run, events, then the static index sets (all, workflow, parent, tags).
-- ARGV: base, run_id, has_idem, idem_key, token, npairs, pairs..., events...
local run_key, events_key = KEYS[1], KEYS[2]
local run_id, has_idem, idem, token = ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
local npairs = tonumber(ARGV[6])
if has_idem then
  local existing = redis.call('GET', P .. 'idem:' .. idem)
  if existing then
    return {'dup', redis.call('HGETALL', P .. 'run:' .. existing)}
  end
end
if redis.call('EXISTS', run_key) == 1 then
  if redis.call('HGET', run_key, '_w') == token then return {'replayed'} end
  return {'exists'}
end
chunked('HSET', run_key, 7, 6 + npairs)
redis.call('HSET', run_key, '_w', token)
chunked('RPUSH', events_key, 7 + npairs, #ARGV)
if has_idem then redis.call('SET', P .. 'idem:' .. idem, run_id) end
local member = redis.call('HGET', run_key, '_m')
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], 0, member) end
reindex(run_id, run_key, false)
return {'ok'}
