-- KEYS: run. ARGV: base, run_id, owner.
local run_key = KEYS[1]
local f = redis.call('HMGET', run_key, 'status', 'lease_owner')
if f[2] and f[2] == ARGV[3] then
  redis.call('HDEL', run_key, 'lease_owner', 'lease_expires_at')
  if ACTIVE[f[1]] then redis.call('ZADD', P .. 'active', '-inf', ARGV[2]) end
end
return 0
