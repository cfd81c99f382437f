-- KEYS: queue, members, old_list. ARGV: limit. Up to `limit` entries
-- from the front, skipping erased names.
-- (Runs after audience_migrate.lua, prepended to it.)
local limit = tonumber(ARGV[1])
local page = math.min(math.max(limit, 16), 1000)
local out = {}
local from = 0
while #out < limit do
  local names = redis.call('LRANGE', KEYS[1], from, from + page - 1)
  if #names == 0 then break end
  local entries = redis.call('HMGET', KEYS[2], unpack(names))
  for i = 1, #names do
    if entries[i] then
      out[#out + 1] = entries[i]
      if #out == limit then break end
    end
  end
  from = from + #names
end
return out
