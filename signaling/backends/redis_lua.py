"""The Lua scripts of the Redis backend: every membership change is one atomic script.

Keys under the prefix (ARGV[1]): `room:<room>` ZSET peer → join sequence (oldest first); `peers` HASH
peer → "<proc> <room>"; `members:<proc>` SET of that process's peers; `procs` SET of registered
processes; `alive:<proc>` heartbeat key with a TTL; `seq` the join counter. Session resume: `tok:<hash>`
STRING "<peer> <user>" and `tokof` HASH peer → hash while the peer is a member; a parked member has owner
`-` and a deadline (ms) in the `parked` ZSET; `q:<peer>` LIST the frames queued for it. Events go out with PUBLISH
on `ch:<proc>` in the wire format of `signaling.backends.redis.Kind`.
"""

from __future__ import annotations

#: Every script returns {result, channel, message, channel, message, …}: the events no process was
#: subscribed to receive (a process resubscribing after an outage); the backend sends them again.
_LIB = """
local P = ARGV[1]
local missed = {}
local function send(target, message)
  local channel = P .. 'ch:' .. target
  if redis.call('PUBLISH', channel, message) == 0 then
    table.insert(missed, channel)
    table.insert(missed, message)
  end
end
local function done(result)
  table.insert(missed, 1, result)
  return missed
end
local function owner_of(peer)
  local info = redis.call('HGET', P .. 'peers', peer)
  if not info then return nil, nil end
  local sp = string.find(info, ' ', 1, true)
  return string.sub(info, 1, sp - 1), string.sub(info, sp + 1)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- the processes (not `-`, not `skip`) owning the members of `room`
local function owners(room, skip)
  local targets = {}
  for _, m in ipairs(redis.call('ZRANGE', P .. 'room:' .. room, 0, -1)) do
    local o = owner_of(m)
    if o and o ~= '-' and o ~= skip then targets[o] = true end
  end
  return targets
end
local function leave(peer, owner_gone)
  local owner, room = owner_of(peer)
  if not owner then return end
  local rkey = P .. 'room:' .. room
  redis.call('ZREM', rkey, peer)
  redis.call('HDEL', P .. 'peers', peer)
  redis.call('SREM', P .. 'members:' .. owner, peer)
  local h = redis.call('HGET', P .. 'tokof', peer)
  if h then
    redis.call('DEL', P .. 'tok:' .. h)
    redis.call('HDEL', P .. 'tokof', peer)
  end
  redis.call('ZREM', P .. 'parked', peer)
  redis.call('DEL', P .. 'q:' .. peer)
  local targets = owners(room)
  if not owner_gone and owner ~= '-' then targets[owner] = true end
  for t in pairs(targets) do
    send(t, 'L ' .. room .. ' ' .. peer)
  end
end
-- keep `peer` (owned by `owner`) in its room as `-` until `deadline`; tell the room's processes
local function park(peer, owner, room, deadline)
  redis.call('HSET', P .. 'peers', peer, '- ' .. room)
  redis.call('SREM', P .. 'members:' .. owner, peer)
  redis.call('ZADD', P .. 'parked', deadline, peer)
  local targets = owners(room)
  targets[owner] = true
  for t in pairs(targets) do
    send(t, 'M ' .. room .. ' ' .. peer .. ' -')
  end
end
"""

#: ARGV: prefix, peer, proc, room, capacity, user, token hash → 1 joined (events published), 0 room full.
JOIN = (
    _LIB
    + """
local peer, proc, room, cap, user, hash = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local rkey = P .. 'room:' .. room
local _, current = owner_of(peer)
local again = current == room
if not again then
  if redis.call('ZCARD', rkey) >= cap then return done(0) end
  leave(peer)
end
local event = {'A', room, peer, proc, again and '1' or '0'}
local targets = {}
for _, m in ipairs(redis.call('ZRANGE', rkey, 0, -1)) do
  local o = owner_of(m)
  if o and m ~= peer then
    table.insert(event, m .. ':' .. o)
    if o ~= proc and o ~= '-' then targets[o] = true end
  end
end
if not again then
  redis.call('ZADD', rkey, redis.call('INCR', P .. 'seq'), peer)
  redis.call('HSET', P .. 'peers', peer, proc .. ' ' .. room)
  redis.call('SADD', P .. 'members:' .. proc, peer)
  if hash ~= '' and not redis.call('HGET', P .. 'tokof', peer) then
    redis.call('SET', P .. 'tok:' .. hash, peer .. ' ' .. user)
    redis.call('HSET', P .. 'tokof', peer, hash)
  end
  for t in pairs(targets) do
    send(t, 'J ' .. room .. ' ' .. peer .. ' ' .. proc)
  end
end
send(proc, table.concat(event, ' '))
return done(1)
"""
)

#: ARGV: prefix, peer.
LEAVE = _LIB + "leave(ARGV[2])\nreturn done(1)\n"

#: ARGV: prefix, window ms [, proc]: park the members of processes whose heartbeat expired (or of
#: `proc`) for `window` ms (remove those without a resume token, or all with a window of 0); remove the
#: parked members whose deadline passed.
REAP = (
    _LIB
    + """
local window = tonumber(ARGV[2])
local now = now_ms()
local n = 0
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', P .. 'parked', '-inf', now)) do
  leave(peer, true)
  n = n + 1
end
local dead = {}
if ARGV[3] then
  dead = {ARGV[3]}
else
  for _, p in ipairs(redis.call('SMEMBERS', P .. 'procs')) do
    if redis.call('EXISTS', P .. 'alive:' .. p) == 0 then table.insert(dead, p) end
  end
end
for _, d in ipairs(dead) do
  for _, peer in ipairs(redis.call('SMEMBERS', P .. 'members:' .. d)) do
    local _, room = owner_of(peer)
    if room and window > 0 and redis.call('HGET', P .. 'tokof', peer) then
      park(peer, d, room, now + window)
    else
      leave(peer, true)
    end
    n = n + 1
  end
  redis.call('DEL', P .. 'members:' .. d)
  redis.call('SREM', P .. 'procs', d)
  if ARGV[3] then redis.call('DEL', P .. 'alive:' .. d) end
end
return done(n)
"""
)

#: ARGV: prefix, proc, peer, room, peer, room, … → members re-added. Brings this process's members in
#: Redis back to exactly the given set after a reconnect: re-adds the ones Redis lost (a restart
#: without persistence, a write lost in a failover) without events, and removes (with events) the
#: ones Redis still has but the process no longer does (a leave lost in a failover).
RESTORE = (
    _LIB
    + """
local proc = ARGV[2]
local keep = {}
local n = 0
for i = 3, #ARGV, 2 do
  local peer, room = ARGV[i], ARGV[i + 1]
  keep[peer] = true
  if not redis.call('HGET', P .. 'peers', peer) then
    redis.call('ZADD', P .. 'room:' .. room, redis.call('INCR', P .. 'seq'), peer)
    redis.call('HSET', P .. 'peers', peer, proc .. ' ' .. room)
    redis.call('SADD', P .. 'members:' .. proc, peer)
    n = n + 1
  end
end
for _, peer in ipairs(redis.call('SMEMBERS', P .. 'members:' .. proc)) do
  if not keep[peer] then leave(peer) end
end
return done(n)
"""
)

#: ARGV: prefix, proc, room, room, … → rooms described. Publishes `S <room> <member>:<owner>…` for each
#: room on the caller's own channel, so the snapshot arrives in order with the events around it.
SNAPSHOT = (
    _LIB
    + """
local proc = ARGV[2]
for i = 3, #ARGV do
  local room = ARGV[i]
  local event = {'S', room}
  for _, m in ipairs(redis.call('ZRANGE', P .. 'room:' .. room, 0, -1)) do
    local o = owner_of(m)
    if o then table.insert(event, m .. ':' .. o) end
  end
  send(proc, table.concat(event, ' '))
end
return done(#ARGV - 2)
"""
)

#: ARGV: prefix, proc, window ms, peer → 1 parked, 0 not ours (resumed elsewhere already, or gone).
PARK = (
    _LIB
    + """
local proc, peer = ARGV[2], ARGV[4]
local owner, room = owner_of(peer)
if owner ~= proc then return done(0) end
if not redis.call('HGET', P .. 'tokof', peer) then
  leave(peer)
  return done(0)
end
park(peer, proc, room, now_ms() + tonumber(ARGV[3]))
return done(1)
"""
)

#: ARGV: prefix, token hash, user, proc, temp peer → 1 resumed, 0 unknown or expired token, -1 another
#: user's token. On success publishes, on `proc`'s channel in this order, `R <temp> <peer> <room>
#: <member>:<owner>…` then the queued frames (`B`), and `M <room> <peer> <proc>` to the room's
#: processes, itself and the previous owner (which closes a stale connection of the same session).
RESUME = (
    _LIB
    + """
local hash, user, proc, temp = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rec = redis.call('GET', P .. 'tok:' .. hash)
if not rec then return done(0) end
local sp = string.find(rec, ' ', 1, true)
local peer = string.sub(rec, 1, sp - 1)
if string.sub(rec, sp + 1) ~= user then return done(-1) end
local owner, room = owner_of(peer)
if not owner then return done(0) end
redis.call('SREM', P .. 'members:' .. owner, peer)
redis.call('HSET', P .. 'peers', peer, proc .. ' ' .. room)
redis.call('SADD', P .. 'members:' .. proc, peer)
redis.call('ZREM', P .. 'parked', peer)
local event = {'R', temp, peer, room}
for _, m in ipairs(redis.call('ZRANGE', P .. 'room:' .. room, 0, -1)) do
  local o = owner_of(m)
  if o and m ~= peer then table.insert(event, m .. ':' .. o) end
end
send(proc, table.concat(event, ' '))
local queued = redis.call('LRANGE', P .. 'q:' .. peer, 0, -1)
redis.call('DEL', P .. 'q:' .. peer)
if #queued > 0 then
  local lines = {'B'}
  for _, frame in ipairs(queued) do table.insert(lines, peer .. ' ' .. room .. ' ' .. frame) end
  send(proc, table.concat(lines, '\\n'))
end
local targets = owners(room)
targets[proc] = true  -- frames this process holds for the old owner follow the peer here
if owner ~= '-' then targets[owner] = true end
for t in pairs(targets) do
  send(t, 'M ' .. room .. ' ' .. peer .. ' ' .. proc)
end
return done(1)
"""
)

#: ARGV: prefix, peer, room, frame, max → 1 queued or delivered, 0 dropped (queue full), -1 gone. A
#: parked member's frame waits in its queue; one that resumed meanwhile gets it on its new process.
ENQUEUE = (
    _LIB
    + """
local peer, room, frame = ARGV[2], ARGV[3], ARGV[4]
local owner, current = owner_of(peer)
if not owner or current ~= room then return done(-1) end
if owner ~= '-' then
  send(owner, 'D ' .. peer .. ' ' .. room .. ' ' .. frame)
  return done(1)
end
local qkey = P .. 'q:' .. peer
if redis.call('LLEN', qkey) >= tonumber(ARGV[5]) then return done(0) end
redis.call('RPUSH', qkey, frame)
return done(1)
"""
)
