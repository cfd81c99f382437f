-- KEYS: the contact's own keys, deleted (inbox, outbox, session,
-- profile, history, consent, deliveries, window, dead, head, inbox_lease,
-- outbox_lease, data_key, data_key_was, last_campaign, campaigns), then
-- its shard's inbox_ready, outbox_ready, timers, due, dead_index and
-- history_index (it leaves them), and stats (the shard's statistics of
-- the day: the counter in ARGV[7] + 1). ARGV: [1] own_keys (how many of KEYS are the
-- contact's own), [2] contact, [3] stats_ttl, [4] campaigns_at (where
-- `campaigns`, the contact's campaign marks, is in KEYS),
-- [5] campaign_prefix (the shard's campaign counters prefix, same slot),
-- [6] campaign_ttl (the counters' TTL): a campaign message still queued
-- counts as skipped (`suppressed`), [7] counter (the erasures counter of
-- the contact's business).
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
redis.call('HINCRBY', KEYS[#KEYS], ARGV[7], 1)
redis.call('EXPIRE', KEYS[#KEYS], ARGV[3])
return 1
