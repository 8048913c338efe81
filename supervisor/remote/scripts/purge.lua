-- Drops up to a count of jobs no daemon has taken (those past the group's last
-- delivered id), answering each, and, once none is left, every dead letter.
-- KEYS[1] the job stream, KEYS[2] the dead-letter stream. ARGV[1] group, ARGV[2] key
-- prefix, ARGV[3] reply TTL (s), ARGV[4] count, ARGV[5] the answer JSON.
-- Returns {jobs dropped, dead letters dropped}.
local last = '0-0'
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, delivered
  for i = 1, #g - 1, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then delivered = g[i + 1] end
  end
  if name == ARGV[1] then last = delivered end
end
local reply_prefix = ARGV[2] .. 'reply:'
local entries = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', tonumber(ARGV[4]))
for _, e in ipairs(entries) do
  local f = e[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'reply' and string.sub(f[i + 1], 1, #reply_prefix) == reply_prefix then
      redis.call('RPUSH', f[i + 1], e[1] .. ' ' .. ARGV[5])
      redis.call('EXPIRE', f[i + 1], tonumber(ARGV[3]))
    elseif f[i] == 'idem' then
      redis.call('DEL', ARGV[2] .. 'idem:' .. f[i + 1])
    end
  end
  redis.call('XDEL', KEYS[1], e[1])
end
local dead = 0
if #entries < tonumber(ARGV[4]) then
  dead = redis.call('XLEN', KEYS[2])
  redis.call('DEL', KEYS[2])
end
return {#entries, dead}
