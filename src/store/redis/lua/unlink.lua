-- KEYS: link (an alias's). ARGV: canonical (the canonical contact).
-- Deletes the link if it still names that contact.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
