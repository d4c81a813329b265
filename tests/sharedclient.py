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

    def registered(self, answer):
        """
        Take a registration's success answer: the cookie, and the secret
        given or moved on.
        """
        registered = messages.parseRegistered(answer)
        self.cookie = registered.cookie
        if registered.secret is not None:
            self.secret = registered.secret
        elif registered.nonce is not None and self.secret is not None:
            self.secret = messages.nextSecret(self.secret, registered.nonce)

    def register(self, server):
        """
        Register, echoing a cookie when challenged.

        @return: C{"registered"}, or the error code of a refusal.
        """
        for _ in range(2):
            answer = self.ask(server, self.registration(self.cookie))
            if answer.messageClass == stun.SUCCESS:
                self.registered(answer)
                return "registered"
            code, _ = stun.decodeErrorCode(answer.get(stun.ERROR_CODE))
            if code != messages.PROVE_ADDRESS:
                return code
            self.cookie = answer.get(messages.COOKIE)
        return code


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
    Register with C{one}, then from the same socket, with the cookie and
    name secret C{one} gave, with C{two}.

    @return: What each answered: C{"registered"} or an error code.
    """
    client = Client()
    try:
        first = client.register(one)
        answer = client.ask(two, client.registration(client.cookie))
        if answer.messageClass == stun.SUCCESS:
            client.registered(answer)
            second = "registered"
        else:
            second, _ = stun.decodeErrorCode(answer.get(stun.ERROR_CODE))
        return [first, second]
    finally:
        client.close()
