-- KEYS: head (the audit head), requests (the request index), closed (the
-- closed requests). ARGV: through (the head's seq the index was rebuilt
-- up to), the number of groups, then groups (group and value pairs),
-- then closed (seq and JSON pairs of closed entries). Replaces the index
-- and marks it complete, unless the head moved; answers 1 when done.
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if cur ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[1], 'indexed_from', 1)
return 1
