-- Takes over jobs whose owner stopped renewing for a lease. XPENDING IDLE + XCLAIM
-- rather than XAUTOCLAIM: it skips our own (a renewal we could not send is no death)
-- and tells whose lease ran out, for the dead letter's error.
-- KEYS[1] the job stream. ARGV[1] group, ARGV[2] this consumer, ARGV[3] lease (ms),
-- ARGV[4] how many at most, ARGV[5] how long (ms) a consumer holding nothing may stay
-- silent before it is forgotten (a daemon long gone: a live one reads every second).
-- Returns {id, fields, deliveries, previous owner} for each job it claimed.
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c - 1, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if pending == 0 and idle > tonumber(ARGV[5]) and name ~= ARGV[2] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
  end
end
local out = {}
local stale = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+', tonumber(ARGV[4]))
for _, p in ipairs(stale) do
  if p[2] ~= ARGV[2] then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])
    if type(claimed[1]) == 'table' then  -- an entry deleted under its owner is let go
      table.insert(out, {p[1], claimed[1][2], p[4] + 1, p[2]})
    end
  end
end
return out
