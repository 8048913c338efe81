-- Moves up to a count of answers from a submitter's reply list to its taken list, and
-- returns the taken list whole. Answers leave the taken list only once the submitter
-- has them (an LTRIM sent with its next read), so a connection lost on the way, or a
-- Redis that dies after the move, loses none. KEYS[1] the reply list, KEYS[2] the
-- taken list. ARGV[1] how many to move, ARGV[2] the lists' TTL (s).
for _ = 1, tonumber(ARGV[1]) do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') then break end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return redis.call('LRANGE', KEYS[2], 0, -1)
