"""
Introductions across stage managers that share a phonebook in Redis.

A peer's NAT lets in only the stage manager the peer registered with: an
introduction sent from another would be dropped at the NAT.  So each entry
of the shared phonebook records the id of the stage manager that holds it
(L{punchd.redisbook.SharedEntry.holder}), and an introduction for a peer
held elsewhere is published on that stage manager's Redis channel,
C{PREFIX intro:ID}; the holder sends it, and retransmits it until the peer
acknowledges, as it does its own.

Should nobody listen on the holder's channel (the holder stopped, and its
peers have not yet registered with another), the introduction is sent from
here all the same: a peer behind a NAT that lets it in still gets it.
"""

import json

from twisted.logger import Logger

from punchd import messages
from punchd.addresses import formatAddress
from punchd.phonebook import Entry
from punchd.redisstore import StoreUnavailable


def encodeRelayed(to, introduction):
    """
    The message published to C{to}'s holder: whom to introduce (C{to}'s
    name, address and secrets, so that the holder needs no lookup) and the
    introduction itself.
    """
    return json.dumps(
        [
            to.name,
            list(to.address),
            None if to.secret is None else to.secret.hex(),
            None if to.previousSecret is None else to.previousSecret.hex(),
            introduction.name,
            list(introduction.address),
            [list(a) for a in introduction.localAddresses],
            introduction.key.hex(),
            introduction.nat and messages.encodeBehaviour(introduction.nat).hex(),
            introduction.otherAddress and list(introduction.otherAddress),
        ],
        separators=(",", ":"),
    ).encode()


def decodeRelayed(data):
    """
    The recipient's L{Entry} and the L{messages.Introduction} of
    L{encodeRelayed}'s C{data}.

    @raise ValueError: If C{data} is not such a message.
    """
    try:
        (
            name, address, secret, previous, about, aboutAddress, aboutLocal, key, nat, other
        ) = json.loads(data)
        to = Entry(
            name,
            tuple(address),
            (),
            (),
            0.0,
            True,
            None if secret is None else bytes.fromhex(secret),
            None if previous is None else bytes.fromhex(previous),
        )
        introduction = messages.Introduction(
            about,
            tuple(aboutAddress),
            tuple(tuple(a) for a in aboutLocal),
            bytes.fromhex(key),
            nat=messages.readBehaviour(None if nat is None else bytes.fromhex(nat))[0],
            otherAddress=None if other is None else tuple(other),
        )
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"not a relayed introduction: {e}") from None
    return to, introduction


class IntroductionRelay:
    """
    Sends introductions for peers held by other stage managers through
    their channels, and sends those that come through this stage manager's
    own.

    It counts in the store's C{stats}: C{relayedOut} (published to
    another stage manager), C{relayedIn} (received and sent from here),
    C{relayedUnheard} (nobody listened; sent from here instead).
    """

    log = Logger()

    def __init__(self, store, holder, prefix="punchd:"):
        """
        @param store: The L{punchd.redisstore.RedisStore}.
        @param holder: This stage manager's id (L{punchd.redisbook.RedisPhonebook.holder}).
        """
        self.store = store
        self.holder = holder
        self._prefix = prefix + "intro:"
        self._stageManager = None
        self.stats = store.stats
        store.subscribe(self._prefix + holder, self._received)

    def attach(self, stageManager):
        """
        Start relaying for the L{punchd.interfaces.IStageManager} given.
        """
        self._stageManager = stageManager
        self.log.info(
            "This stage manager is {holder} among those sharing the phonebook; it sends"
            " the introductions of its peers that others publish on {channel}",
            holder=self.holder,
            channel=self._prefix + self.holder,
        )

    def elsewhere(self, entry):
        """
        Whether C{entry} is held by another stage manager.
        """
        holder = getattr(entry, "holder", None)
        return holder is not None and holder != self.holder

    def relay(self, to, introduction):
        """
        Have C{to}'s holder send it C{introduction}.
        """
        self.stats["relayedOut"] += 1
        d = self.store.publish(self._prefix + to.holder, encodeRelayed(to, introduction))
        d.addCallbacks(self._published, self._notPublished, (to, introduction), None, (to, introduction))

    def _published(self, listeners, to, introduction):
        if int(listeners) == 0:
            self.stats["relayedUnheard"] += 1
            self.log.warn(
                "Stage manager {holder}, which holds {name}, is not listening: introducing"
                " {name} at {address} from here",
                holder=to.holder,
                name=to.name,
                address=formatAddress(to.address),
            )
            self._send(to, introduction)

    def _notPublished(self, failure, to, introduction):
        failure.trap(StoreUnavailable)
        self._send(to, introduction)

    def _received(self, data):
        try:
            to, introduction = decodeRelayed(data)
        except ValueError as e:
            self.log.warn("Dropped a message on the introduction channel: {why}", why=str(e))
            return
        if self._stageManager is None:
            return
        self.stats["relayedIn"] += 1
        self._send(to, introduction)

    def _send(self, to, introduction):
        self._stageManager.sendIntroduction(
            to, lambda txid, key: messages.encodeIntroduction(txid, introduction, key)
        )
