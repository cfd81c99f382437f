-- KEYS: the contact's keys (deleted), then its shard's inbox and outbox
-- ready sets, timers, due set and dead index (it leaves them), and the
-- shard's statistics of the day (erasures + 1). ARGV: number of contact
-- keys, contact, the statistics' TTL, the index in KEYS of the contact's
-- campaign marks, the shard's campaign counters prefix (same slot), the
-- counters' TTL: a campaign message still queued counts as skipped
-- (`suppressed`).
local n = tonumber(ARGV[1])
local marks = redis.call('HGETALL', KEYS[tonumber(ARGV[4])])
for i = 1, #marks, 2 do
  if marks[i + 1] == 'q' then
    local k = ARGV[5] .. marks[i]
    redis.call('HINCRBY', k, 'queued', -1)
    redis.call('HINCRBY', k, 'skipped:suppressed', 1)
    redis.call('EXPIRE', k, ARGV[6])
  end
end
for i = 1, n do redis.call('DEL', KEYS[i]) end
for i = n + 1, #KEYS - 1 do redis.call('ZREM', KEYS[i], ARGV[2]) end
redis.call('HINCRBY', KEYS[#KEYS], 'erasures', 1)
redis.call('EXPIRE', KEYS[#KEYS], ARGV[3])
return 1
