-- KEYS: a contact's consent ledger, its shard's statistics of the day.
-- ARGV: the ledger entry (JSON), the counter ('' for none), the
-- statistics' TTL.
redis.call('XADD', KEYS[1], '*', 'c', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
