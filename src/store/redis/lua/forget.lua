-- KEYS: owners (the shard's hash: contact -> business), owned (the shard's
-- hash: business -> how many of its contacts are on record).
-- ARGV: contact. Forgets the contact's owner and counts it out; answers
-- 1 when there was one.
local business = redis.call('HGET', KEYS[1], ARGV[1])
if not business then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[2], business, -1) <= 0 then
  redis.call('HDEL', KEYS[2], business)
end
return 1
