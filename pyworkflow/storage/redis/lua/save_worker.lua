-- KEYS: worker hash, worker id set (widx:all). ARGV: worker_id, last_beat (epoch µs), data.
-- Replaces the whole hash (fields another version may have added included) and makes
-- sure the id is listed. Idempotent: a retried beat writes the same values again.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'last_beat', ARGV[2], 'data', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
