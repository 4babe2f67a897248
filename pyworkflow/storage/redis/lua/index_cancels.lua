-- KEYS: the all-runs index. ARGV: base, max (lex bound), batch. One step of building the
-- cancellation-request sets for runs asked before they existed: walks up to ``batch``
-- runs newest first from ``max`` and indexes those with a request. Returns the last
-- member read, or '' when the walk reached the oldest run.
local members = redis.call('ZRANGE', KEYS[1], ARGV[2], '-', 'BYLEX', 'REV', 'LIMIT', 0, ARGV[3])
for _, member in ipairs(members) do
  local run_key = P .. 'run:' .. string.sub(member, MEMBER_TS_LEN + 1)
  local f = redis.call('HMGET', run_key, 'status', 'cancel_requested_at')
  if f[1] and f[2] then index_cancel(member, f[1], f[1], true) end
end
if #members < tonumber(ARGV[3]) then return '' end
return members[#members]
