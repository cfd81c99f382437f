-- KEYS: requests (the request index), closed (the closed requests).
-- ARGV: group, seq (the lapsed request's), closed_keep (how many closed
-- entries to keep). Moves the group to the closed entries when that
-- request is its newest entry and none of its entries is a confirmation;
-- answers 1 when moved.
local g = redis.call('HGET', KEYS[1], ARGV[1])
if not g then return 0 end
local last = nil
for line in string.gmatch(g, '[^\n]+') do
  local op, s = string.match(line, '^([rc]) (%d+) ')
  if op ~= 'r' then return 0 end
  last = s
end
if last ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
for line in string.gmatch(g, '[^\n]+') do
  local s, e = string.match(line, '^r (%d+) (.*)$')
  redis.call('ZADD', KEYS[2], s, e)
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
return 1
