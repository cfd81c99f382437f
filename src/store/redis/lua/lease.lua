-- KEYS: lease. ARGV: owner, lease_ms. Takes it when free, renews it when
-- held by the owner; answers 1 when the owner holds it.
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
