-- KEYS: worker hash, worker id set (widx:all). ARGV: worker_id. Whether it existed.
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return existed
