-- KEYS: hook, the run's hook-id map, index sets (all, run, status).
-- ARGV: base, token_hash, hook_id, npairs, pairs...
-- One hook per (run, hook_id): a second save returns the stored one (replay, or a retry
-- of this very save). A hook stored under the same token_hash for another (run, hook_id)
-- is replaced, index entries included (the memory backend's behaviour).
local P, token_hash, hook_id = ARGV[1], ARGV[2], ARGV[3]
local hook_key, ids_key = KEYS[1], KEYS[2]
local existing = redis.call('HGET', ids_key, hook_id)
if existing then
  local stored = redis.call('HGETALL', P .. 'hook:' .. existing)
  if #stored > 0 then return {'dup', stored} end
end
local old = redis.call('HMGET', hook_key, 'run_id', 'hook_id', 'status', '_m')
if old[4] then
  redis.call('ZREM', P .. 'hidx:all', old[4])
  redis.call('ZREM', P .. 'hidx:run:' .. old[1], old[4])
  redis.call('ZREM', P .. 'hidx:status:' .. old[3], old[4])
  redis.call('HDEL', P .. 'hookids:' .. old[1], old[2])
  redis.call('DEL', hook_key)
end
local npairs = tonumber(ARGV[4])
redis.call('HSET', hook_key, unpack(ARGV, 5, 4 + npairs))
redis.call('HSET', ids_key, hook_id, token_hash)
local member = redis.call('HGET', hook_key, '_m')
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], 0, member) end
return {'ok'}
