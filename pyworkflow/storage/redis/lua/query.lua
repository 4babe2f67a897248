-- KEYS: the index sets a record must be in (>= 1). ARGV: base, max, min (lex bounds),
-- offset, limit, record key kind ('run:' or 'hook:'; runs and hooks share it), and for
-- runs optionally the status the record must have and '1'/'0' (it must / must not have
-- a cancel_requested_at), both checked on the record's hash ('' = no check), and the
-- prefix its id must start with, checked on the member itself ('' = any). Returns
-- the matching records' HGETALL lists, newest first, as one JSON array (cjson): one bulk
-- reply decoded in C rather than thousands of RESP items.
local P = ARGV[1]
local best, best_n = 1, -1
for i = 1, #KEYS do
  local n = redis.call('ZCARD', KEYS[i])
  if n == 0 then return '[]' end
  if best_n < 0 or n < best_n then best, best_n = i, n end
end
local maxb, minb = ARGV[2], ARGV[3]
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local status_is, cancel_is = ARGV[7] or '', ARGV[8] or ''
local prefix = ARGV[9] or ''
local id_from, id_to = MEMBER_TS_LEN + 1, MEMBER_TS_LEN + #prefix
local hash_checks = status_is ~= '' or cancel_is ~= ''
local checks = hash_checks or prefix ~= ''

local function matches(m)
  -- Byte comparison: a UTF-8 byte prefix is exactly a character prefix.
  if prefix ~= '' and string.sub(m, id_from, id_to) ~= prefix then return false end
  for i = 1, #KEYS do
    if i ~= best and not redis.call('ZSCORE', KEYS[i], m) then return false end
  end
  if not hash_checks then return true end
  local key = P .. ARGV[6] .. string.sub(m, MEMBER_TS_LEN + 1)
  local f = redis.call('HMGET', key, 'status', 'cancel_requested_at')
  if status_is ~= '' and f[1] ~= status_is then return false end
  if cancel_is ~= '' and (f[2] and '1' or '0') ~= cancel_is then return false end
  return true
end

local found = {}
if #KEYS == 1 and not checks then
  found = redis.call('ZRANGE', KEYS[1], maxb, minb, 'BYLEX', 'REV', 'LIMIT', offset, limit)
else
  local batch = math.min(math.max(offset + limit, 64), 1000)
  local skipped = 0
  while #found < limit do
    local members = redis.call('ZRANGE', KEYS[best], maxb, minb, 'BYLEX', 'REV', 'LIMIT', 0, batch)
    for _, m in ipairs(members) do
      if matches(m) then
        if skipped < offset then
          skipped = skipped + 1
        else
          found[#found + 1] = m
          if #found == limit then break end
        end
      end
    end
    if #members < batch then break end
    maxb = '(' .. members[#members]
  end
end
if #found == 0 then return '[]' end
local out = {}
for i, m in ipairs(found) do
  out[i] = redis.call('HGETALL', P .. ARGV[6] .. string.sub(m, MEMBER_TS_LEN + 1))
end
return cjson.encode(out)
