-- KEYS: lease, head, due (the due set), outbox_ready. ARGV: [1] token,
-- [2]-[3] head ('1' and the head's retry state, or '0' and empty: left
-- as it is), [4] until_ms (Unix ms), [5] contact. Returns 1, or 0 when
-- the lease was lost (nothing written). The contact leaves the ready set
-- for the due set, so no one tries it before `until_ms`.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'EX', 2592000) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[3], 3024000)
redis.call('ZREM', KEYS[4], ARGV[5])
redis.call('DEL', KEYS[1])
return 1
