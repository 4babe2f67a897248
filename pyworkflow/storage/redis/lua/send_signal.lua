-- KEYS: run, signals (list: sequence n at index n - 1), signal ids (hash: id -> sequence).
-- ARGV: base, run_id, signal_id, now, item (the record as JSON, sequence left out).
-- Returns false (terminal or unknown run: nothing written) or {sequence, item} as
-- stored; a repeated signal_id returns the stored one, so a retried send is harmless.
local run_key, signals_key, ids_key = KEYS[1], KEYS[2], KEYS[3]
local run_id, signal_id, now = ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', run_key, 'status', 'wake_at')
local status, wake = f[1], f[2]
if not status or TERMINAL[status] then return false end
local seen = redis.call('HGET', ids_key, signal_id)
if seen then
  return {tonumber(seen), redis.call('LINDEX', signals_key, tonumber(seen) - 1)}
end
-- The list's length is the inbox counter: the script runs alone, so sequences are
-- given in the order signals become visible.
local sequence = redis.call('RPUSH', signals_key, ARGV[5])
redis.call('HSET', ids_key, signal_id, sequence)
-- Make a sleeping run due now, indexed as reindex() indexes a suspended run's wake_at.
if status == 'suspended' and (not wake or tonumber(wake) > tonumber(now)) then
  redis.call('HSET', run_key, 'wake_at', now)
  redis.call('ZADD', P .. 'wake', now, run_id)
end
return {sequence, ARGV[5]}
