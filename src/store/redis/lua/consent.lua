-- KEYS: consent (a contact's ledger), stats (its shard's statistics of
-- the day). ARGV: entry (the ledger entry, JSON), counter ('' for none),
-- stats_ttl.
redis.call('XADD', KEYS[1], '*', 'c', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
