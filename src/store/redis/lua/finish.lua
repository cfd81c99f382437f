-- KEYS: [1] lease, [2] outbox, [3] head, [4] deliveries, [5] dead,
-- [6] dead_index, [7] consent, [8] outbox_ready, [9] due, [10] stats (the
-- shard's statistics of the day), [11] data_key (the contact's; its
-- previous wrapping, `KEYS[11]:was`, is accepted too), [12]
-- campaign_prefix (the shard's campaign counters prefix), [13] campaigns
-- (the contact's campaign marks), [14] last_campaign (its last campaign
-- mark).
-- ARGV: [1] token, [2] entry (the job's id in the outbox), [3]-[6] record
-- (job, wamid hash, rank, json), [7] dead_letter (or empty), [8] now,
-- [9] contact, [10] consent (the entry, or empty), [11] release ('1' or
-- ''), [12] also (the number of other entry ids), then those ids; then
-- counts: their number, stats_ttl and (name, amount) per counter; then
-- campaign_ttl, and last data_key: the claim's wrapped data key, or
-- empty. When the data key is no longer the stored one (the contact was
-- erased), nothing is written and 0 is answered. Returns 1 if the lease
-- is still held, else 0; the job is finished either way.
local dk = ARGV[#ARGV]
if dk ~= '' then
  local cur = redis.call('GET', KEYS[11])
  if cur ~= dk and (not cur or redis.call('GET', KEYS[11] .. ':was') ~= dk) then return 0 end
end
if ARGV[10] ~= '' then redis.call('XADD', KEYS[7], '*', 'c', ARGV[10]) end
redis.call('XDEL', KEYS[2], ARGV[2])
local also = tonumber(ARGV[12])
for i = 1, also do redis.call('XDEL', KEYS[2], ARGV[12 + i]) end
count(KEYS[10], 15 + also, tonumber(ARGV[13 + also]), ARGV[14 + also])
redis.call('DEL', KEYS[3])
merge(KEYS[4], ARGV[3], ARGV[4], ARGV[5], ARGV[6], {KEYS[12], KEYS[13], KEYS[14], ARGV[#ARGV - 1]})
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[5], '*', 'e', ARGV[7])
  redis.call('EXPIRE', KEYS[5], 2592000)
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[9])
  redis.call('EXPIRE', KEYS[6], 3024000)
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[11] == '1' then
  redis.call('ZREM', KEYS[9], ARGV[9])
  if redis.call('XLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[8], ARGV[9]) end
  redis.call('DEL', KEYS[1])
end
return 1
