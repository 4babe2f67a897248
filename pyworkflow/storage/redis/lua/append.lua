-- KEYS: run, events. ARGV: base, run_id, expected, new_last, token, nset, pairs...,
-- ndel, fields..., events...
local run_key, events_key = KEYS[1], KEYS[2]
local run_id, expected, new_last, token = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('HGET', run_key, 'last_sequence')
if not current then return {'missing'} end
if current ~= expected then
  -- A retry of this very write that already landed (see "Retries" in connection.py).
  if current == new_last and redis.call('HGET', run_key, '_w') == token then
    return {'replayed'}
  end
  return {'conflict', current}
end
local old_status = redis.call('HGET', run_key, 'status')
local nset = tonumber(ARGV[6])
chunked('HSET', run_key, 7, 6 + nset)
local ndel_at = 7 + nset
local ndel = tonumber(ARGV[ndel_at])
if ndel > 0 then chunked('HDEL', run_key, ndel_at + 1, ndel_at + ndel) end
chunked('RPUSH', events_key, ndel_at + ndel + 1, #ARGV)
reindex(run_id, run_key, old_status)
return {'ok'}
