-- GCRA in one atomic step. KEYS[1]: the key's TAT. ARGV[1]: nanoseconds per request;
-- ARGV[2]: the tolerance (burst x interval) in nanoseconds. Times are microseconds from Redis's own
-- clock, so every weir instance decides against the same time. Returns
-- {allowed, remaining, retry_after_us, reset_after_us}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1]) / 1000
local tolerance = tonumber(ARGV[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local next_tat = tat + interval
local ahead = next_tat - now
if ahead > tolerance then
  return {0, 0, math.ceil(ahead - tolerance), math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / interval), 0, math.ceil(ahead)}
