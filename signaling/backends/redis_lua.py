"""The Lua scripts of the Redis backend: every membership change is one atomic script.

Keys under the prefix (ARGV[1]): `room:<room>` ZSET peer → join sequence (oldest first); `peers` HASH
peer → "<proc> <room>"; `members:<proc>` SET of that process's peers; `procs` SET of registered
processes; `alive:<proc>` heartbeat key with a TTL; `seq` the join counter. Events go out with PUBLISH
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
local function leave(peer, owner_gone)
  local owner, room = owner_of(peer)
  if not owner then return end
  local rkey = P .. 'room:' .. room
  redis.call('ZREM', rkey, peer)
  redis.call('HDEL', P .. 'peers', peer)
  redis.call('SREM', P .. 'members:' .. owner, peer)
  local targets = {}
  if not owner_gone then targets[owner] = true end
  for _, m in ipairs(redis.call('ZRANGE', rkey, 0, -1)) do
    local o = owner_of(m)
    if o then targets[o] = true end
  end
  for t in pairs(targets) do
    send(t, 'L ' .. room .. ' ' .. peer)
  end
end
"""

#: ARGV: prefix, peer, proc, room, capacity → 1 joined (events published), 0 room full.
JOIN = (
    _LIB
    + """
local peer, proc, room, cap = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
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
    if o ~= proc then targets[o] = true end
  end
end
if not again then
  redis.call('ZADD', rkey, redis.call('INCR', P .. 'seq'), peer)
  redis.call('HSET', P .. 'peers', peer, proc .. ' ' .. room)
  redis.call('SADD', P .. 'members:' .. proc, peer)
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

#: ARGV: prefix [, proc]: remove the members of processes whose heartbeat expired (or of `proc`).
REAP = (
    _LIB
    + """
local dead = {}
if ARGV[2] then
  dead = {ARGV[2]}
else
  for _, p in ipairs(redis.call('SMEMBERS', P .. 'procs')) do
    if redis.call('EXISTS', P .. 'alive:' .. p) == 0 then table.insert(dead, p) end
  end
end
local n = 0
for _, d in ipairs(dead) do
  for _, peer in ipairs(redis.call('SMEMBERS', P .. 'members:' .. d)) do
    leave(peer, true)
    n = n + 1
  end
  redis.call('DEL', P .. 'members:' .. d)
  redis.call('SREM', P .. 'procs', d)
  if ARGV[2] then redis.call('DEL', P .. 'alive:' .. d) end
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
