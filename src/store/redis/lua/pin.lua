-- KEYS: pin. ARGV: value. Stores it unless one is there; answers the
-- value in force.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
