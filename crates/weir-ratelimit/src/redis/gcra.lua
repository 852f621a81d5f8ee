-- GCRA in one atomic step, for one request or a lease of several. KEYS[1]: the key's TAT.
-- ARGV[1]: nanoseconds per request; ARGV[2]: the tolerance (burst x interval) in nanoseconds;
-- ARGV[3]: how many requests to take at most (1 when absent). As many are granted as the bucket
-- holds, up to that many. Times are microseconds from Redis's own clock, so every weir instance
-- decides against the same time. Returns {granted, remaining, retry_after_us, reset_after_us}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1]) / 1000
local tolerance = tonumber(ARGV[2]) / 1000
local wanted = math.max(1, math.floor(tonumber(ARGV[3] or '1') or 1))
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local ahead = tat + interval - now
if ahead > tolerance then
  return {0, 0, math.ceil(ahead - tolerance), math.ceil(tat - now)}
end
local granted = math.max(1, math.min(wanted, math.floor((tolerance - (tat - now)) / interval)))
local next_tat = tat + granted * interval
ahead = next_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {granted, math.max(0, math.floor((tolerance - ahead) / interval)), 0, math.ceil(ahead)}
