-- Shared by the scripts that write runs; scripts.py puts it after its generated lines
-- defining P (the key base, ARGV[1]) and the TERMINAL and ACTIVE status sets.

-- Put the run in (or take it out of) the cancellation-request sets: every run asked to
-- cancel, and those of its status. ``old_status``: where the run was listed before.
local function index_cancel(member, status, old_status, asked)
  if old_status and old_status ~= status then
    redis.call('ZREM', P .. 'idx:cancel:' .. old_status, member)
  end
  if asked then
    redis.call('ZADD', P .. 'idx:cancel', 0, member)
    redis.call('ZADD', P .. 'idx:cancel:' .. status, 0, member)
  else
    redis.call('ZREM', P .. 'idx:cancel', member)
    redis.call('ZREM', P .. 'idx:cancel:' .. status, member)
  end
end

-- Re-derive the run's status/cancel/wake/active index entries from its hash, and list
-- its id (again: a run an older release created reaches idx:id at its next write).
local function reindex(run_id, run_key, old_status)
  redis.call('ZADD', P .. 'idx:id', 0, run_id)
  local f = redis.call(
    'HMGET', run_key, 'status', 'wake_at', 'lease_expires_at', '_m', 'cancel_requested_at')
  local status, wake, lease, member = f[1], f[2], f[3], f[4]
  if old_status ~= status then
    if old_status then redis.call('ZREM', P .. 'idx:status:' .. old_status, member) end
    redis.call('ZADD', P .. 'idx:status:' .. status, 0, member)
  end
  index_cancel(member, status, old_status, f[5])
  if status == 'suspended' and wake then
    redis.call('ZADD', P .. 'wake', wake, run_id)
  else
    redis.call('ZREM', P .. 'wake', run_id)
  end
  if ACTIVE[status] then
    redis.call('ZADD', P .. 'active', lease or '-inf', run_id)
  else
    redis.call('ZREM', P .. 'active', run_id)
  end
end

-- Run CMD key ARGV[first..last] in chunks (unpack has a stack limit). Even chunk size,
-- so HSET field/value pairs are never split.
local function chunked(cmd, key, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call(cmd, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
