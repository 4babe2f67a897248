-- KEYS: idempotency key. ARGV: base.
local run_id = redis.call('GET', KEYS[1])
if not run_id then return {} end
return redis.call('HGETALL', ARGV[1] .. 'run:' .. run_id)
