-- Replaces a record of a kind only if it is still what the caller read.
-- KEYS[1]: the kind's hash.
-- ARGV[1]: the record's id; ARGV[2]: "1" when a record is expected, "0"
-- when none is; ARGV[3]: the expected record; ARGV[4]: the new record.
-- Returns 1 when replaced, 0 when the record had changed.
local now = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if now ~= ARGV[3] then return 0 end
elseif now then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
