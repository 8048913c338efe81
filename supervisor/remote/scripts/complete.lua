-- Completes jobs this consumer still owns, each in one step: its answer to the reply
-- list (and to submitters of the same idempotency key), a dead letter if asked, XACK,
-- XDEL. XACK alone checks no owner: a daemon that lost its lease must not answer.
-- KEYS[1] the job stream, KEYS[2] the dead-letter stream. ARGV[1] group, ARGV[2] this
-- consumer, ARGV[3] key prefix, ARGV[4] reply TTL (s), ARGV[5] idempotency TTL (s),
-- then 5 per job: id, reply key, idempotency key, answer JSON, dead-letter error ('': none).
-- Returns {ids another consumer owns now, ids no consumer holds}: the second are
-- answered already (by another daemon, or by us before a reply lost on its way back).
local jobs, dead = KEYS[1], KEYS[2]
local group, me, prefix = ARGV[1], ARGV[2], ARGV[3]
local reply_ttl, idem_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local reply_prefix = prefix .. 'reply:'
local function push(key, line)
  if string.sub(key, 1, #reply_prefix) == reply_prefix then  -- an entry names no other key
    redis.call('RPUSH', key, line)
    redis.call('EXPIRE', key, reply_ttl)
  end
end
local taken, gone = {}, {}
for i = 6, #ARGV - 4, 5 do
  local id, reply, idem, answer, burial = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local p = redis.call('XPENDING', jobs, group, id, id, 1)
  if #p == 0 then
    table.insert(gone, id)
  elseif p[1][2] ~= me then
    table.insert(taken, id)
  else
    if burial ~= '' then
      local entry = redis.call('XRANGE', jobs, id, id)
      local fields = #entry > 0 and entry[1][2] or {}
      for _, v in ipairs({'error', burial, 'deliveries', tostring(p[1][4]), 'job', id}) do table.insert(fields, v) end
      redis.call('XADD', dead, '*', unpack(fields))
    end
    local line = id .. ' ' .. answer
    if reply ~= '' then push(reply, line) end
    if idem ~= '' then
      local watch = prefix .. 'watch:' .. id
      for _, r in ipairs(redis.call('SMEMBERS', watch)) do
        if r ~= reply then push(r, line) end
      end
      redis.call('DEL', watch)
      redis.call('SET', prefix .. 'idem:' .. idem, line, 'EX', idem_ttl)
    end
    redis.call('XACK', jobs, group, id)
    redis.call('XDEL', jobs, id)
  end
end
return {taken, gone}
