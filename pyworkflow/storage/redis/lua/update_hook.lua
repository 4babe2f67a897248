-- KEYS: hook. ARGV: base, expected, status, token, has_payload, payload, has_received,
-- received. Compare-and-set on the status; the write token makes a retried winning
-- update answer 1 again instead of a false "someone else won".
local P, expected, status, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local hook_key = KEYS[1]
local f = redis.call('HMGET', hook_key, 'status', '_m', '_w')
if not f[1] then return 0 end
if f[1] ~= expected then
  if f[1] == status and f[3] == token then return 1 end
  return 0
end
redis.call('HSET', hook_key, 'status', status, '_w', token)
if ARGV[5] == '1' then redis.call('HSET', hook_key, 'payload', ARGV[6]) end
if ARGV[7] == '1' then redis.call('HSET', hook_key, 'received_at', ARGV[8]) end
if status ~= expected then
  redis.call('ZREM', P .. 'hidx:status:' .. expected, f[2])
  redis.call('ZADD', P .. 'hidx:status:' .. status, 0, f[2])
end
return 1
