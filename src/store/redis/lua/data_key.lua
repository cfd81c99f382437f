-- KEYS: a contact's data key. ARGV: a wrapped key, its time to live (s).
-- Stores the key unless one is there; answers the key in force.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
