-- A submitter's job past its deadline that no daemon has taken: deleted (1), so none
-- ever runs it; else 0 (its daemon will answer). KEYS[1] the job stream. ARGV[1] group, ARGV[2] id.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p > 0 then return 0 end
return redis.call('XDEL', KEYS[1], ARGV[2])
