-- KEYS: [1] seen (the seen mark), [2] stream, and for a contact's or an
-- outbox's queue [3] ready (its shard's ready set of the queue's lane),
-- [4] consent (its ledger), [5] data_key, and for a contact's only
-- [6] stats (its shard's statistics of the day), [7] last_campaign (its
-- last campaign mark), [8] campaign_prefix (its shard's campaign counters
-- prefix).
-- ARGV: [1] dedup_ttl (s), [2] sealed (the event), [3] stream_ttl (s),
-- [4] now_ms, [5] contact, [6] consent (the entry, JSON, or empty),
-- [7] data_key (the wrapped data key the entry is sealed under, or
-- empty), [8] fresh_key ('1' when that key is new), [9] key_ttl (s),
-- [10] counter (the counter the consent entry adds, or empty),
-- [11] stats_ttl, [12] campaign_ttl, [13] refused (the event sealed as it
-- reads when its grant is refused, or empty), [14] grants_per_window,
-- [15] grant_window (s). An opt-out within 24 hours of a campaign
-- message counts for that campaign (once).
-- A consent entry that changes nothing (the ledger's latest entry for its
-- purpose, by the time of the action and a withdrawal first within a
-- second, says the same, or the same choice is there for the same second;
-- see `privacy::consent::changes`) is not recorded, counted or attributed,
-- nor a grant beyond grants_per_window of its purpose within grant_window
-- seconds of its time (`privacy::consent::decide`); for a refused grant
-- the entry stored is `refused` (the event as it reads then). The ledger
-- is read newest first, and only back to where no entry can matter any
-- more: one written a day (clock skew) before both the latest action
-- found and the grant window.
-- Answers the entry's id, 0 when it was stored but its consent changed
-- nothing, -2 when it was stored but its grant was refused, nil for a
-- duplicate, or -1 (nothing written)
-- when the data key is not the stored one. A key is stored only with a
-- new entry (a duplicate of a message from before an erasure makes none).
local function consent_decision(key, json, per_day, window)
  local new = cjson.decode(json)
  if new.purpose == 'policy_notice' then return 'record' end
  local best = nil
  local grants = 0
  local last = '+'
  local done = false
  while not done do
    local page = redis.call('XREVRANGE', key, last, '-', 'COUNT', 65)
    local fresh = 0
    for _, item in ipairs(page) do
      if item[1] ~= last then
        fresh = fresh + 1
        local written = tonumber(string.match(item[1], '^(%d+)')) / 1000
        if best and written + 86400 < math.min(best.at, new.at - window) then
          done = true
          break
        end
        local ok, c = pcall(cjson.decode, item[2][2])
        if ok and c.purpose == new.purpose then
          if c.granted == new.granted and c.at == new.at then return 'same' end
          if c.granted and math.abs(c.at - new.at) < window then grants = grants + 1 end
          if not best or c.at > best.at or (c.at == best.at and best.granted and not c.granted) then
            best = c
          end
        end
      end
    end
    if fresh == 0 then break end
    last = page[#page][1]
  end
  if best ~= nil and best.granted == new.granted then return 'same' end
  if new.granted and grants >= per_day then return 'refused' end
  return 'record'
end
local make_key = false
if KEYS[5] and ARGV[7] ~= '' then
  local cur = redis.call('GET', KEYS[5])
  if cur then
    if cur ~= ARGV[7] then return -1 end
  elseif ARGV[8] == '1' then
    make_key = true
  else
    return -1
  end
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  if make_key then redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[9]) end
  local decision = 'record'
  if KEYS[4] and ARGV[6] ~= '' then
    decision = consent_decision(KEYS[4], ARGV[6], tonumber(ARGV[14]), tonumber(ARGV[15]))
  end
  local sealed = ARGV[2]
  if decision == 'refused' and ARGV[13] ~= '' then sealed = ARGV[13] end
  local id = redis.call('XADD', KEYS[2], '*', 'e', sealed)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  if KEYS[3] then
    redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[5])
    redis.call('EXPIRE', KEYS[3], 3024000)
  end
  local same = decision ~= 'record'
  if KEYS[4] and ARGV[6] ~= '' and not same then
    redis.call('XADD', KEYS[4], '*', 'c', ARGV[6])
  end
  if KEYS[5] and ARGV[7] ~= '' then redis.call('EXPIRE', KEYS[5], ARGV[9]) end
  if KEYS[6] and ARGV[10] ~= '' and not same then
    redis.call('HINCRBY', KEYS[6], ARGV[10], 1)
    redis.call('EXPIRE', KEYS[6], ARGV[11])
  end
  -- An opt-out counter: 'opt_outs', or another business's
  -- 'business:<id>:opt_outs' (store::stats::is_opt_out).
  local opt_out = ARGV[10] == 'opt_outs' or string.match(ARGV[10], '^business:[a-z0-9%-]+:opt_outs$') ~= nil
  if KEYS[7] and opt_out and not same then
    local cid = redis.call('GET', KEYS[7])
    if cid then
      redis.call('HINCRBY', KEYS[8] .. cid, 'opt_outs', 1)
      redis.call('EXPIRE', KEYS[8] .. cid, ARGV[12])
      redis.call('DEL', KEYS[7])
    end
  end
  if decision == 'refused' then return -2 end
  if same then return 0 end
  return id
end
return false
