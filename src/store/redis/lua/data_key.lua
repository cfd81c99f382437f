-- KEYS: data_key (a contact's). ARGV: wrapped (a wrapped key), ttl_s (its
-- time to live). Stores the key unless one is there; answers the key in
-- force.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
