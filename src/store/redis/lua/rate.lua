-- KEYS: rate (a rate key). ARGV: interval_us (µs), burst, want (the
-- slots wanted). GCRA on the server's clock (µs), so instances with
-- skewed clocks agree. Answers {slots taken, 0}, or {0, ms to wait for
-- one slot (rounded up)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = math.floor((now + burst * interval - tat) / interval)
if free < 1 then return {0, math.ceil((tat - now - (burst - 1) * interval) / 1000)} end
local got = math.min(want, free)
tat = tat + got * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {got, 0}
