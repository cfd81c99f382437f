-- KEYS: history (a contact's), history_index (its shard's), held (the
-- contact's legal hold mark). ARGV: cutoff_ms (Unix ms), contact. Drops
-- the entries written before the cutoff and moves the contact's place in
-- the index to its oldest entry left. A held contact keeps everything:
-- its place moves to the cutoff, so this pass does not look again.
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[2])
  return 1
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', tonumber(string.match(first[1][1], '^(%d+)')), ARGV[2])
return 1
