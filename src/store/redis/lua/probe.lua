-- KEYS: probe (the probe hash). ARGV: number, now, next. 1 when this
-- caller probes.
local p = redis.call('HGET', KEYS[1], ARGV[1])
if not p then return 0 end
if tonumber(p) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
