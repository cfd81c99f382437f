-- KEYS: ready, timers (a shard's ready set and timers). ARGV: limit, now.
-- A random sample of the ready contacts, and the due ones (earliest
-- first).
return {redis.call('ZRANDMEMBER', KEYS[1], ARGV[1]),
  redis.call('ZRANGE', KEYS[2], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[1])}
