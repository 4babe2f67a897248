-- KEYS: run keys. ARGV: base, owner, expires, run ids (same order as KEYS)...
local owner, expires = ARGV[2], ARGV[3]
for i, run_key in ipairs(KEYS) do
  local f = redis.call('HMGET', run_key, 'status', 'lease_owner')
  if f[2] == owner then
    redis.call('HSET', run_key, 'lease_expires_at', expires)
    if ACTIVE[f[1]] then redis.call('ZADD', P .. 'active', expires, ARGV[3 + i]) end
  end
end
return 0
