//! The Redis backend.
//!
//! Keys (`P` is `store.key_prefix`; `{…}` is a Redis Cluster hash tag).
//! Each contact belongs to one of [`SHARDS`] shards (`N`, from its
//! pseudonymous key); the contact's keys and its shard's ready sets and
//! timers share the shard's hash tag `{s:N}`, so every write about a
//! contact is one script in one slot, on one Redis or on a cluster:
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `P{s:N}:c:<contact>:inbox` | stream of sealed events (field `e`) | 30 days after the last append |
//! | `P{s:N}:c:<contact>:seen:<dedup>` | string, de-duplication mark | 8 days |
//! | `P{s:N}:c:<contact>:session` | string, the sealed session | `flows.session_ttl` after the last write |
//! | `P{s:N}:c:<contact>:history` | stream of sealed message history entries (field `h`; the id's time is when it was written) | `privacy.retention_days` after the last entry (older entries are purged by the retention job) |
//! | `P{s:N}:c:<contact>:profile` | string, the sealed profile (names, tags, privacy notices and confirmations) | `privacy.retention_days` after the last write |
//! | `P{s:N}:c:<contact>:outbox` | stream of sealed outbound jobs | 30 days after the last append |
//! | `P{s:N}:c:<contact>:lease:inbox`, `P{s:N}:c:<contact>:lease:outbox` | string, the lease holder's token | the lease time, 4 s, renewed every second while held (deleted on commit or release) |
//! | `P{s:N}:c:<contact>:outbox:head` | string, the retry state of the outbox's first job | until that job is finished (30 days at most) |
//! | `P{s:N}:c:<contact>:deliveries` | hash: job id → `RR\|{json}` delivery record (rank, state, code; never content), and `w:<wamid hash>` → job id | 30 days after the last write |
//! | `P{s:N}:c:<contact>:dead` | stream of sealed dead letters (the job and its last error) | 30 days after the last one |
//! | `P{s:N}:c:<contact>:consent` | stream: the consent ledger (JSON entries: purpose, granted, time, source, policy version; no message content) | kept: it is the evidence of consent |
//! | `P{s:N}:c:<contact>:window` | hash: business phone_number_id → the customer's last message time (Unix s) | 2 days after the last write |
//! | `P{s:N}:c:<contact>:key` | string: the contact's data key, wrapped under a master key (see `privacy::keys`) | `privacy.retention_days` + 2 days after the contact's last message |
//! | `P{s:N}:c:<contact>:key:was` | string: the data key's previous wrapping after a rewrap; a claim taken under it still commits and finishes (the key is the same) | [`super::REWRAPPED_KEEP`] (one hour) |
//! | `P{s:N}:stats:<day>` | hash: the shard's anonymous counters of a UTC day (messages in and out, opt-outs, opt-ins, exports, erasures, `step:<flow>/<step>`); no contact | 400 days |
//! | `P{s:N}:c:<contact>:cmp` | hash: campaign id → the contact's turn in it (`q` queued, `s` skipped, `d` done): never twice per campaign | as long as the contact's data key (`privacy.retention_days` + 2 days) after the last campaign |
//! | `P{s:N}:c:<contact>:lastcmp` | string: the campaign whose message the contact got last, so an opt-out within 24 hours counts for it | 24 hours |
//! | `P{s:N}:cmp:<id>` | hash: the shard's counters of one campaign (queued, sent, delivered, read, `failed:<code>`, `skipped:<reason>`, cancelled, opt_outs); no contact | 400 days after the last change |
//! | `P{cmp:<id>}` | hash: a campaign's definition (name, template, rate, audience kind; no contact) and status | 400 days |
//! | `P{cmp:<id>}:queue`, `P{cmp:<id>}:members` | the audience left to dispatch: a list of member names (pseudonymous keys) in order, and a hash of name → entry (the pseudonymous key, `\|`, and the sealed number and variables); an entry leaves once dispatched, when the contact is erased (by key, `HDEL`), or when the campaign is cancelled (see `audience`) | until dispatched (`send_at` is at most a year ahead; 400 days at most) |
//! | `P{cmp:<id>}:lease` | string: the dispatcher holding the campaign | 10 s |
//! | `P{cmp}:index` | sorted set: campaign ids by creation time | 400 days after the last campaign |
//! | `P{cmp}:active` | sorted set: the campaigns still to dispatch (scheduled, running), by creation time; one leaves when it is dispatched or cancelled | 400 days after the last campaign |
//! | `P{s:N}:ready:inbox`, `P{s:N}:ready:outbox` | sorted sets: the shard's contacts with pending entries, by when they became ready (Unix ms); a member leaves when its queue is drained | 35 days after the last addition (longer than any entry it points to lives) |
//! | `P{s:N}:timers` | sorted set: contacts by when their session's timeout is due (Unix s); a member leaves when its timer fires or is cancelled | 35 days (at least `flows.session_ttl` + 1 day) after the last addition |
//! | `P{s:N}:due` | sorted set: contacts whose outbox waits (backoff, rate limit, paused number) by when to try again (Unix ms); a member leaves when its outbox is released | 35 days after the last addition |
//! | `P{s:N}:history` | sorted set: the shard's contacts with history, by the time of their oldest entry (Unix ms), for the retention purge; a member leaves when its history is purged or erased | 35 days (at least `privacy.retention_days` + 2 days) after the last addition |
//! | `P{s:N}:dead` | sorted set: contacts with dead letters, by the time of the last one | 35 days after the last one |
//! | `P{sys}:inbox`, `P{sys}:seen:<dedup>` | the same as a contact's, for account-level events | 30 days / 8 days |
//! | `P{quarantine}:inbox`, `P{quarantine}:seen:<sha>` | unreadable signed bodies | 30 days / 8 days |
//! | `P{audit}:log`, `P{audit}:head` | stream of audit entries (JSON: time, kind, pseudonymous contact, actor, chain hashes; no content), id `<seq>-1`; and the last entry's sequence number and hash | kept: it is the accountability record (GDPR Art. 5(2)), and a gap would break its chain |
//! | `P{audit}:requests`, `P{audit}:requests:closed` | the request index (see `store::audit_index`): hash, group (`<what>\|<contact>`) → its open request entries, one a line (`r`/`c`, seq, JSON); and sorted set of closed requests' entries (JSON) by seq; `indexed_from` in the head: the first entry the index saw (1 once complete) | an open group until closed or lapsed; the newest 1,000 closed entries |
//! | `P{meta}:pin:<name>` | string: the store's identity, the id (8 hex digits) of the pseudonym key its contacts are named under; a server with another key refuses to start | kept: it names the store, not a contact |
//! | `P{s:N}:c:<contact>:link` | string, for a key that is an alias (a customer's other id, see `store::links`): the canonical contact's key (keyed hashes only) | kept until the contact is erased: it applies the contact's kept consent ledger to both ids |
//! | `P{s:N}:c:<contact>:aliases` | set: the keys linked to the contact, for its erasure | kept until the contact is erased |
//! | `P{suppressed}` | hash: pseudonymous key of an erased contact → when (Unix s); so their opt-out survives and a later import cannot re-subscribe them | kept |
//! | `Pconsole:<hash>` | string: an operator's console session (sealed: expiry, CSRF token, the credential it was opened with, the simulator's conversation), under a hash of its cookie id | until it expires (8 hours) or ends |
//! | `Pconsole:sessions` | set: the session keys above, so that a change of the admin credential ends them all at once | 9 hours after the last sign-in |
//! | `Prate:<name>` | string, a GCRA rate limit's theoretical arrival time (Unix µs) | just past it |
//! | `Pbreakers`, `Pbreakers:probe` | hashes: phone_number_id → why its sending is paused (JSON), and when the next probe may go; a field leaves when the breaker closes | 30 days after the last opening |
//!
//! `<contact>` is the pseudonymous contact key, never a phone number;
//! `<dedup>` is a keyed hash.
//!
//! Every state change of a contact is one Lua script, so it is atomic:
//! the seen-mark, the append and the ready mark (concurrent duplicate
//! deliveries to any number of instances append once); a commit (entries
//! removed, session, jobs queued and marked ready, timer, window, delivery
//! records, consent, the ready mark dropped when the inbox is empty, the
//! lease released); a finished job (removed with its record, and with the
//! claim's release when it is the last). A ready mark is therefore never
//! missing while its queue holds entries, and never dropped while it does.
//!
//! Campaign counters are per shard (`P{s:N}:cmp:<id>`), so a contact's
//! progress is counted in the same script as the write that makes it
//! (a finished job, a status webhook, an opt-out, an erasure). Where the
//! campaign is only known inside the script (a status update that names
//! just the wamid, the contact's last campaign, its marks), the script
//! names the counters key from the shard's declared prefix key
//! (`P{s:N}:cmp:`): the same hash tag, so the same slot, which Redis
//! Cluster accepts; a proxy that routes by declared keys only would not.
//!
//! The hot path costs one command per step (append, claim, commit, claim,
//! rate, finish); contacts are handed from the webhook to the workers and
//! from the workers to the senders inside the process, so the shared sets
//! are read only by the periodic sweep (one command per shard), which finds
//! work left by another instance, by a crash, or by a timer.

use std::time::Duration;

/// How long the index of console sessions outlives the last sign-in (a
/// session lasts 8 hours).
const CONSOLE_INDEX_TTL: u64 = 9 * 3600;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use conn::Conn;
use redis::{RedisError, Value};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Appended, Breaker, Claim, Commit, Committed, ConsentChange, DEDUP_TTL, DeadLetter, Delivery,
    Finish, INBOX_TTL, InboxEntry, Lane, Queue, RateGrant, StoreError, StoredEntry, stats,
};
use crate::domain::ContactKey;

mod audience;
mod audit;
mod campaigns;
mod conn;
mod contacts;
mod history;
mod inbox;
mod keys;
mod lanes;
mod links;
mod ops;
mod outbox;

/// The largest COUNT Redis takes (a signed 64-bit number); callers may
/// ask for "everything" with `usize::MAX`.
const MAX_COUNT: usize = i64::MAX as usize;

/// How many shards contacts are spread over (see the module docs). The
/// layout of every key depends on it: changing it strands what is queued.
pub const SHARDS: u16 = 16;

/// The shard of a contact: from its key, a keyed hash in hex.
fn shard_of(contact: &ContactKey) -> u16 {
    contact
        .as_str()
        .get(..4)
        .and_then(|h| u16::from_str_radix(h, 16).ok())
        .unwrap_or(0)
        % SHARDS
}

/// KEYS: seen mark, stream, and for a contact its shard's inbox ready set,
/// its consent ledger, its data key, its shard's statistics of the day,
/// its last campaign mark and its shard's campaign counters prefix.
/// ARGV: dedup TTL (s), sealed event, stream TTL (s), now (ms), contact,
/// consent entry (JSON) or empty, the wrapped data key the entry is sealed
/// under (or empty), '1' when that key is new, the key's TTL (s), the
/// counter the consent entry adds (or empty), the statistics' TTL, the
/// campaign counters' TTL, the event sealed as it reads when its grant is
/// refused (or empty), the grants allowed per window, the window (s). An
/// opt-out within 24 hours of a campaign
/// message counts for that campaign (once).
/// A consent entry that changes nothing (the ledger's latest entry for its
/// purpose, by the time of the action and a withdrawal first within a
/// second, says the same, or the same choice is there for the same second;
/// see `privacy::consent::changes`) is not recorded, counted or attributed,
/// nor a grant beyond ARGV[14] of its purpose within ARGV[15] seconds of
/// its time (`privacy::consent::decide`); for a refused grant the entry
/// stored is ARGV[13] (the event as it reads then). The ledger is read
/// newest first, and only back to where no entry can matter any more: one
/// written a day (clock skew) before both the latest action found and the
/// grant window.
/// Answers the entry's id, 0 when it was stored but its consent changed
/// nothing, -2 when it was stored but its grant was refused, nil for a
/// duplicate, or -1 (nothing written)
/// when the data key is not the stored one. A key is stored only with a
/// new entry (a duplicate of a message from before an erasure makes none).
const APPEND_LUA: &str = r#"
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
  if KEYS[7] and ARGV[10] == 'opt_outs' and not same then
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
"#;

/// KEYS: a contact's data key. ARGV: a wrapped key, its time to live (s).
/// Stores the key unless one is there; answers the key in force.
const DATA_KEY_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"#;

/// KEYS: a contact's consent ledger, its shard's statistics of the day.
/// ARGV: the ledger entry (JSON), the counter ('' for none), the
/// statistics' TTL.
const CONSENT_LUA: &str = r#"
redis.call('XADD', KEYS[1], '*', 'c', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"#;

/// KEYS: a pin. ARGV: a value. Stores it unless one is there; answers the
/// value in force.
const PIN_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#;

/// KEYS: a contact's data key, its previous wrapping. ARGV: the stored
/// key, its replacement, how long the previous wrapping is kept (s).
const REWRAP_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
  return 1
end
return 0
"#;

/// KEYS: lease, stream, session (inbox) or head state (outbox), the data
/// key, and for the inbox the profile. ARGV: token, lease (ms), limit. Nil
/// when the lease is held elsewhere, else the pending entries, the session
/// or head state, the data key and the profile.
const CLAIM_LUA: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local profile = false
if KEYS[5] then profile = redis.call('GET', KEYS[5]) or false end
return {redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[3]), redis.call('GET', KEYS[3]) or false, redis.call('GET', KEYS[4]) or false, profile}
"#;

/// Merges a delivery record into the hash `key` (see [`Delivery::merge`]):
/// the stored value is `RR|{json}` with a two-digit rank; a lower or equal
/// rank, or anything after a final state (rank 10), changes nothing. A
/// record with no job id is matched through its wamid hash.
const MERGE_LUA: &str = r#"
local function count(key, at, n, ttl)
  if n == 0 then return end
  for i = 0, n - 1 do redis.call('HINCRBY', key, ARGV[at + 2 * i], ARGV[at + 2 * i + 1]) end
  redis.call('EXPIRE', key, ttl)
end
-- A campaign job's record moved from rank `old` (0: none) to `rank`:
-- count it in the campaign's counters (the rules of store::campaign_tally).
-- cmp: the shard's campaign counters prefix, the contact's campaign marks,
-- its last campaign mark, the counters' TTL.
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
"#;

/// KEYS: lease, inbox, session, outbox, window, deliveries, consent,
/// inbox ready set, outbox ready set, timers, profile, history, the
/// shard's history index.
/// ARGV: token, session ttl, has session, session, number of acked ids,
/// number of jobs, window number, window time, number of deliveries,
/// number of consent entries, contact, now (ms), timer (Unix s, or empty
/// to cancel), profile (or empty: unchanged), profile ttl (s), number of
/// history entries, then the acked ids, the jobs, four values per delivery
/// (job, wamid, rank, json), the consent entries (json) and the history
/// entries, then the number of counters, the statistics' TTL and (name,
/// amount) per counter (KEYS[14]: the shard's statistics of the day), the
/// campaign counters' TTL, and last the wrapped data key the claim was
/// sealed under, or empty (KEYS[15]: the contact's data key; its previous
/// wrapping, `KEYS[15]:was`, is accepted too). KEYS[16..18]:
/// the shard's campaign counters prefix, the contact's campaign marks and
/// last campaign mark (see `tally`; an opt-out counts for the campaign
/// whose message came within 24 hours). A data key that is no longer the stored one
/// (the contact was erased meanwhile) writes nothing, as a lost lease.
/// Answers the entries left in the inbox,
/// or -1 when the lease was lost (nothing written).
const COMMIT_LUA: &str = r#"
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
  if ARGV[at + 2 + 2 * i] == 'opt_outs' then
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
"#;

/// KEYS: lease, outbox, head, deliveries, dead, dead index, consent,
/// outbox ready set, due set, the shard's statistics of the day.
/// ARGV: token, entry id, job, wamid hash, rank, json, dead letter (or
/// empty), now, contact, consent entry (or empty), release ('1' or ''),
/// number of other entry ids, then those ids, the number of counters,
/// the statistics' TTL, (name, amount) per counter, the campaign counters'
/// TTL, and last the claim's wrapped data key or empty (KEYS[11]: the
/// contact's data key; its previous wrapping, `KEYS[11]:was`, is accepted
/// too). KEYS[12..14]: the shard's campaign counters prefix,
/// the contact's campaign marks and last campaign mark. When the
/// data key is no longer the stored one (the contact was erased), nothing
/// is written and 0 is answered. Returns 1 if the lease is
/// still held, else 0; the job is finished either way.
const FINISH_LUA: &str = r#"
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
"#;

/// KEYS: lease, head, due set, outbox ready set. ARGV: token, has head,
/// head, until (Unix ms), contact. Returns 1, or 0 when the lease was
/// lost (nothing written). The contact leaves the ready set for the due
/// set, so no one tries it before `until`.
const DEFER_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'EX', 2592000) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[3], 3024000)
redis.call('ZREM', KEYS[4], ARGV[5])
redis.call('DEL', KEYS[1])
return 1
"#;

/// KEYS: rate key. ARGV: interval (µs), burst, wanted slots. GCRA on the
/// server's clock (µs), so instances with skewed clocks agree. Answers
/// {slots taken, 0}, or {0, ms to wait for one slot (rounded up)}.
const RATE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = math.floor((now + burst * interval - tat) / interval)
if free < 1 then return {0, math.ceil((tat - now - (burst - 1) * interval) / 1000)} end
local got = math.min(want, free)
tat = tat + got * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {got, 0}
"#;

/// KEYS: rate key. ARGV: hold (ms).
const HOLD_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1]) * 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > tat then
  redis.call('SET', KEYS[1], string.format('%.0f', until_), 'PX', tonumber(ARGV[1]) + 1000)
end
return 1
"#;

/// KEYS: probe hash. ARGV: number, now, next. 1 when this caller probes.
const PROBE_LUA: &str = r#"
local p = redis.call('HGET', KEYS[1], ARGV[1])
if not p then return 0 end
if tonumber(p) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"#;

/// KEYS: lease, outbox, outbox ready set, due set. ARGV: token, contact,
/// outbox lane ('1' or ''). Only the holder releases; in the outbox lane
/// the contact's timer is cleared and, with nothing queued, its ready mark.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[2])
  if redis.call('XLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[2]) end
end
redis.call('DEL', KEYS[1])
return 1
"#;

/// KEYS: leases of one shard. ARGV: lease (ms), then the holder's token
/// of each. Extends each lease its holder still has; answers 1 or 0 each.
const RENEW_LUA: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"#;

/// KEYS: a shard's ready set and timers. ARGV: limit, now. A random
/// sample of the ready contacts, and the due ones (earliest first).
const SWEEP_LUA: &str = r#"
return {redis.call('ZRANDMEMBER', KEYS[1], ARGV[1]),
  redis.call('ZRANGE', KEYS[2], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[1])}
"#;

/// KEYS: audit head, audit log, request index, closed requests. ARGV:
/// seq, prev, hash, entry (JSON), the entry's request op (`r`, `c`, `x`
/// or empty; see `store::audit_index`), its group, how many closed
/// entries to keep. Appends only after the current head; answers 1, or 0
/// when it moved. A group is its entries, one a line: op, seq, JSON. The
/// head's `indexed_from` is the first entry the index saw.
const AUDIT_LUA: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'seq', 'hash')
local seq = tonumber(cur[1] or '0')
local h = cur[2] or ''
if seq + 1 ~= tonumber(ARGV[1]) or (seq > 0 and h ~= ARGV[2]) then return 0 end
redis.call('XADD', KEYS[2], ARGV[1] .. '-1', 'a', ARGV[4])
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'hash', ARGV[3])
redis.call('HSETNX', KEYS[1], 'indexed_from', ARGV[1])
local op = ARGV[5]
if op == '' then return 1 end
local g = redis.call('HGET', KEYS[3], ARGV[6])
if op == 'x' then
  if g then
    redis.call('HDEL', KEYS[3], ARGV[6])
    for line in string.gmatch(g, '[^\n]+') do
      local s, e = string.match(line, '^[rc] (%d+) (.*)$')
      if s then redis.call('ZADD', KEYS[4], s, e) end
    end
    redis.call('ZADD', KEYS[4], ARGV[1], ARGV[4])
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[7]) + 1))
  end
elseif op == 'r' or g then
  local line = op .. ' ' .. ARGV[1] .. ' ' .. ARGV[4]
  if g then line = g .. '\n' .. line end
  redis.call('HSET', KEYS[3], ARGV[6], line)
end
return 1
"#;

/// KEYS: the contact's keys (deleted), then its shard's inbox and outbox
/// ready sets, timers, due set and dead index (it leaves them), and the
/// shard's statistics of the day (erasures + 1). ARGV: number of contact
/// keys, contact, the statistics' TTL, the index in KEYS of the contact's
/// campaign marks, the shard's campaign counters prefix (same slot), the
/// counters' TTL: a campaign message still queued counts as skipped
/// (`suppressed`).
const ERASE_LUA: &str = r#"
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
"#;

/// KEYS: a contact's history, its shard's history index. ARGV: cutoff
/// (Unix ms), contact. Drops the entries written before the cutoff and
/// moves the contact's place in the index to its oldest entry left.
const PURGE_LUA: &str = r#"
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', tonumber(string.match(first[1][1], '^(%d+)')), ARGV[2])
return 1
"#;

/// KEYS: the contact's campaign marks, data key, outbox, its shard's
/// outbox ready set and the campaign's counters in the shard. ARGV:
/// campaign id, sealed job (or empty: skipped), skip reason, wrapped data
/// key, '1' when that key is new, the key's (and marks') TTL, now (ms),
/// contact, the counters' TTL. Answers 1 (done), 0 (the contact already had
/// its turn), -1 (the data key is not the stored one: nothing written).
const DISPATCH_LUA: &str = r#"
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
"#;

/// KEYS: a campaign's record hash, its audience's keys
/// ([`super::audience`]). ARGV: the new status,
/// then the statuses it may move from. Answers 1 when it moved. A
/// cancelled campaign's audience left is dropped: its numbers go.
const STATUS_LUA: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
for i = 2, #ARGV do
  if cur == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1])
    if ARGV[1] == 'cancelled' then
      for k = 2, #KEYS do redis.call('DEL', KEYS[k]) end
    end
    return 1
  end
end
return 0
"#;

/// KEYS: a lease. ARGV: owner, lease (ms). Takes it when free, renews it
/// when held by the owner; answers 1 when the owner holds it.
const LEASE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// KEYS: lease, head. ARGV: token, head. Writes the head's retry state if
/// the lease is held; answers 1 when it did.
const SET_HEAD_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', 2592000)
return 1
"#;

/// KEYS: a due set. Makes every member due now.
const WAKE_LUA: &str = r#"
local m = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, x in ipairs(m) do redis.call('ZADD', KEYS[1], 'XX', 0, x) end
return #m
"#;

/// The Redis store; cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    append: redis::Script,
    claim: redis::Script,
    commit: redis::Script,
    finish: redis::Script,
    defer: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    rate: redis::Script,
    hold: redis::Script,
    probe: redis::Script,
    wake: redis::Script,
    sweep: redis::Script,
    audit: redis::Script,
    audit_lapse: redis::Script,
    audit_reset: redis::Script,
    erase: redis::Script,
    purge: redis::Script,
    data_key: redis::Script,
    rewrap: redis::Script,
    consent: redis::Script,
    pin: redis::Script,
    dispatch: redis::Script,
    status: redis::Script,
    lease: redis::Script,
    set_head: redis::Script,
}

/// A delivery record as stored: `RR|{json}`.
fn record_of(value: &[u8]) -> Option<Delivery> {
    serde_json::from_slice(value.get(3..)?).ok()
}

/// The four script arguments of a record (job, wamid, rank, json).
fn record_args(d: &Delivery) -> Result<[String; 4], StoreError> {
    Ok([
        d.job.clone(),
        d.wamid.clone().unwrap_or_default(),
        d.state.rank().to_string(),
        serde_json::to_string(d).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    ])
}

/// The entries of an XRANGE reply (field `e` holds the sealed body).
fn entries_of(reply: redis::streams::StreamRangeReply) -> Result<Vec<StoredEntry>, StoreError> {
    reply
        .ids
        .into_iter()
        .map(|sid| match sid.map.get("e") {
            Some(Value::BulkString(b)) => Ok(StoredEntry {
                sealed: b.clone(),
                id: sid.id,
            }),
            _ => Err(StoreError::Corrupt(format!("entry {} has no body", sid.id))),
        })
        .collect()
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn no_script(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// How long an open breaker is kept without news (s): long past any
/// probe; if it lapses, the next send finds out again.
const BREAKER_TTL: u64 = 30 * 86_400;

/// How long a day's statistics are kept (s).
const STATS_TTL: u64 = stats::KEEP_DAYS * 86_400;
/// How long a campaign's keys are kept after their last change (s).
const CAMPAIGN_TTL_S: u64 = super::CAMPAIGN_TTL.as_secs();

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Contacts from several shards' sorted sets: merged by score (lowest
/// first), at most `limit`.
fn merge_scored(per_shard: Vec<Vec<(String, f64)>>, limit: usize) -> Vec<ContactKey> {
    let mut all: Vec<(String, f64)> = per_shard.into_iter().flatten().collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.iter()
        .filter_map(|(m, _)| ContactKey::parse(m))
        .take(limit)
        .collect()
}

impl RedisStore {
    /// Connects (and keeps reconnecting) to `url`; keys go under `prefix`.
    /// With `ca` (PEM), a `rediss://` server's certificate must chain to
    /// it (else to the system's roots).
    pub async fn connect(
        url: &SecretString,
        prefix: &str,
        ca: Option<Vec<u8>>,
    ) -> Result<Self, StoreError> {
        let invalid = || StoreError::Unavailable("store.redis_url is not a valid Redis URL".into());
        let client = match ca {
            None => redis::Client::open(url.expose_secret()).map_err(|_| invalid())?,
            Some(pem) => {
                let info = redis::IntoConnectionInfo::into_connection_info(url.expose_secret())
                    .map_err(|_| invalid())?;
                redis::Client::build_with_tls(info, conn::trusting(pem)).map_err(conn::tls_error)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self::with(Conn::Single(conn), prefix))
    }

    /// Connects to a Redis Cluster through `urls`: one or more of its
    /// nodes, separated by commas (the rest are found from them).
    pub async fn connect_cluster(
        urls: &SecretString,
        prefix: &str,
        ca: Option<Vec<u8>>,
    ) -> Result<Self, StoreError> {
        let nodes: Vec<&str> = urls
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let invalid =
            || StoreError::Unavailable("store.redis_url is not a list of valid Redis URLs".into());
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5));
        if let Some(pem) = ca {
            builder = builder.certs(conn::trusting(pem));
        }
        let client = builder.build().map_err(|e| {
            if e.kind() == redis::ErrorKind::InvalidClientConfig {
                conn::tls_error(e)
            } else {
                invalid()
            }
        })?;
        let conn = client.get_async_connection().await.map_err(unavailable)?;
        Ok(Self::with(Conn::Cluster(conn), prefix))
    }

    fn with(conn: Conn, prefix: &str) -> Self {
        RedisStore {
            conn,
            prefix: prefix.to_owned(),
            append: redis::Script::new(APPEND_LUA),
            claim: redis::Script::new(CLAIM_LUA),
            commit: redis::Script::new(&format!("{MERGE_LUA}{COMMIT_LUA}")),
            finish: redis::Script::new(&format!("{MERGE_LUA}{FINISH_LUA}")),
            defer: redis::Script::new(DEFER_LUA),
            release: redis::Script::new(RELEASE_LUA),
            renew: redis::Script::new(RENEW_LUA),
            rate: redis::Script::new(RATE_LUA),
            hold: redis::Script::new(HOLD_LUA),
            probe: redis::Script::new(PROBE_LUA),
            wake: redis::Script::new(WAKE_LUA),
            sweep: redis::Script::new(SWEEP_LUA),
            audit: redis::Script::new(AUDIT_LUA),
            audit_lapse: redis::Script::new(audit::LAPSE_LUA),
            audit_reset: redis::Script::new(audit::RESET_LUA),
            erase: redis::Script::new(ERASE_LUA),
            purge: redis::Script::new(PURGE_LUA),
            data_key: redis::Script::new(DATA_KEY_LUA),
            rewrap: redis::Script::new(REWRAP_LUA),
            consent: redis::Script::new(CONSENT_LUA),
            pin: redis::Script::new(PIN_LUA),
            dispatch: redis::Script::new(DISPATCH_LUA),
            status: redis::Script::new(STATUS_LUA),
            lease: redis::Script::new(LEASE_LUA),
            set_head: redis::Script::new(SET_HEAD_LUA),
        }
    }

    /// The value of a string key, if any.
    async fn get_bytes(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// A key of a shard: `P{s:N}:<suffix>`.
    fn shard_key(&self, shard: u16, suffix: &str) -> String {
        format!("{}{{s:{shard}}}:{suffix}", self.prefix)
    }

    /// A key of a contact, in its shard's slot: `P{s:N}:c:<contact>:<suffix>`.
    fn contact_key(&self, contact: &ContactKey, suffix: &str) -> String {
        self.shard_key(shard_of(contact), &format!("c:{contact}:{suffix}"))
    }

    /// A key of a queue that is not a contact's: `P{sys}:<suffix>`.
    fn queue_key(&self, queue: &Queue, suffix: &str) -> String {
        match queue {
            Queue::Contact(k) | Queue::Outbox(k) => self.contact_key(k, suffix),
            other => format!("{}{{{}}}:{}", self.prefix, other.name(), suffix),
        }
    }

    fn stream_key(&self, queue: &Queue) -> String {
        match queue {
            Queue::Outbox(_) => self.queue_key(queue, "outbox"),
            _ => self.queue_key(queue, "inbox"),
        }
    }

    /// A shard's anonymous counters of one day: `P{s:N}:stats:<day>`.
    fn stats_key(&self, shard: u16, day: &str) -> String {
        self.shard_key(shard, &format!("stats:{day}"))
    }

    fn ready_key(&self, lane: Lane, shard: u16) -> String {
        self.shard_key(shard, &format!("ready:{}", lane.name()))
    }

    fn timers_key(&self, lane: Lane, shard: u16) -> String {
        self.shard_key(
            shard,
            match lane {
                Lane::Inbox => "timers",
                Lane::Outbox => "due",
            },
        )
    }

    /// The campaigns of an index (`P{cmp}:index` or `P{cmp}:active`),
    /// oldest first, whose status `keep` accepts; the ids of the others
    /// (expired, or no longer active) leave the index.
    async fn indexed_campaigns(
        &self,
        index: &str,
        keep: fn(&str) -> bool,
    ) -> Result<Vec<super::StoredCampaign>, StoreError> {
        let mut conn = self.conn.clone();
        let index = format!("{}{{cmp}}:{index}", self.prefix);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.campaign_key(id, ""))
                .arg("record")
                .arg("status");
        }
        let rows: Vec<(Option<Vec<u8>>, Option<String>)> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (id, row) in ids.into_iter().zip(rows) {
            match row {
                (Some(record), Some(status)) if keep(&status) => {
                    out.push(super::StoredCampaign { id, record, status })
                }
                // Expired, or finished (the status moved between the two
                // writes of `set_campaign_status`).
                _ => stale.push(id),
            }
        }
        if !stale.is_empty() {
            let () = redis::cmd("ZREM")
                .arg(&index)
                .arg(&stale)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(out)
    }

    /// A campaign's keys, in its own slot: `P{cmp:<id>}<suffix>`.
    fn campaign_key(&self, id: &str, suffix: &str) -> String {
        format!("{}{{cmp:{id}}}{suffix}", self.prefix)
    }

    /// A campaign's audience keys: queue, members, and an older
    /// version's list (see [`super::audience`]).
    fn audience_keys(&self, id: &str) -> [String; 3] {
        use self::audience::{MEMBERS, OLD_LIST, QUEUE};
        [QUEUE, MEMBERS, OLD_LIST].map(|suffix| self.campaign_key(id, suffix))
    }

    fn lease_key(&self, lane: Lane, contact: &ContactKey) -> String {
        self.contact_key(contact, &format!("lease:{}", lane.name()))
    }

    /// Runs a pipeline of script calls; if Redis lost its scripts (a
    /// restart, SCRIPT FLUSH), loads them and runs it again (every script
    /// here may run twice).
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        build: impl Fn() -> redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match build().query_async(&mut conn).await {
            Err(e) if no_script(&e) => {
                for script in [
                    &self.append,
                    &self.wake,
                    &self.sweep,
                    &self.dispatch,
                    &self.renew,
                ] {
                    script
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
                build().query_async(&mut conn).await.map_err(unavailable)
            }
            other => other.map_err(unavailable),
        }
    }

    fn evalsha<'a>(
        pipe: &'a mut redis::Pipeline,
        script: &redis::Script,
        keys: &[String],
    ) -> &'a mut redis::Pipeline {
        let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for k in keys {
            cmd.arg(k);
        }
        cmd
    }

    /// Appends the entries and records `links` (see
    /// [`Store::append_linked`]) in one pipeline.
    async fn append_with(
        &self,
        entries: Vec<InboxEntry>,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<Appended>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::clock::now_ms();
        let today = stats::today();
        let consents = entries
            .iter()
            .map(|e| e.consent.as_ref().map_or(Ok(String::new()), json))
            .collect::<Result<Vec<String>, StoreError>>()?;
        let values: Vec<Value> = self
            .pipeline(|| {
                let mut pipe = redis::pipe();
                // Contact links the delivery shows (`store::links`): the
                // index, and the link unless the alias has one already.
                for (alias, canonical) in links {
                    pipe.cmd("SADD")
                        .arg(self.contact_key(canonical, "aliases"))
                        .arg(alias.as_str())
                        .ignore();
                    pipe.cmd("SET")
                        .arg(self.contact_key(alias, "link"))
                        .arg(canonical.as_str())
                        .arg("NX")
                        .ignore();
                }
                for (i, e) in entries.iter().enumerate() {
                    let mut keys = vec![
                        self.queue_key(&e.queue, &format!("seen:{}", e.dedup)),
                        self.stream_key(&e.queue),
                    ];
                    let member = match &e.queue {
                        Queue::Contact(k) => {
                            keys.push(self.ready_key(Lane::Inbox, shard_of(k)));
                            keys.push(self.contact_key(k, "consent"));
                            keys.push(self.contact_key(k, "key"));
                            keys.push(self.stats_key(shard_of(k), &today));
                            keys.push(self.contact_key(k, "lastcmp"));
                            keys.push(self.shard_key(shard_of(k), "cmp:"));
                            k.as_str()
                        }
                        // A job appended straight to an outbox (an
                        // integration event): ready for the senders, under
                        // the outbox's own data key.
                        Queue::Outbox(k) => {
                            keys.push(self.ready_key(Lane::Outbox, shard_of(k)));
                            keys.push(self.contact_key(k, "consent"));
                            keys.push(self.contact_key(k, "key"));
                            k.as_str()
                        }
                        _ => "",
                    };
                    let (wrapped, fresh, ttl) = match &e.key {
                        Some(k) => (&k.wrapped[..], k.fresh, k.ttl.as_secs().max(1)),
                        None => (&b""[..], false, 1),
                    };
                    Self::evalsha(&mut pipe, &self.append, &keys)
                        .arg(DEDUP_TTL.as_secs())
                        .arg(&e.sealed[..])
                        .arg(INBOX_TTL.as_secs())
                        .arg(now)
                        .arg(member)
                        .arg(consents[i].as_str())
                        .arg(wrapped)
                        .arg(if fresh { "1" } else { "0" })
                        .arg(ttl)
                        .arg(e.consent.as_ref().and_then(stats::of_consent).unwrap_or(""))
                        .arg(STATS_TTL)
                        .arg(CAMPAIGN_TTL_S)
                        .arg(e.refused.as_deref().unwrap_or(b""))
                        .arg(crate::privacy::consent::GRANTS_PER_DAY)
                        .arg(crate::privacy::consent::GRANT_WINDOW_SECS);
                }
                pipe
            })
            .await?;
        if values.len() != entries.len() {
            return Err(StoreError::Corrupt(format!(
                "expected {} replies, got {}",
                entries.len(),
                values.len()
            )));
        }
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::Nil => Appended::Duplicate,
                Value::Int(-1) => Appended::KeyMismatch,
                Value::Int(0) => Appended::NewSameConsent,
                Value::Int(-2) => Appended::NewGrantRefused,
                _ => Appended::New,
            })
            .collect())
    }
}
