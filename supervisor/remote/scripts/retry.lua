-- Puts a dead letter back on the queue as a new job (without its deadline) and
-- deletes the letter. KEYS[1] the job stream, KEYS[2] the dead-letter stream.
-- ARGV[1] the letter's id, ARGV[2] a reply key for its answer ('': the old submitter's),
-- ARGV[3] key prefix, ARGV[4] idempotency TTL (s). Returns the new id, or false.
local e = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #e == 0 then return false end
local f, fields, idem = e[1][2], {}, nil
local dropped = {error = true, deliveries = true, job = true, deadline = true}
for i = 1, #f - 1, 2 do
  local k, v = f[i], f[i + 1]
  if k == 'reply' and ARGV[2] ~= '' then v = ARGV[2] end
  if k == 'idem' then idem = v end
  if not dropped[k] then table.insert(fields, k); table.insert(fields, v) end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
if idem then redis.call('SET', ARGV[3] .. 'idem:' .. idem, '=' .. id, 'EX', tonumber(ARGV[4])) end
redis.call('XDEL', KEYS[2], ARGV[1])
return id
