-- KEYS: data_key (a contact's), data_key_was (its previous wrapping).
-- ARGV: old (the stored key), new (its replacement), keep_s (how long the
-- previous wrapping is kept, s).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
  return 1
end
return 0
