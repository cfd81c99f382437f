-- KEYS: lease, stream, state (the session for the inbox, the head's
-- retry state for the outbox), data_key, and for the inbox profile.
-- ARGV: token, lease_ms, limit. Nil when the lease is held elsewhere,
-- else the pending entries, the session or head state, the data key and
-- the profile.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local profile = false
if KEYS[5] then profile = redis.call('GET', KEYS[5]) or false end
return {redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[3]), redis.call('GET', KEYS[3]) or false, redis.call('GET', KEYS[4]) or false, profile}
