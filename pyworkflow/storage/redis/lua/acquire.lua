-- KEYS: run. ARGV: base, run_id, owner, expires, now, has_steal, steal_from.
local run_key = KEYS[1]
local run_id, owner, expires, now = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local f = redis.call('HMGET', run_key, 'status', 'lease_owner', 'lease_expires_at')
local status, holder, until_ = f[1], f[2], f[3]
if not status or TERMINAL[status] then return 0 end
if holder and holder ~= owner and not (ARGV[6] == '1' and holder == ARGV[7])
    and until_ and tonumber(until_) >= now then
  return 0
end
redis.call('HSET', run_key, 'lease_owner', owner, 'lease_expires_at', expires)
if ACTIVE[status] then redis.call('ZADD', P .. 'active', expires, run_id) end
return 1
