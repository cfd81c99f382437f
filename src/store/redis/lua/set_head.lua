-- KEYS: lease, head. ARGV: token, head. Writes the head's retry state if
-- the lease is held; answers 1 when it did.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', 2592000)
return 1
