-- Lua: moves an older version's list (KEYS[3], old_list) into the queue
-- (KEYS[1], queue) and the members (KEYS[2], members), keeping its time
-- to live.
local function migrate()
  if redis.call('EXISTS', KEYS[3]) == 0 then return end
  local ttl = redis.call('TTL', KEYS[3])
  for _, v in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    local bar = string.find(v, '|', 1, true)
    local name = v
    if bar then name = string.sub(v, 1, bar - 1) end
    if redis.call('HSETNX', KEYS[2], name, v) == 1 then
      redis.call('RPUSH', KEYS[1], name)
    end
  end
  redis.call('DEL', KEYS[3])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end
migrate()
