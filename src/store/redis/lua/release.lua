-- KEYS: lease, outbox, outbox_ready, due (the due set). ARGV: token,
-- contact, outbox_lane ('1' or ''). Only the holder releases; in the
-- outbox lane the contact's timer is cleared and, with nothing queued,
-- its ready mark.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[2])
  if redis.call('XLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[2]) end
end
redis.call('DEL', KEYS[1])
return 1
