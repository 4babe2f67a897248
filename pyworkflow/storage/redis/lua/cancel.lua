-- KEYS: run. ARGV: base, now, has_reason, reason. The first request's time and reason
-- stick; later requests still answer 1 (the run is asked to cancel). Idempotent. The run
-- joins the cancellation-request index sets (idx:cancel, idx:cancel:<status>).
local run_key = KEYS[1]
local status = redis.call('HGET', run_key, 'status')
if not status or TERMINAL[status] then return 0 end
if redis.call('HEXISTS', run_key, 'cancel_requested_at') == 0 then
  redis.call('HSET', run_key, 'cancel_requested_at', ARGV[2])
  if ARGV[3] == '1' then redis.call('HSET', run_key, 'cancel_reason', ARGV[4]) end
end
-- Also for a repeated request: heals a run asked by a release without these sets.
index_cancel(redis.call('HGET', run_key, '_m'), status, status, true)
return 1
