-- Renews this consumer's leases: resets the idle time of each job it still owns (JUSTID
-- keeps the delivery count). KEYS[1] the job stream. ARGV[1] group, ARGV[2] this
-- consumer, then ids. Returns the ids it no longer owns.
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 0 or p[1][2] ~= ARGV[2] then
    table.insert(lost, ARGV[i])
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
return lost
