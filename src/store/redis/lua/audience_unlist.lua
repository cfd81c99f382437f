-- KEYS: queue, members, old_list. ARGV: contact (a contact's key).
-- Removes the contact's entry (by key: O(1)); answers 1 when there was
-- one.
-- (Runs after audience_migrate.lua, prepended to it.)
return redis.call('HDEL', KEYS[2], ARGV[1])
