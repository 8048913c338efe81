-- Takes over jobs whose owner stopped renewing for a lease. XPENDING IDLE + XCLAIM
-- rather than XAUTOCLAIM: it skips our own (a renewal we could not send is no death)
-- and tells whose lease ran out, for the dead letter's error.
-- KEYS[1] the job stream. ARGV[1] group, ARGV[2] this consumer, ARGV[3] lease (ms),
-- ARGV[4] how many at most. Returns {id, fields, deliveries, previous owner} for each.
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
