-- KEYS: [1] lease, [2] inbox, [3] session, [4] outbox, [5] window,
-- [6] deliveries, [7] consent, [8] inbox_ready, [9] outbox_ready,
-- [10] timers, [11] profile, [12] history, [13] history_index (the
-- shard's history index), [14] stats (the shard's statistics of the
-- day), [15] data_key (the contact's; its previous wrapping,
-- `KEYS[15]:was`, is accepted too), [16] campaign_prefix (the shard's
-- campaign counters prefix), [17] campaigns (the contact's campaign
-- marks), [18] last_campaign (its last campaign mark; see `tally`: an
-- opt-out counts for the campaign whose message came within 24 hours).
-- ARGV: [1] token, [2] session_ttl, [3]-[4] session ('1' and the
-- session, or '0' and empty: deleted), [5] acked (their number), [6] jobs
-- (their number), [7]-[8] window (the business number, or empty, and the
-- customer's last message time), [9] deliveries (their number),
-- [10] consent (their number), [11] contact, [12] now_ms, [13] timer
-- (Unix s, or empty to cancel), [14] profile (or empty: unchanged),
-- [15] profile_ttl (s), [16] history (their number); then the acked ids,
-- the jobs, four values per delivery (job, wamid, rank, json), the
-- consent entries (json) and the history entries; then counts: their
-- number, stats_ttl and (name, amount) per counter; then campaign_ttl,
-- and last data_key: the wrapped data key the claim was sealed under, or
-- empty. A data key that is no longer the stored one (the contact was
-- erased meanwhile) writes nothing, as a lost lease.
-- Answers the entries left in the inbox,
-- or -1 when the lease was lost (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local dk = ARGV[#ARGV]
if dk ~= '' then
  local cur = redis.call('GET', KEYS[15])
  if cur ~= dk and (not cur or redis.call('GET', KEYS[15] .. ':was') ~= dk) then return -1 end
  redis.call('EXPIRE', KEYS[15], tonumber(ARGV[15]) + 172800)
end
local n, j, d, c = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[9]), tonumber(ARGV[10])
local member = ARGV[11]
local cmp = {KEYS[16], KEYS[17], KEYS[18], ARGV[#ARGV - 1]}
if ARGV[14] ~= '' then redis.call('SET', KEYS[11], ARGV[14], 'EX', ARGV[15]) end
local hn = tonumber(ARGV[16])
local at = 17
for i = 1, n do redis.call('XDEL', KEYS[2], ARGV[at + i - 1]) end
at = at + n
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[2])
else
  redis.call('DEL', KEYS[3])
end
if j > 0 then
  for i = 0, j - 1 do redis.call('XADD', KEYS[4], '*', 'e', ARGV[at + i]) end
  redis.call('EXPIRE', KEYS[4], 2592000)
  redis.call('ZADD', KEYS[9], 'NX', ARGV[12], member)
  redis.call('EXPIRE', KEYS[9], 3024000)
end
at = at + j
if ARGV[7] ~= '' then
  local cur = tonumber(redis.call('HGET', KEYS[5], ARGV[7]) or '0')
  if tonumber(ARGV[8]) > cur then redis.call('HSET', KEYS[5], ARGV[7], ARGV[8]) end
  redis.call('EXPIRE', KEYS[5], 172800)
end
for i = 0, d - 1 do
  local b = at + 4 * i
  merge(KEYS[6], ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], cmp)
end
at = at + 4 * d
for i = 0, c - 1 do redis.call('XADD', KEYS[7], '*', 'c', ARGV[at + i]) end
at = at + c
if hn > 0 then
  for i = 0, hn - 1 do redis.call('XADD', KEYS[12], '*', 'h', ARGV[at + i]) end
  redis.call('EXPIRE', KEYS[12], ARGV[15])
  redis.call('ZADD', KEYS[13], 'NX', ARGV[12], member)
  redis.call('EXPIRE', KEYS[13], math.max(3024000, tonumber(ARGV[15]) + 172800))
end
at = at + hn
count(KEYS[14], at + 2, tonumber(ARGV[at]), ARGV[at + 1])
for i = 0, tonumber(ARGV[at]) - 1 do
  if is_opt_out(ARGV[at + 2 + 2 * i]) then
    local cid = redis.call('GET', KEYS[18])
    if cid then
      redis.call('HINCRBY', KEYS[16] .. cid, 'opt_outs', 1)
      redis.call('EXPIRE', KEYS[16] .. cid, cmp[4])
      redis.call('DEL', KEYS[18])
    end
  end
end
if ARGV[13] ~= '' then
  redis.call('ZADD', KEYS[10], ARGV[13], member)
  redis.call('EXPIRE', KEYS[10], math.max(3024000, tonumber(ARGV[2]) + 86400))
else
  redis.call('ZREM', KEYS[10], member)
end
local left = redis.call('XLEN', KEYS[2])
if left == 0 then redis.call('ZREM', KEYS[8], member) end
redis.call('DEL', KEYS[1])
return left
