-- A library, no KEYS or ARGV of its own: prepended to commit.lua and
-- finish.lua, whose KEYS and ARGV its functions read (`count` reads
-- ARGV from a given position).
-- Merges a delivery record into the hash `key` (the rule of `store::Delivery::merge`):
-- the stored value is `RR|{json}` with a two-digit rank; a lower or equal
-- rank, or anything after a final state (rank 10), changes nothing. A
-- record with no job id is matched through its wamid hash.
local function count(key, at, n, ttl)
  if n == 0 then return end
  for i = 0, n - 1 do redis.call('HINCRBY', key, ARGV[at + 2 * i], ARGV[at + 2 * i + 1]) end
  redis.call('EXPIRE', key, ttl)
end
-- Whether a statistics counter counts opt-outs: 'opt_outs', or another
-- business's 'business:<id>:opt_outs' (the rule of store::stats::is_opt_out).
local function is_opt_out(name)
  return name == 'opt_outs' or string.match(name, '^business:[a-z0-9%-]+:opt_outs$') ~= nil
end
-- A campaign job's record moved from rank `old` (0: none) to `rank`:
-- count it in the campaign's counters (the rules of store::campaign_tally).
-- cmp: the calling script's campaign_prefix (the shard's campaign
-- counters prefix), campaigns (the contact's campaign marks),
-- last_campaign (its last campaign mark) and campaign_ttl (the counters'
-- TTL).
local function tally(cmp, job, old, rank, json)
  local cid = string.match(job, '^cmp%.(%w+)%.')
  if not cid or not cmp then return end
  local rec = cjson.decode(json)
  local k = cmp[1] .. cid
  if old == 0 then
    redis.call('HINCRBY', k, 'queued', -1)
    if redis.call('HEXISTS', cmp[2], cid) == 1 then redis.call('HSET', cmp[2], cid, 'd') end
  end
  if rank >= 10 then
    local f
    if rec['state'] == 'no_consent' then
      f = 'skipped:' .. (rec['reason'] or 'no_consent')
    elseif rec['state'] == 'cancelled' then
      f = 'cancelled'
    elseif type(rec['code']) == 'number' then
      f = 'failed:' .. string.format('%d', rec['code'])
    else
      f = 'failed:' .. rec['state']
    end
    redis.call('HINCRBY', k, f, 1)
  else
    if old < 1 and rank >= 1 then
      redis.call('HINCRBY', k, 'sent', 1)
      redis.call('SET', cmp[3], cid, 'EX', 86400)
    end
    if old < 3 and rank >= 3 then redis.call('HINCRBY', k, 'delivered', 1) end
    if old < 4 and rank >= 4 then redis.call('HINCRBY', k, 'read', 1) end
  end
  redis.call('EXPIRE', k, cmp[4])
end
local function merge(key, job, wamid, rank, json, cmp)
  if job == '' then
    if wamid == '' then return 0 end
    job = redis.call('HGET', key, 'w:' .. wamid)
    if not job then return 0 end
  end
  local cur = redis.call('HGET', key, job)
  rank = tonumber(rank)
  local old = 0
  local update = json
  if cur then
    local r = tonumber(string.sub(cur, 1, 2))
    old = r
    if r >= 10 or r >= rank then return 0 end
    local merged = cjson.decode(string.sub(cur, 4))
    for k, v in pairs(cjson.decode(json)) do merged[k] = v end
    merged['job'] = job
    json = cjson.encode(merged)
  end
  redis.call('HSET', key, job, string.format('%02d', rank) .. '|' .. json)
  if wamid ~= '' then redis.call('HSET', key, 'w:' .. wamid, job) end
  redis.call('EXPIRE', key, 2592000)
  tally(cmp, job, old, rank, update)
  return 1
end
