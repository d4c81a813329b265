"""
Log observers for C{twistd --logger}, for the systemd journal and log
shippers.

    twistd --logger punchd.logs.jsonObserver punch-server ...
    twistd --logger punchd.logs.journaldObserver punch-server ...

Both write to standard output, which systemd hands to the journal.  The
journal stamps each line with the time, so the text for it has no time
stamp of its own; the JSON keeps the event's time in a field, for shippers
that read it from elsewhere.
"""

import json
import sys

from twisted.logger import FileLogObserver, Logger, LogLevel, eventAsText

#: What a hidden address says instead.
HIDDEN = "(hidden)"

#: The fields of log events that hold a peer's address, or addresses.
PEER_ADDRESS_FIELDS = frozenset(
    {"address", "aAddress", "bAddress", "previousAddress", "localAddresses", "source"}
)

#: Keys that L{twisted.logger.LegacyLogObserverWrapper} adds to an event,
#: repeating what the C{log_} keys say.
_LEGACY = frozenset({"message", "time", "system", "format", "isError", "failure"})

#: syslog priorities, which journald reads from a C{<N>} line prefix.
_PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def eventAsJSONLine(event) -> str:
    """
    A log event as one line of JSON.

    Unlike L{twisted.logger.eventAsJSON}, meant for reading back into
    Twisted, this is for log shippers: every value is plain JSON, and
    there is no record separator, which the journal would show as binary.

    @param event: A L{twisted.logger} event.
    @return: A JSON object and a newline.  It has the event's own fields
        (values JSON cannot hold, as text), and C{log_time} (seconds since
        the epoch), C{log_level} (C{"info"}, C{"warn"}, ...),
        C{log_namespace}, C{log_format}, C{log_system} if the event has
        one, and C{log_text}: the message, with the traceback if any.
    """
    record = {
        key: value
        for key, value in event.items()
        if not key.startswith("log_") and key not in _LEGACY
    }
    level = event.get("log_level")
    record.update(
        log_time=event.get("log_time"),
        log_level=level.name if level is not None else None,
        log_namespace=event.get("log_namespace"),
        log_format=event.get("log_format"),
        log_text=eventAsText(event, includeTimestamp=False, includeSystem=False),
    )
    if "log_system" in event:
        record["log_system"] = event["log_system"]
    return json.dumps(record, default=str, skipkeys=True) + "\n"


def eventAsJournalLine(event):
    """
    A log event as text for journald: no time stamp, since the journal adds
    its own, and the event's level as a syslog priority prefix, so that
    C{journalctl -p warning} finds warnings.

    @param event: A L{twisted.logger} event.
    @return: C{"<6>[namespace#info] message"} and a newline, with any
        further lines (a traceback) indented by a tab; or L{None} for an
        event with nothing to say.
    """
    text = eventAsText(event, includeTimestamp=False)
    if not text:
        return None
    priority = _PRIORITIES.get(event.get("log_level"), 6)
    return f"<{priority}>" + text.replace("\n", "\n\t") + "\n"


def jsonObserver(outFile=None) -> FileLogObserver:
    """
    An observer that writes each event as one line of JSON, for
    C{twistd --logger punchd.logs.jsonObserver}.

    @param outFile: Where to write; standard output by default.
    """
    return FileLogObserver(outFile or sys.stdout, eventAsJSONLine)


def journaldObserver(outFile=None) -> FileLogObserver:
    """
    An observer that writes each event as text for journald, for
    C{twistd --logger punchd.logs.journaldObserver}.

    @param outFile: Where to write; standard output by default.
    """
    return FileLogObserver(outFile or sys.stdout, eventAsJournalLine)


def hideAddresses(loggingObject) -> None:
    """
    From now on, C{loggingObject}'s log events say L{HIDDEN} in place of
    every peer address, in their text and in their fields.

    @param loggingObject: An object that logs with a L{Logger} in its
        C{log} attribute, and names the fields of its log events that hold
        peers' addresses as in L{PEER_ADDRESS_FIELDS}.
    """
    log = loggingObject.log
    observer = log.observer

    def hiding(event):
        observer({k: HIDDEN if k in PEER_ADDRESS_FIELDS else v for k, v in event.items()})

    loggingObject.log = Logger(log.namespace, loggingObject, hiding)
