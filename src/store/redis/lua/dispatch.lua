-- KEYS: [1] campaigns (the contact's campaign marks), [2] data_key,
-- [3] outbox, [4] outbox_ready (its shard's outbox ready set),
-- [5] counters (the campaign's counters in the shard).
-- ARGV: [1] campaign (its id), [2] job (sealed, or empty: skipped),
-- [3] reason (why skipped), [4] data_key (wrapped), [5] fresh_key ('1'
-- when that key is new), [6] key_ttl (the key's and the marks' TTL),
-- [7] now_ms, [8] contact, [9] campaign_ttl (the counters' TTL). Answers
-- 1 (done), 0 (the contact already had its turn), -1 (the data key is not
-- the stored one: nothing written).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if ARGV[2] ~= '' then
  local cur = redis.call('GET', KEYS[2])
  if cur then
    -- A campaign does not lengthen the key's life: it is counted from
    -- the contact's last message (privacy.retention_days).
    if cur ~= ARGV[4] then return -1 end
  elseif ARGV[5] == '1' then
    redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[6])
  else
    return -1
  end
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
  redis.call('EXPIRE', KEYS[3], 2592000)
  redis.call('ZADD', KEYS[4], 'NX', ARGV[7], ARGV[8])
  redis.call('EXPIRE', KEYS[4], 3024000)
  redis.call('HSET', KEYS[1], ARGV[1], 'q')
  redis.call('HINCRBY', KEYS[5], 'queued', 1)
else
  redis.call('HSET', KEYS[1], ARGV[1], 's')
  redis.call('HINCRBY', KEYS[5], 'skipped:' .. ARGV[3], 1)
end
redis.call('HINCRBY', KEYS[5], 'dispatched', 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[5], ARGV[9])
return 1
