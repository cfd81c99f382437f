-- KEYS: leases (of one shard, any number). ARGV: lease_ms, then tokens
-- (the holder's token of each lease). Extends each lease its holder
-- still has; answers 1 or 0 each.
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
