-- KEYS: campaign (its record hash), then its audience's keys: queue,
-- members, old_list ([`super::audience`]). ARGV: to (the new status),
-- then from (the statuses it may move from). Answers 1 when it moved. A
-- cancelled campaign's audience left is dropped: its numbers go.
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
