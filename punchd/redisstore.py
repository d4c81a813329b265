"""
The stage manager's connection to Redis (C{punch-server --redis URL}): one
connection for commands and scripts, one for the channels it listens on,
each kept up by a L{ClientService} that reconnects by itself.

The client is txredisapi's protocol (C{pip install 'punchd[redis]'}), used
alone: the connection pool txredisapi wraps around it waits, with no end,
for a connection while Redis is down, and here a command must fail at once
instead, so that a registration is refused plainly rather than held.
C{bench/redisclient.py} measured the choice.

While Redis cannot be reached, every command fails with
L{StoreUnavailable}; the log says when Redis goes and when it comes back,
once each, and L{available} and L{outages} say it to the metrics.
"""

from collections import Counter
from urllib.parse import parse_qs, urlsplit

from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from punchd import messages

#: The STUN error code a registration is refused with while the phonebook
#: cannot be reached: 500, Server Error, "try again" (RFC 8489, 14.8).
SERVER_ERROR = 500

#: Seconds a command may wait for its answer before the connection is
#: taken for dead.
REPLY_TIMEOUT = 2.0

#: The most seconds between two attempts to reconnect.
MAX_RETRY_DELAY = 2.0


class StoreUnavailable(messages.InvalidMessage):
    """
    Redis cannot be reached: the request is refused with a
    L{SERVER_ERROR}, and may be tried again.
    """

    def __init__(self, reason):
        super().__init__(reason, SERVER_ERROR)


class RedisAddress:
    """
    Where Redis is, from a C{--redis} URL.

    @ivar path: The unix socket, or L{None}.
    @ivar host: The host, or L{None} for a unix socket.
    @ivar port: The TCP port.
    @ivar db: The database number.
    """

    def __init__(self, url, host=None, port=6379, path=None, db=0):
        self.url = url
        self.host = host
        self.port = port
        self.path = path
        self.db = db

    def __eq__(self, other):
        return isinstance(other, RedisAddress) and vars(self) == vars(other)

    def __repr__(self):
        return f"RedisAddress({self.url!r})"

    def endpoint(self, reactor, timeout=5):
        if self.path is not None:
            return UNIXClientEndpoint(reactor, self.path, timeout=timeout)
        if ":" in self.host:
            return TCP6ClientEndpoint(reactor, self.host, self.port, timeout=timeout)
        return TCP4ClientEndpoint(reactor, self.host, self.port, timeout=timeout)


def parseURL(url):
    """
    Read a C{--redis} URL: C{redis://HOST[:PORT][/DB]} (port 6379 and
    database 0 by default; an IPv6 address in brackets) or
    C{unix:///PATH[?db=DB]}.

    @return: A L{RedisAddress}.
    @raise ValueError: Saying what is wrong with it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{url!r} is not a Redis URL: {e}") from None
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"{url!r}: a unix socket URL is unix:///ABSOLUTE/PATH")
        query = parse_qs(parts.query)
        db = query.pop("db", ["0"])[-1]
        if query:
            raise ValueError(f"{url!r}: only ?db=N may follow a unix socket's path")
        return RedisAddress(url, path=parts.path, db=_db(url, db))
    if parts.scheme != "redis":
        raise ValueError(f"{url!r} is not a Redis URL: redis://HOST:PORT/DB or unix:///PATH")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host: redis://HOST:PORT/DB")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: only redis://HOST:PORT/DB is understood")
    path = parts.path.strip("/")
    return RedisAddress(
        url, host=parts.hostname, port=6379 if port is None else port, db=_db(url, path or "0")
    )


def _db(url, text):
    if not text.isdigit():
        raise ValueError(f"{url!r}: the database must be a number, not {text!r}")
    return int(text)


def _retryDelay(attempt):
    return min(0.1 * 2 ** min(attempt, 10), MAX_RETRY_DELAY)


class _QuietClientService(ClientService):
    """
    A L{ClientService} that does not log each retry: the store says once
    that Redis is gone, and once that it is back.
    """

    _log = Logger(observer=lambda event: None)


def commandProtocol(txredisapi):
    """
    txredisapi's C{RedisProtocol}, with each command encoded in one pass.

    Its own encoder makes two calls of a type-testing method for each
    argument (the value, then its length as text): half of the stage
    manager's CPU for a compact refresh through Redis went there.  The
    bytes are the same, and so is the error for text that does not encode
    (see the tests).
    """

    class CommandProtocol(txredisapi.RedisProtocol):
        def _build_command(self, *args, **kwargs):
            parts = [b"*%d\r\n" % (len(args),)]
            for arg in args:
                if type(arg) is str:
                    try:
                        # As txredisapi encodes text without a charset.
                        arg = arg.encode()
                    except UnicodeError:
                        arg = self._encode_value(arg)
                elif type(arg) is not bytes:
                    arg = self._encode_value(arg)
                parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
            return b"".join(parts)

    return CommandProtocol


class _Subscriber:
    """
    Builds txredisapi's subscriber protocol, handing each message received
    to the store.
    """

    def __init__(self, store):
        self._store = store

    def build(self):
        from txredisapi import SubscriberProtocol

        store = self._store

        class Subscriber(SubscriberProtocol):
            def messageReceived(self, pattern, channel, message):
                store._messageReceived(channel, message)

        return Subscriber(charset=None, convertNumbers=False)


class RedisStore(service.Service):
    """
    Commands, scripts and channels of one Redis database, over connections
    that come back by themselves.

    @ivar available: Whether commands can be sent now.
    @ivar outages: How many times Redis has gone away since the start.
    @ivar stats: Counters of what its users did through it, by name.
    """

    log = Logger()

    def __init__(self, address, reactor, replyTimeout=REPLY_TIMEOUT, retryDelay=_retryDelay):
        """
        @param address: The L{RedisAddress}.
        @param reactor: The reactor: L{twisted.internet.interfaces.IReactorTime}
            and what the endpoint needs.
        """
        import txredisapi

        self._txredisapi = txredisapi
        self._protocolClass = commandProtocol(txredisapi)
        self.address = address
        self.reactor = reactor
        self.available = False
        self.outages = 0
        self._replyTimeout = replyTimeout
        self._protocol = None
        self._scripts = {}
        self._shas = {}
        self._preparers = []
        self._observers = []
        self._channels = {}
        self._subscriber = None
        self._everConnected = False
        self._said = None
        self._refused = 0
        self._answeredErrors = set()
        self.stats = Counter()
        factory = Factory.forProtocol(self._buildProtocol)
        subscriberFactory = Factory.forProtocol(_Subscriber(self).build)
        # Not a line for each connection: the store says what matters.
        factory.noisy = subscriberFactory.noisy = False
        self._commands = _QuietClientService(
            address.endpoint(reactor),
            factory,
            retryPolicy=retryDelay,
            clock=reactor,
            prepareConnection=self._prepare,
        )
        self._subscriptions = _QuietClientService(
            address.endpoint(reactor),
            subscriberFactory,
            retryPolicy=retryDelay,
            clock=reactor,
            prepareConnection=self._prepareSubscriber,
        )

    def _buildProtocol(self):
        return self._protocolClass(
            charset=None,
            convertNumbers=False,
            replyTimeout=self._replyTimeout,
            dbid=self.address.db or None,
        )

    def addScripts(self, scripts):
        """
        Have Redis know the Lua scripts C{scripts} (a L{dict} of name to
        source), loaded on each connection, for L{script}.
        """
        import hashlib

        for name, source in scripts.items():
            self._scripts[name] = source
            self._shas[name] = hashlib.sha1(source.encode()).hexdigest()

    def whenConnecting(self, prepare):
        """
        Run C{prepare(command)} on each new connection, before L{available}
        turns true, with C{command} a function of a command's words that
        sends it on the new connection and returns a L{Deferred} of its
        reply; C{prepare} may return a L{Deferred}.  A failure rejects the
        connection, which is tried again.
        """
        self._preparers.append(prepare)

    def observe(self, observer):
        """
        Call C{observer(available)} each time Redis comes or goes.
        """
        self._observers.append(observer)

    def whenAvailable(self):
        """
        A L{Deferred} that fires with this store once Redis can be reached:
        at once if it can now.
        """
        if self.available:
            return succeed(self)
        d = Deferred()

        def observer(available):
            if available and not d.called:
                self._observers.remove(observer)
                d.callback(self)

        self._observers.append(observer)
        return d

    def subscribe(self, channel, receive):
        """
        Call C{receive(message)} with each message published on C{channel}
        (a L{str}), from the next connection of the subscriber on.
        """
        self._channels[channel.encode()] = receive
        if self._subscriber is not None:
            self._subscriber.subscribe([channel])

    def startService(self):
        super().startService()
        self.log.info("Phonebook in Redis at {url}", url=self.address.url)
        self._commands.startService()
        self._subscriptions.startService()
        self._commands.whenConnected(failAfterFailures=1).addErrback(self._firstFailure)

    def stopService(self):
        super().stopService()
        self.available = False
        return gatherResults(
            [self._commands.stopService(), self._subscriptions.stopService()],
            consumeErrors=True,
        )

    def _firstFailure(self, failure):
        if self.running and not self._everConnected:
            self._unavailable(failure.getErrorMessage())

    # Neither connection's preparation is left pending with ClientService:
    # one stopped while a preparation is pending meets the connection's end
    # in a state it has no way out of.  They go on here instead, and a
    # connection that fails them is closed, and so tried again.

    def _prepare(self, protocol):
        d = protocol.whenConnected()
        d.addCallback(lambda _: gatherResults(
            [protocol.execute_command("SCRIPT", "LOAD", source) for source in self._scripts.values()]
        ))
        d.addCallback(
            lambda _: gatherResults(
                [maybeDeferred(prepare, protocol.execute_command) for prepare in self._preparers]
            )
        )
        d.addCallbacks(self._ready, self._rejected, (protocol,), None, (protocol,))

    def _ready(self, _, protocol):
        if not protocol.connected:
            return
        self._protocol = protocol
        self._everConnected = True
        self.available = True
        protocol.whenDisconnected().addCallback(self._lost, protocol)
        self._say(True, "")

    def _rejected(self, failure, protocol):
        if self.running:
            self._unavailable(failure.getErrorMessage())
        if protocol.transport is not None:
            protocol.transport.loseConnection()

    def _lost(self, _, protocol):
        if self._protocol is protocol:
            self._protocol = None
            self.available = False
            if self.running:
                self._unavailable("the connection was lost")

    def _unavailable(self, why):
        self.available = False
        self._say(False, why)

    def _say(self, available, why):
        if self._said == available:
            return
        self._said = available
        if available:
            self.log.info(
                "Redis at {url} is reachable: registrations are taken", url=self.address.url
            )
        else:
            self.outages += 1
            self.log.error(
                "Redis at {url} is unreachable ({why}): registrations are refused, with"
                " error 500, until it is back; Binding requests are still answered."
                " Reconnecting.",
                url=self.address.url,
                why=why,
            )
        for observer in list(self._observers):
            observer(available)

    def _prepareSubscriber(self, protocol):
        def subscribe(_):
            self._subscriber = protocol
            protocol.whenDisconnected().addCallback(self._subscriberLost, protocol)
            if self._channels:
                return protocol.subscribe([c.decode() for c in self._channels])

        def failed(failure):
            if protocol.transport is not None:
                protocol.transport.loseConnection()

        protocol.whenConnected().addCallback(subscribe).addErrback(failed)

    def _subscriberLost(self, _, protocol):
        if self._subscriber is protocol:
            self._subscriber = None

    def _messageReceived(self, channel, message):
        receive = self._channels.get(channel)
        if receive is not None:
            receive(message)

    def _refusal(self):
        self._refused += 1
        return StoreUnavailable(
            f"the phonebook (Redis at {self.address.url}) cannot be reached; try again"
        )

    def call(self, *args):
        """
        Send a command.

        @return: A L{Deferred} of its reply, which fails with
            L{StoreUnavailable} when Redis cannot be reached or does not
            answer in time.
        """
        protocol = self._protocol
        if protocol is None or not self.available:
            return fail(self._refusal())
        try:
            d = protocol.execute_command(*args)
        except self._txredisapi.ConnectionError:
            return fail(self._refusal())
        return d.addErrback(self._failed)

    def _failed(self, failure):
        txredisapi = self._txredisapi
        failure.trap(txredisapi.ConnectionError, txredisapi.ResponseError)
        if failure.check(txredisapi.ConnectionError):
            raise self._refusal()
        message = str(failure.value)
        if message.startswith("NOSCRIPT"):
            return failure
        # Redis answered with an error (out of memory, a replica that
        # cannot write, ...): refused as plainly, and said once.
        if message not in self._answeredErrors and len(self._answeredErrors) < 100:
            self._answeredErrors.add(message)
            self.log.error(
                "Redis at {url} refused a command: {error}", url=self.address.url, error=message
            )
        self._refused += 1
        raise StoreUnavailable(f"the phonebook (Redis at {self.address.url}) refused it; try again")

    def script(self, name, keys, args):
        """
        Run the script C{name} (see L{addScripts}) on C{keys} and C{args}.
        """
        d = self.call("EVALSHA", self._shas[name], len(keys), *keys, *args)
        return d.addErrback(self._noScript, name, keys, args)

    def _noScript(self, failure, name, keys, args):
        # Redis forgot the scripts (SCRIPT FLUSH, or a restart this
        # connection did not see): send the source once.
        failure.trap(self._txredisapi.ResponseError)
        if not str(failure.value).startswith("NOSCRIPT"):
            return failure
        return self.call("EVAL", self._scripts[name], len(keys), *keys, *args)

    @property
    def refused(self):
        """
        How many commands were refused since the start, Redis being
        unreachable.
        """
        return self._refused

    def publish(self, channel, message):
        """
        Publish C{message} on C{channel}.

        @return: A L{Deferred} of the number of listeners that got it.
        """
        return self.call("PUBLISH", channel, message)


#: The bytes of the key the stage managers share.
SHARED_KEY_BYTES = 32


def shareKeys(store, users, prefix="punchd:", randomBytes=None):
    """
    Have every stage manager on C{store} use the same keys, derived from
    one kept in Redis at C{PREFIX key}: the first to connect draws it, the
    others read it, on every connection (a Redis restarted empty gets a
    new one).  A peer can then move to another stage manager with the
    cookie and the name secret it has.

    @param users: A L{dict} of a purpose (L{bytes}) to the function that
        takes the key for it: C{Cookies.useKey} for C{b"cookies"},
        C{StageManagerProtocol.useNameKey} for C{b"names"}.
    """
    import hmac
    import os

    randomBytes = os.urandom if randomBytes is None else randomBytes
    key = prefix + "key"

    def prepare(command):
        d = command("SET", key, randomBytes(SHARED_KEY_BYTES), "NX")
        d.addCallback(lambda _: command("GET", key))
        d.addCallback(useKey)
        return d

    def useKey(value):
        if not isinstance(value, bytes) or len(value) != SHARED_KEY_BYTES:
            raise ValueError(f"{key} in Redis is not a key of {SHARED_KEY_BYTES} bytes")
        for purpose, use in users.items():
            use(hmac.digest(value, purpose, "sha256"))

    store.whenConnecting(prepare)
