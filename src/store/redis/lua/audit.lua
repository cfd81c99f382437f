-- KEYS: head (the audit head), log, requests (the request index), closed
-- (the closed requests). ARGV: [1] seq, [2] prev, [3] hash, [4] entry
-- (JSON), [5] op (the entry's request op: `r`, `c`, `x` or empty; see
-- `store::audit_index`), [6] group (its group), [7] closed_keep (how many
-- closed entries to keep). Appends only after the current head; answers
-- 1, or 0 when it moved. A group is its entries, one a line: op, seq,
-- JSON. The head's `indexed_from` is the first entry the index saw.
local cur = redis.call('HMGET', KEYS[1], 'seq', 'hash')
local seq = tonumber(cur[1] or '0')
local h = cur[2] or ''
if seq + 1 ~= tonumber(ARGV[1]) or (seq > 0 and h ~= ARGV[2]) then return 0 end
redis.call('XADD', KEYS[2], ARGV[1] .. '-1', 'a', ARGV[4])
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'hash', ARGV[3])
redis.call('HSETNX', KEYS[1], 'indexed_from', ARGV[1])
local op = ARGV[5]
if op == '' then return 1 end
local g = redis.call('HGET', KEYS[3], ARGV[6])
if op == 'x' then
  if g then
    redis.call('HDEL', KEYS[3], ARGV[6])
    for line in string.gmatch(g, '[^\n]+') do
      local s, e = string.match(line, '^[rc] (%d+) (.*)$')
      if s then redis.call('ZADD', KEYS[4], s, e) end
    end
    redis.call('ZADD', KEYS[4], ARGV[1], ARGV[4])
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[7]) + 1))
  end
elseif op == 'r' or g then
  local line = op .. ' ' .. ARGV[1] .. ' ' .. ARGV[4]
  if g then line = g .. '\n' .. line end
  redis.call('HSET', KEYS[3], ARGV[6], line)
end
return 1
