-- KEYS: the all-runs index. ARGV: base, max (lex bound), batch. One step of indexing the
-- runs stored before an index existed (by an older release): walks up to ``batch`` runs
-- newest first from ``max``, adds each id to the id set (idx:id) and each run asked to
-- cancel to the cancellation-request sets. Returns the last member read, or '' when the
-- walk reached the oldest run.
local members = redis.call('ZRANGE', KEYS[1], ARGV[2], '-', 'BYLEX', 'REV', 'LIMIT', 0, ARGV[3])
for _, member in ipairs(members) do
  local run_id = string.sub(member, MEMBER_TS_LEN + 1)
  local f = redis.call('HMGET', P .. 'run:' .. run_id, 'status', 'cancel_requested_at')
  if f[1] then redis.call('ZADD', P .. 'idx:id', 0, run_id) end
  if f[1] and f[2] then index_cancel(member, f[1], f[1], true) end
end
if #members < tonumber(ARGV[3]) then return '' end
return members[#members]
