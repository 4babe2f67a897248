-- KEYS: none (every key is derived from the base; one prefix lives in one slot).
-- ARGV: base, run ids... Deletes each run that is terminal now, with everything stored
-- for it: its index entries (all, id, status, workflow, tags, parent, cancellation,
-- wake, active), its idempotency key (if it still names this run), its hooks and their index
-- entries, its hook-id map, its signal inbox and signal-id map, its event log and its
-- hash. Returns how many it deleted.
-- The run's own children index (idx:parent:<run_id>) stays: its children stay too.
local deleted = 0
for i = 2, #ARGV do
  local run_id = ARGV[i]
  local run_key = P .. 'run:' .. run_id
  local f = redis.call(
    'HMGET', run_key, 'status', '_m', 'workflow_name', 'tags', 'parent_run_id',
    'idempotency_key')
  local status, m = f[1], f[2]
  if status and TERMINAL[status] and m then
    redis.call('ZREM', P .. 'idx:all', m)
    redis.call('ZREM', P .. 'idx:id', run_id)
    redis.call('ZREM', P .. 'idx:status:' .. status, m)
    if f[3] then redis.call('ZREM', P .. 'idx:wf:' .. f[3], m) end
    if f[4] then
      for _, tag in ipairs(cjson.decode(f[4])) do
        redis.call('ZREM', P .. 'idx:tag:' .. tag, m)
      end
    end
    if f[5] then redis.call('ZREM', P .. 'idx:parent:' .. f[5], m) end
    redis.call('ZREM', P .. 'idx:cancel', m)
    redis.call('ZREM', P .. 'idx:cancel:' .. status, m)
    redis.call('ZREM', P .. 'wake', run_id)
    redis.call('ZREM', P .. 'active', run_id)
    if f[6] and redis.call('GET', P .. 'idem:' .. f[6]) == run_id then
      redis.call('DEL', P .. 'idem:' .. f[6])
    end
    local ids_key = P .. 'hookids:' .. run_id
    for _, token_hash in ipairs(redis.call('HVALS', ids_key)) do
      local hook_key = P .. 'hook:' .. token_hash
      local h = redis.call('HMGET', hook_key, 'run_id', 'status', '_m')
      if h[1] == run_id then
        redis.call('ZREM', P .. 'hidx:all', h[3])
        redis.call('ZREM', P .. 'hidx:status:' .. h[2], h[3])
        redis.call('DEL', hook_key)
      end
    end
    -- UNLINK: a long event log is freed in the background, off the script's time.
    redis.call(
      'UNLINK', P .. 'hidx:run:' .. run_id, ids_key, P .. 'signals:' .. run_id,
      P .. 'sigids:' .. run_id, P .. 'events:' .. run_id, run_key)
    deleted = deleted + 1
  end
end
return deleted
