-- KEYS: queue, members, old_list, lease. ARGV: owner, consumed (the
-- entries dispatched). While the owner holds the lease, drops that many
-- entries from the front (and the erased names among and right after
-- them); answers how many are left.
-- (Runs after audience_migrate.lua, prepended to it.)
local n = tonumber(ARGV[2])
if n > 0 and redis.call('GET', KEYS[4]) == ARGV[1] then
  local done = 0
  while done < n do
    local name = redis.call('LPOP', KEYS[1])
    if not name then break end
    done = done + redis.call('HDEL', KEYS[2], name)
  end
  while true do
    local name = redis.call('LINDEX', KEYS[1], 0)
    if not name or redis.call('HEXISTS', KEYS[2], name) == 1 then break end
    redis.call('LPOP', KEYS[1])
  end
end
return redis.call('HLEN', KEYS[2])
