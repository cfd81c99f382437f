-- KEYS: owners (the shard's hash: contact -> business), owned (the shard's
-- hash: business -> how many of its contacts are on record).
-- ARGV: contact, business. Records the contact as the business's unless
-- a business is recorded for it already; answers 1 when it recorded it.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  return 1
end
return 0
