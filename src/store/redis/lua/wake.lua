-- KEYS: due (a due set). No ARGV. Makes every member due now.
local m = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, x in ipairs(m) do redis.call('ZADD', KEYS[1], 'XX', 0, x) end
return #m
