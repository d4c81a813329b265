from twisted.application.service import ServiceMaker

punchServer = ServiceMaker(
    "punch-server",
    "punchd.server_tap",
    "The punchd stage manager: introduces peers for UDP hole punching.",
    "punch-server",
)
