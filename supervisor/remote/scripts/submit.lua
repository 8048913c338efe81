-- Adds jobs to the queue, refusing past its length limit, deduplicating by idempotency key.
-- KEYS[1] the job stream. ARGV[1] key prefix pc:{NAME}:, ARGV[2] length limit,
-- ARGV[3] idempotency TTL (s), then 7 per job: task, args, reply key, timeout_ms,
-- retries, deadline (ms from now, by Redis's clock), idempotency key.
-- Each job's result: its new id; 'busy'; '=ID' (a job of the same key still runs: we
-- watch it); or '!ID ANSWER' (the same key's answer, already there).
local jobs, prefix = KEYS[1], ARGV[1]
local limit, idem_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local length = redis.call('XLEN', jobs)
local out = {}
for i = 4, #ARGV - 6, 7 do
  local task, args, reply, timeout, retries, deadline, idem =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local known = idem ~= '' and redis.call('GET', prefix .. 'idem:' .. idem)
  if known and string.sub(known, 1, 1) == '=' then
    local id = string.sub(known, 2)
    redis.call('SADD', prefix .. 'watch:' .. id, reply)
    redis.call('EXPIRE', prefix .. 'watch:' .. id, idem_ttl)
    table.insert(out, known)
  elseif known then
    table.insert(out, '!' .. known)
  elseif length >= limit then
    table.insert(out, 'busy')
  else
    local fields = {'task', task, 'args', args, 'reply', reply}
    if timeout ~= '0' then table.insert(fields, 'timeout_ms'); table.insert(fields, timeout) end
    if retries ~= '0' then table.insert(fields, 'retries'); table.insert(fields, retries) end
    if deadline ~= '0' then table.insert(fields, 'deadline'); table.insert(fields, tostring(now + tonumber(deadline))) end
    if idem ~= '' then table.insert(fields, 'idem'); table.insert(fields, idem) end
    local id = redis.call('XADD', jobs, '*', unpack(fields))
    if idem ~= '' then redis.call('SET', prefix .. 'idem:' .. idem, '=' .. id, 'EX', idem_ttl) end
    length = length + 1
    table.insert(out, id)
  end
end
return out
