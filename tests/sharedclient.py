"""
A plain blocking UDP client for the system tests of shared phonebooks: it
sends one request at a time to a stage manager and reads the answer, so a
test can say exactly what a stage manager answers.
"""

import socket

from punchd import messages, stun


def _address(server):
    host, port = server.rsplit(":", 1)
    return host, int(port)


class Client:
    """
    One UDP socket on 127.0.0.1, registering one name.
    """

    def __init__(self, name="carol", timeout=3.0):
        self.name = name
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(timeout)
        self.cookie = None
        self.secret = None
        # The refresh handle of each stage manager's last answer, with the
        # key of its refreshes, and the last counter sent.
        self.handles = {}
        self.counter = 0

    def close(self):
        self.socket.close()

    def ask(self, server, datagram):
        """
        Send C{datagram} to C{server} and return the decoded answer.
        """
        self.socket.sendto(datagram, _address(server))
        data, _ = self.socket.recvfrom(2048)
        return stun.decode(data)

    def registration(self, cookie):
        """
        A registration echoing C{cookie}, proving the name's secret once
        there is one.
        """
        return messages.encodeRegistration(
            stun.newTransactionID(),
            messages.Registration(self.name, (), (), (), cookie),
            messages.UNPROVEN_REGISTRATION_BYTES,
            None if self.secret is None else messages.registrationKey(self.secret),
        )

    def registered(self, answer, server):
        """
        Take C{server}'s answer to a registration: the cookie, the secret
        given or moved on, and the refresh handle.
        """
        registered = messages.parseRegistered(answer)
        self.cookie = registered.cookie
        if registered.secret is not None:
            self.secret = registered.secret
        elif registered.nonce is not None and self.secret is not None:
            self.secret = messages.nextSecret(self.secret, registered.nonce)
        self.handles[server] = (registered.handle, messages.refreshKey(self.secret))

    def register(self, server):
        """
        Register, echoing a cookie when challenged.

        @return: C{"registered"}, or the error code of a refusal.
        """
        for _ in range(2):
            answer = self.ask(server, self.registration(self.cookie))
            if answer.messageClass == stun.SUCCESS:
                self.registered(answer, server)
                return "registered"
            code, _ = stun.decodeErrorCode(answer.get(stun.ERROR_CODE))
            if code != messages.PROVE_ADDRESS:
                return code
            self.cookie = answer.get(messages.COOKIE)
        return code


    def refresh(self, server):
        """
        Refresh compactly with the handle C{server} gave last.

        @return: C{"refreshed"}, or the error code of a refusal.
        """
        self.counter += 1
        handle, key = self.handles[server]
        answer = self.ask(
            server, messages.encodeRefresh(stun.newTransactionID(), handle, self.counter, key)
        )
        if answer.messageClass == stun.SUCCESS:
            return "refreshed"
        return stun.decodeErrorCode(answer.get(stun.ERROR_CODE))[0]


def bindingAnswered(server):
    """
    Whether C{server} answers a STUN Binding request.
    """
    client = Client()
    try:
        txid = stun.newTransactionID()
        answer = client.ask(server, messages.BARE_BINDING_REQUEST + txid)
        return answer.messageClass == stun.SUCCESS
    except OSError:
        return False
    finally:
        client.close()


def registrationRefused(server):
    """
    The error code C{server} answers a proven registration with, or
    C{"registered"}.
    """
    client = Client()
    try:
        return client.register(server)
    finally:
        client.close()


def moveBetween(one, two):
    """
    Register with C{one} and refresh there compactly; then, from the same
    socket, with the cookie and name secret C{one} gave, register with
    C{two}, and refresh with the handle each gave.

    @return: What each answered: C{"registered"}, C{"refreshed"} or an
        error code.
    """
    client = Client()
    try:
        first = client.register(one)
        said = [first, client.refresh(one)]
        answer = client.ask(two, client.registration(client.cookie))
        if answer.messageClass == stun.SUCCESS:
            client.registered(answer, two)
        else:
            return said + [stun.decodeErrorCode(answer.get(stun.ERROR_CODE))[0]]
        return said + ["registered", client.refresh(two), client.refresh(one)]
    finally:
        client.close()
