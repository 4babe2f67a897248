-- KEYS: wake set. ARGV: base. The exact wake_at of the earliest sleeper (the score is a
-- double; the hash holds the exact integer).
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if #first == 0 then return false end
return redis.call('HGET', ARGV[1] .. 'run:' .. first[1], 'wake_at')
