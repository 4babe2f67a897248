-- KEYS: the index sets a record must be in (>= 1). ARGV: base, max, min (lex bounds),
-- offset, limit, record key kind ('run:' or 'hook:'; runs and hooks share it), and for
-- runs optionally the status the record must have and '1'/'0' (it must / must not have
-- a cancel_requested_at), both checked on the record's hash ('' = no check), and the
-- prefix its id must start with ('' = any). Returns the matching records' HGETALL
-- lists, newest first, as one JSON array (cjson): one bulk reply decoded in C rather
-- than thousands of RESP items.
--
-- A prefix is answered one of two ways. Walking the smallest set newest first reads
-- about (offset + limit) * runs / c entries when c ids match; reading the c matching ids
-- from idx:id (id order) and sorting them costs c. The script counts c (ZLEXCOUNT) and
-- takes the cheaper: the ids while c * c <= (offset + limit) * runs.
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

-- Whether member m passes every filter; the set ``skip`` is known to hold it.
local function matches(m, skip)
  -- Byte comparison: a UTF-8 byte prefix is exactly a character prefix.
  if prefix ~= '' and string.sub(m, id_from, id_to) ~= prefix then return false end
  for i = 1, #KEYS do
    if i ~= skip and not redis.call('ZSCORE', KEYS[i], m) then return false end
  end
  if not hash_checks then return true end
  local key = P .. ARGV[6] .. string.sub(m, MEMBER_TS_LEN + 1)
  local f = redis.call('HMGET', key, 'status', 'cancel_requested_at')
  if status_is ~= '' and f[1] ~= status_is then return false end
  if cancel_is ~= '' and (f[2] and '1' or '0') ~= cancel_is then return false end
  return true
end

-- Whether member (or bound) a sorts before b in byte order, as BYLEX sorts: Lua's own
-- '<' follows the server's locale (strcoll). The 19 digits compare as two exact numbers.
local function before(a, b)
  local ta, tb = string.sub(a, 1, MEMBER_TS_LEN - 1), string.sub(b, 1, MEMBER_TS_LEN - 1)
  if ta ~= tb then
    local ha, hb = tonumber(string.sub(ta, 1, 10)), tonumber(string.sub(tb, 1, 10))
    if ha ~= hb then return ha < hb end
    return tonumber(string.sub(ta, 11)) < tonumber(string.sub(tb, 11))
  end
  for i = MEMBER_TS_LEN, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Whether member m lies within the lex bounds ('+'/'-': open; '(' exclusive, '[').
local function within(m)
  if maxb ~= '+' and not before(m, string.sub(maxb, 2)) then return false end
  if minb ~= '-' and before(m, string.sub(minb, 2)) then return false end
  return true
end

-- The matching members of the ids that start with the prefix, newest first. 0xFF never
-- occurs in UTF-8, so '(' .. prefix .. 0xFF bounds exactly the ids with the prefix.
local function seek_ids()
  local ids = redis.call('ZRANGE', P .. 'idx:id', '[' .. prefix, '(' .. prefix .. '\255', 'BYLEX')
  local chosen = {}
  for _, run_id in ipairs(ids) do
    local m = redis.call('HGET', P .. ARGV[6] .. run_id, '_m')
    if m and within(m) and matches(m, 0) then chosen[#chosen + 1] = m end
  end
  table.sort(chosen, function(a, b) return before(b, a) end)
  local page = {}
  for i = offset + 1, math.min(offset + limit, #chosen) do page[#page + 1] = chosen[i] end
  return page
end

local function walk()
  local found = {}
  local batch = math.min(math.max(offset + limit, 64), 1000)
  local skipped = 0
  while #found < limit do
    local members = redis.call('ZRANGE', KEYS[best], maxb, minb, 'BYLEX', 'REV', 'LIMIT', 0, batch)
    for _, m in ipairs(members) do
      if matches(m, best) then
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
  return found
end

local found
if #KEYS == 1 and not checks then
  found = redis.call('ZRANGE', KEYS[1], maxb, minb, 'BYLEX', 'REV', 'LIMIT', offset, limit)
elseif prefix ~= '' then
  local c = redis.call('ZLEXCOUNT', P .. 'idx:id', '[' .. prefix, '(' .. prefix .. '\255')
  if c == 0 then return '[]' end
  local runs = redis.call('ZCARD', P .. 'idx:all')
  if c * c <= (offset + limit) * runs then found = seek_ids() else found = walk() end
else
  found = walk()
end
if #found == 0 then return '[]' end
local out = {}
for i, m in ipairs(found) do
  out[i] = redis.call('HGETALL', P .. ARGV[6] .. string.sub(m, MEMBER_TS_LEN + 1))
end
return cjson.encode(out)
