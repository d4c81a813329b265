"""
The shared phonebook: an L{punchd.interfaces.IPhonebook} kept in Redis, so
that several stage managers, on one machine or several, share it.

Each entry is one Redis string, C{PREFIX e:NAME}, in a packed form (see
L{encodeBody}) of some 80 bytes, with a key TTL: Redis itself forgets an
entry nobody refreshes, even with no stage manager left to sweep.  A sorted
set, C{PREFIX seen}, holds every name by the time it was last seen: the
entries to expire are at its front, as in the in-memory
L{punchd.phonebook.Phonebook}, and its size says when the phonebook is
full, when a new name is refused (L{punchd.phonebook.PhonebookFull}) and no
entry forgotten.  The names each source holds are counted in small hashes
(see L{sourceKey}): a field for each source IP, and one for each source
address and port, each hash with the entries' key TTL from the last
registration counted in it, so that counts die with the entries they count;
a registration past the quotas is refused
(L{punchd.phonebook.SourceQuotaReached}).  Every change is one Lua script,
so that a registration, with its checks and counts, is atomic however many
stage managers write at once.

The key TTL is the phonebook's TTL and a few seconds more: a stage manager
sweeps an entry out once its TTL has passed, so that the entry can be
logged and counted, and a lookup ignores an entry past its TTL, as in
memory; the key's own expiry is the backstop.  An entry that Redis let
expire so, with no sweep for the grace period, is still counted against its
source until the hash of its count expires, a key TTL after the last
registration counted in it.  Stage managers' clocks must agree (NTP) to within a
small part of the TTL.
"""

import json
import struct

from zope.interface import implementer

from punchd.interfaces import IPhonebook
from punchd.messages import encodeBehaviour, readBehaviour
from punchd.phonebook import (
    NAMES_PER_ADDRESS,
    NAMES_PER_IP,
    Entry,
    PhonebookFull,
    SourceQuotaReached,
    _at,
    checkBounds,
    _pack,
)

#: Seconds an entry's Redis key outlives the phonebook's TTL: the sweeps of
#: the stage managers remove it first, and log it.
KEY_GRACE = 5.0

#: The most entries one sweep removes.
SWEEP_BATCH = 1000

_SEEN = struct.Struct("!d")
_PROVEN = 1
_UNPACKED = 2
# The NAT's behaviour is in the flags' bits 2-5: 0 for none, otherwise 1 +
# 3 * mapping + filtering, each numbered as in NAT-BEHAVIOUR.
_NAT_SHIFT = 2

#: How many hashes the counts of names by source are spread over: some
#: eight IPs each at a million entries, small enough for Redis to keep each
#: hash in its compact form (a listpack, under 128 fields).
SOURCE_BUCKETS = 131071

# Where an entry's source is counted, read from its value (as stored, the
# secret field first; see encodeBody and sourceKey): the key of the hash
# holding its counts, then the fields of its IP's count and of its
# address's there.
SOURCE = """
-- Where the byte of flags is, past the secrets' field.
local function flagsAt(value)
  local n = string.byte(value, 1)
  if n == 0 then
    return 2
  elseif n >= 128 then
    return 2 + 2 * (n - 129)
  end
  return 1 + n
end

local function source(prefix, value)
  local at = flagsAt(value)
  local flags = string.byte(value, at)
  at = at + 9
  at = at + 1 + string.byte(value, at)
  local count = string.byte(value, at)
  at = at + 1
  for i = 1, count do
    at = at + 1 + string.byte(value, at)
  end
  local packed
  if flags % 4 >= 2 then
    local unpacked = cjson.decode(string.sub(value, at))
    if type(unpacked[3]) ~= 'string' then
      local address = unpacked[1]
      return prefix .. 'S:' .. tostring(address[1]), 'n', 'p' .. tostring(address[2])
    end
    packed = string.gsub(unpacked[3], '..', function(x) return string.char(tonumber(x, 16)) end)
  else
    packed = string.sub(value, at + 1, at + string.byte(value, at))
  end
  local ip = string.sub(packed, 1, #packed - 2)
  local h = 0
  for i = 1, #ip do
    h = (h * 257 + string.byte(ip, i)) % """ + str(SOURCE_BUCKETS) + """
  end
  return prefix .. 's:' .. h, ip, packed
end

local function uncount(key, ipField, addressField)
  if redis.call('HINCRBY', key, addressField, -1) <= 0 then
    redis.call('HDEL', key, addressField)
  end
  if redis.call('HINCRBY', key, ipField, -1) <= 0 then
    redis.call('HDEL', key, ipField)
  end
end
"""

# KEYS: the entry's key, the sorted set of names by last seen, the key of
# its address of the other family (see ALSO).
# ARGV: name, the entry's body (encodeBody), its secret field or "" to keep
# the one it has, now, the key's TTL in milliseconds, the most entries,
# the prefix of the phonebook's keys, the most names per address and port,
# the most per IP.
# Returns: 0 and the entry as it was (or nil), then the number of names in
# the sorted set, then its address of the other family (or nil); or,
# refused, 1 (the phonebook is full), 2 (the address
# holds as many names as it may) or 3 (the IP does).
REGISTER = SOURCE + """
local old = redis.call('GET', KEYS[1])
local secret = ARGV[3]
if old then
  if secret == '' then
    -- The secrets' field: a byte of their length plus one, with 128 added
    -- when the previous secret follows the secret.
    local n = string.byte(old, 1)
    local length = 1
    if n >= 128 then
      length = 1 + 2 * (n - 129)
    elseif n > 0 then
      length = n
    end
    secret = string.sub(old, 1, length)
  end
elseif not redis.call('ZSCORE', KEYS[2], ARGV[1])
    and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return {1}
end
if secret == '' then secret = '\\0' end
local value = secret .. ARGV[2]
local key, ipField, addressField = source(ARGV[7], value)
local oldKey, oldIP, oldAddress = false, false, false
if old then
  oldKey, oldIP, oldAddress = source(ARGV[7], old)
end
if oldKey ~= key or oldAddress ~= addressField then
  local counts = redis.call('HMGET', key, addressField, ipField)
  local perAddress, perIP = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
  if oldKey == key and oldIP == ipField then perIP = perIP - 1 end
  if perAddress >= tonumber(ARGV[8]) then return {2} end
  if perIP >= tonumber(ARGV[9]) then return {3} end
  if oldKey then uncount(oldKey, oldIP, oldAddress) end
  redis.call('HINCRBY', key, addressField, 1)
  redis.call('HINCRBY', key, ipField, 1)
end
redis.call('PEXPIRE', key, ARGV[5])
redis.call('SET', KEYS[1], value, 'PX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {0, old, redis.call('ZCARD', KEYS[2]), redis.call('GET', KEYS[3])}
"""

# KEYS: the entry's key, the key of its address of the other family.
# ARGV: that address and until when it holds (JSON), the key's TTL in
# milliseconds.
# Returns: 1 when the entry is there and the address was recorded, else 0.
ALSO = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the entry's key, the sorted set, the key of its address of the
# other family.  ARGV: the name, the prefix of the phonebook's keys.
# Returns: the entry's value (or nil), the number of names left.
REMOVE = SOURCE + """
local old = redis.call('GET', KEYS[1])
if old then
  uncount(source(ARGV[2], old))
  redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return {old, redis.call('ZCARD', KEYS[2])}
"""

# KEYS: the entry's key, the sorted set.  ARGV: the name, now, now as the
# packed double of an entry's value, the key's TTL in milliseconds, the
# phonebook's TTL, the prefix of the phonebook's keys, this stage manager's
# id, then the key of the hash counting the refresh's source and its
# address's field there (see sourceKey).
# Returns: 1 when the entry was kept, 0 when it is gone, past its TTL, at
# another address, or held by another stage manager.
REFRESH = SOURCE + """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local key, ipField, addressField = source(ARGV[6], value)
if key ~= ARGV[8] or addressField ~= ARGV[9] then return 0 end
local at = flagsAt(value)
local lastSeen = struct.unpack('>d', string.sub(value, at + 1, at + 8))
if lastSeen + tonumber(ARGV[5]) <= tonumber(ARGV[2]) then return 0 end
local length = string.byte(value, at + 9)
if string.sub(value, at + 10, at + 9 + length) ~= ARGV[7] then return 0 end
local kept = string.sub(value, 1, at) .. ARGV[3] .. string.sub(value, at + 9)
redis.call('SET', KEYS[1], kept, 'PX', ARGV[4])
redis.call('PEXPIRE', key, ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: the sorted set.  ARGV: the deadline (entries last seen at or before
# it expire), the most to remove, the prefix of the phonebook's keys.
# Returns: the number of names left, then name and value of each entry
# removed, oldest first (a value is nil when Redis had already let the key
# expire).
EXPIRE = SOURCE + """
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {false}
for i, name in ipairs(names) do
  local key = ARGV[3] .. 'e:' .. name
  local value = redis.call('GET', key)
  out[#out + 1] = name
  out[#out + 1] = value
  if value then
    uncount(source(ARGV[3], value))
    redis.call('DEL', key)
  end
end
if #names > 0 then redis.call('ZREM', KEYS[1], unpack(names)) end
out[1] = redis.call('ZCARD', KEYS[1])
return out
"""

# KEYS: the hash of a source's counts.  ARGV: the field of the address's
# count, of the IP's.
# Returns: the names the address holds, and the IP.
HELD = """
return redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2])
"""

#: The phonebook's scripts, by name.
SCRIPTS = {
    "register": REGISTER,
    "also": ALSO,
    "refresh": REFRESH,
    "remove": REMOVE,
    "expire": EXPIRE,
    "held": HELD,
}


class SharedEntry(Entry):
    """
    An L{Entry} of the shared phonebook.

    @ivar holder: The id of the stage manager the peer registered with
        last: the one its NAT lets in, which must send its introductions.
    @type holder: L{str}
    """

    __slots__ = ("holder",)

    def copy(self):
        copy = super().copy()
        copy.holder = self.holder
        return copy


def secretField(secret, previous=None):
    """
    The secrets as an entry's value begins with them, as
    L{punchd.phonebook} packs them: a byte giving the secret's length plus
    one (0 for none), with its high bit set when the previous secret
    follows, then the secret and the previous secret.
    """
    if secret is None:
        return b"\x00"
    if previous is None:
        return bytes((len(secret) + 1,)) + secret
    return bytes((0x80 | (len(secret) + 1),)) + secret + previous


def _names(names):
    out = [bytes((len(names),))]
    for name in names:
        raw = name.encode("utf-8")
        out.append(bytes((len(raw),)) + raw)
    return b"".join(out)


def encodeBody(proven, lastSeen, holder, wants, address, localAddresses, nat=None):
    """
    An entry's value after its secret field (L{secretField}): a byte of
    flags (proven; addresses unpacked; the NAT's behaviour), the time last
    seen (a double), the holder's id and the wanted names (each after a
    byte giving its length, the names after a byte giving their count),
    then the address and the local addresses packed as L{punchd.phonebook}
    packs them, or as JSON when one does not pack (with the address packed,
    in hex, when it does).
    """
    place = Entry("", address, localAddresses, (), 0)._place
    flags = _PROVEN if proven else 0
    if nat is not None:
        mapping, filtering = encodeBehaviour(nat)
        flags |= (1 + 3 * mapping + filtering) << _NAT_SHIFT
    if type(place) is bytes:
        tail = place[1:]
    else:
        flags |= _UNPACKED
        # The address packed, in hex, when it packs and a local address
        # does not: the scripts count its source by it (see sourceKey).
        packed = _pack(address)
        unpacked = [list(address), [list(a) for a in localAddresses]]
        if type(packed) is bytes:
            unpacked.append(packed.hex())
        tail = json.dumps(unpacked).encode()
    raw = holder.encode("ascii")
    return b"".join(
        (bytes((flags,)), _SEEN.pack(lastSeen), bytes((len(raw),)), raw, _names(wants), tail)
    )


def decodeEntry(name, value, second=None):
    """
    The L{SharedEntry} C{name} whose Redis value is C{value}, with the
    address of the other family whose value (see L{RedisPhonebook.alsoAt})
    is C{second}, if any.
    """
    n = _at(value)
    flags = value[n]
    (lastSeen,) = _SEEN.unpack_from(value, n + 1)
    at = n + 9
    length = value[at]
    holder = value[at + 1 : at + 1 + length].decode("ascii")
    at += 1 + length
    wants = []
    for _ in range(value[at]):
        length = value[at + 1]
        wants.append(value[at + 2 : at + 2 + length].decode("utf-8"))
        at += 1 + length
    at += 1
    entry = SharedEntry.__new__(SharedEntry)
    entry.name = name
    if flags & _UNPACKED:
        address, localAddresses = json.loads(value[at:])[:2]
        secrets = Entry("", ("0.0.0.0", 0), (), (), 0)
        secrets._place = value[:n] + secrets._place[1:]
        entry._place = (
            secrets.secret,
            tuple(address),
            tuple(tuple(a) for a in localAddresses),
            secrets.previousSecret,
        )
    else:
        entry._place = value[:n] + value[at:]
    entry._wants = wants[0] if len(wants) == 1 else tuple(wants)
    entry.lastSeen = lastSeen
    entry.proven = bool(flags & _PROVEN)
    code = flags >> _NAT_SHIFT
    entry.nat = readBehaviour(bytes(divmod(code - 1, 3)))[0] if code else None
    entry.holder = holder
    if second is None:
        entry.second = None
    else:
        host, port, until = json.loads(second)
        entry.second = ((host, port), until)
    return entry


def sourceKey(prefix, address):
    """
    Where the names of the source C{address} are counted, as the scripts
    find it from an entry's value (see C{SOURCE}).  An address that packs
    is counted in one of L{SOURCE_BUCKETS} hashes, C{PREFIX s:BUCKET}
    (chosen by its packed IP), under its packed IP and its packed IP and
    port; one that does not is counted in a hash of its own host,
    C{PREFIX S:HOST}, under C{n} and C{p} and the port.

    @return: The key of the hash, the field of its IP's count, the field
        of its address's.
    """
    packed = _pack(address)
    if type(packed) is bytes:
        ip = packed[:-2]
        bucket = 0
        for byte in ip:
            bucket = (bucket * 257 + byte) % SOURCE_BUCKETS
        return b"%ss:%d" % (prefix.encode(), bucket), ip, packed
    host, port = address
    return prefix.encode() + b"S:" + str(host).encode("utf-8"), b"n", b"p%d" % (port,)


def _decodeOptional(name, value):
    return None if value is None else decodeEntry(name, value)


@implementer(IPhonebook)
class RedisPhonebook:
    """
    The phonebook in Redis, shared by every stage manager that uses the
    same Redis database and prefix.

    Every method returns a L{Deferred}.  When Redis cannot be reached, it
    fails with L{punchd.redisstore.StoreUnavailable}, an
    L{punchd.messages.InvalidMessage} that the stage manager answers as an
    error (500, try again), except L{expire}, which then removes nothing:
    Redis's key TTLs expire the entries meanwhile.

    @ivar holder: This stage manager's id, recorded in the entries it
        registers.
    """

    def __init__(
        self,
        store,
        maxEntries,
        ttl,
        holder,
        prefix="punchd:",
        namesPerAddress=NAMES_PER_ADDRESS,
        namesPerIP=NAMES_PER_IP,
    ):
        """
        @param store: The L{punchd.redisstore.RedisStore}.
        @param holder: This stage manager's id: a short ASCII string.
        @param prefix: What every key of this phonebook begins with.
        @param namesPerAddress: The most names one source address and port
            may hold.
        @param namesPerIP: The most names one source IP may hold.
        """
        checkBounds(maxEntries, ttl, namesPerAddress, namesPerIP)
        self.store = store
        self.maxEntries = maxEntries
        self.ttl = ttl
        self.holder = holder
        self.namesPerAddress = namesPerAddress
        self.namesPerIP = namesPerIP
        self._prefix = prefix
        self._entryPrefix = prefix + "e:"
        self._secondPrefix = prefix + "o:"
        self._seen = prefix + "seen"
        self._keyTTL = str(int((ttl + KEY_GRACE) * 1000))
        self._size = 0
        store.addScripts(SCRIPTS)

    def metricFamilies(self):
        """
        The store's figures for L{punchd.metrics}: C{(name, kind, help,
        value)} each.
        """
        store = self.store
        return [
            ("punchd_redis_up", "gauge", "Whether Redis can be reached now (1) or not (0).",
             int(store.available)),
            ("punchd_redis_outages_total", "counter", "Times Redis went out of reach.",
             store.outages),
            ("punchd_redis_refused_total", "counter",
             "Phonebook requests refused while Redis was out of reach.", store.refused),
            ("punchd_relayed_introductions_total", "counter",
             "Introductions published for another stage manager to send.",
             store.stats["relayedOut"]),
            ("punchd_relayed_sent_total", "counter",
             "Introductions another stage manager published that this one sent.",
             store.stats["relayedIn"]),
            ("punchd_relayed_unheard_total", "counter",
             "Introductions for a stage manager that was not listening, sent from here.",
             store.stats["relayedUnheard"]),
        ]

    def __len__(self):
        """
        The number of entries, as Redis last said (with every change this
        stage manager makes, and at each sweep).
        """
        return self._size

    def lookup(self, name, now):
        d = self.store.call("MGET", self._entryPrefix + name, self._secondPrefix + name)
        return d.addCallback(self._found, name, now)

    def _found(self, values, name, now):
        value, second = values
        if value is None:
            return None
        entry = decodeEntry(name, value, second)
        if entry.lastSeen + self.ttl <= now:
            return None
        return entry

    def alsoAt(self, name, address, now):
        """
        Record C{address} as C{name}'s address of the other family, as
        L{punchd.phonebook.Phonebook.alsoAt} does, in a key of its own that
        expires with the TTL.

        @return: A L{Deferred} of whether the entry was there.
        """
        second = json.dumps([address[0], address[1], now + self.ttl]).encode()
        d = self.store.script(
            "also",
            (self._entryPrefix + name, self._secondPrefix + name),
            (second, str(int(self.ttl * 1000))),
        )
        return d.addCallback(lambda recorded: recorded == 1)

    def register(
        self, name, address, localAddresses, wants, now, proven=False, secret=None,
        previousSecret=None, nat=None,
    ):
        """
        Add C{name} or update it in place, as
        L{punchd.phonebook.Phonebook.register} does.

        @return: A L{Deferred} of C{(entry, previous)}, which fails with
            L{PhonebookFull} when C{name} is new and the phonebook full,
            with L{SourceQuotaReached} when the source address and port,
            or its IP, holds as many names as it may.
        """
        body = encodeBody(proven, now, self.holder, wants, address, localAddresses, nat)
        field = b"" if secret is None else secretField(secret, previousSecret)
        d = self.store.script(
            "register",
            (self._entryPrefix + name, self._seen, self._secondPrefix + name),
            (
                name,
                body,
                field,
                repr(now),
                self._keyTTL,
                str(self.maxEntries),
                self._prefix,
                str(self.namesPerAddress),
                str(self.namesPerIP),
            ),
        )
        return d.addCallback(self._registered, name, body, field)

    def _registered(self, reply, name, body, field):
        refused = int(reply[0])
        if refused == 1:
            raise PhonebookFull(f"the phonebook holds {self.maxEntries} entries")
        if refused == 2:
            raise SourceQuotaReached("address", self.namesPerAddress)
        if refused == 3:
            raise SourceQuotaReached("IP", self.namesPerIP)
        _, old, self._size, second = reply
        if not field:
            field = old[: _at(old)] if old is not None else b"\x00"
        entry = decodeEntry(name, field + body, second)
        previous = None if old is None else decodeEntry(name, old)
        return entry, previous

    def refresh(self, name, address, now):
        """
        Keep C{name} another TTL from C{now}, with nothing else changed, as
        L{punchd.phonebook.Phonebook.refresh} does, if it is also held by
        this stage manager: a peer that moved to another registers there
        in full, and a refresh of the one it left keeps nothing.  One
        script, one round trip.

        @return: A L{Deferred} of whether it was kept.
        """
        key, _, addressField = sourceKey(self._prefix, address)
        d = self.store.script(
            "refresh",
            (self._entryPrefix + name, self._seen),
            (
                name,
                repr(now),
                _SEEN.pack(now),
                self._keyTTL,
                repr(self.ttl),
                self._prefix,
                self.holder,
                key,
                addressField,
            ),
        )
        return d.addCallback(lambda kept: kept == 1)

    def held(self, address):
        """
        How many names the source C{address} holds, and its IP, as
        L{punchd.phonebook.Phonebook.held} says.

        @return: A L{Deferred} of a 2-tuple.
        """
        key, ipField, addressField = sourceKey(self._prefix, address)
        d = self.store.script("held", (key,), (addressField, ipField))
        return d.addCallback(lambda counts: tuple(int(c or 0) for c in counts))

    def remove(self, name):
        d = self.store.script(
            "remove",
            (self._entryPrefix + name, self._seen, self._secondPrefix + name),
            (name, self._prefix),
        )
        return d.addCallback(self._removed, name)

    def _removed(self, reply, name):
        old, self._size = reply
        return _decodeOptional(name, old)

    def expire(self, now):
        if not self.store.available:
            return []
        d = self.store.script(
            "expire", (self._seen,), (repr(now - self.ttl), str(SWEEP_BATCH), self._prefix)
        )
        return d.addCallbacks(self._expired, self._notExpired)

    def _expired(self, reply):
        self._size = reply[0]
        expired = []
        for i in range(1, len(reply), 2):
            if reply[i + 1] is not None:
                expired.append(decodeEntry(reply[i].decode("utf-8"), reply[i + 1]))
        return expired

    def _notExpired(self, failure):
        from punchd.redisstore import StoreUnavailable

        failure.trap(StoreUnavailable)
        return []
