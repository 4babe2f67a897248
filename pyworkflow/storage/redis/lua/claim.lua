-- KEYS: wake set. ARGV: base, now, owner, expires, limit. Due runs (all suspended, by
-- construction of the wake set) in wake order; leased to ``owner`` unless another
-- owner's lease is live. Returns the ids it leased.
local now_arg, owner, expires = ARGV[2], ARGV[3], ARGV[4]
local now, limit = tonumber(now_arg), tonumber(ARGV[5])
local batch = math.max(2 * limit, 100)
local claimed, offset = {}, 0
while #claimed < limit do
  local ids = redis.call('ZRANGE', KEYS[1], '-inf', now_arg, 'BYSCORE', 'LIMIT', offset, batch)
  for _, id in ipairs(ids) do
    local run_key = P .. 'run:' .. id
    local f = redis.call('HMGET', run_key, 'lease_owner', 'lease_expires_at')
    if not f[1] or f[1] == owner or not f[2] or tonumber(f[2]) < now then
      redis.call('HSET', run_key, 'lease_owner', owner, 'lease_expires_at', expires)
      claimed[#claimed + 1] = id
      if #claimed == limit then break end
    end
  end
  if #ids < batch then break end
  offset = offset + #ids
end
return claimed
