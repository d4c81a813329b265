from twisted.application.service import ServiceMaker

punchPeer = ServiceMaker(
    "punch-peer",
    "punchd.peer_tap",
    "A punchd peer: registers, punches a direct UDP path to another peer.",
    "punch-peer",
)
