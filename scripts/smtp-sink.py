#!/usr/bin/env python3
"""An SMTP server that delivers every message it accepts to a folder, one .eml file each.

    smtp-sink.py --host 127.0.0.1 --port PORT --dir DIR

The local stack's mail server (scripts/lib.sh, start_smtp) and the tests'
(testkit::smtp). Needs aiosmtpd (PyPI; ensure_aiosmtpd_installed in scripts/lib.sh
makes a venv with it). Nothing is relayed anywhere.

- Each message becomes DIR/<stamp>-<n>.eml: <stamp> is a 20-digit nanosecond time that
  only grows within DIR, also across restarts, so the names sort in arrival order; <n>
  counts the messages of this process. The file is written under a name starting with
  `.`, then renamed: a reader never sees half a message.
- Its content is the message as received, after `Return-Path: <mail from>` and one
  `Delivered-To: <recipient>` line per accepted recipient, as a real MTA prepends them.
- Faults, decided per recipient at RCPT TO: a local part starting with `reject` gets
  550 5.1.1 (permanent), one starting with `defer` 451 4.3.0 (temporary). A message to
  a local part starting with `slow` is written at once but answered 250 only after
  SLOW_SECONDS (3): a crash of the sender can fall between the two.
- AUTH PLAIN and LOGIN are offered, without TLS, and any credentials are accepted:
  clients configured with credentials work; none are needed.
- One line per message on stdout (sizes and counts, no addresses).
- SIGTERM or SIGINT: stops listening and exits with status 0.
"""

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult

SLOW_SECONDS = 3.0

NAME = re.compile(r"^(\d{20})-\d+\.eml$")


def local_part(address):
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


class Sink:
    """aiosmtpd's handler: the RCPT faults and the delivery to the folder."""

    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        # The largest stamp in the folder: new names sort after every existing one,
        # even if the clock went back since it was written.
        self.last_stamp = 0
        for name in os.listdir(directory):
            match = NAME.match(name)
            if match:
                self.last_stamp = max(self.last_stamp, int(match.group(1)))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = local_part(address)
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("defer"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        # Synchronous from here on: no other session runs until the file is in place.
        self.count += 1
        self.last_stamp = max(time.time_ns(), self.last_stamp + 1)
        name = f"{self.last_stamp:020d}-{self.count}.eml"
        body = envelope.original_content or b""
        # The null sender (MAIL FROM:<>) comes as "<>" from aiosmtpd.
        sender = (envelope.mail_from or "").strip("<>")
        head = [f"Return-Path: <{sender}>\r\n"]
        head += [f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos]
        data = "".join(head).encode("utf-8", errors="surrogateescape") + body
        temp = os.path.join(self.directory, f".{name}.tmp")
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, os.path.join(self.directory, name))
        print(
            f"message {self.count}: {len(body)} bytes, "
            f"{len(envelope.rcpt_tos)} recipient(s) -> {name}"
        )
        answer = f"250 2.0.0 OK queued as {self.count}"
        if any(local_part(rcpt).startswith("slow") for rcpt in envelope.rcpt_tos):
            await asyncio.sleep(SLOW_SECONDS)
        return answer


def accept_any(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True)


class QuietAuth(logging.Filter):
    """Drops the warning aiosmtpd 1.4 logs on every successful AUTH (it sets its own
    deprecated Session.login_data)."""

    def filter(self, record):
        return not str(record.msg).startswith("Session.login_data is deprecated")


async def serve(host, port, directory):
    loop = asyncio.get_running_loop()
    sink = Sink(directory)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def protocol():
        # A fixed hostname: the default looks up the machine's FQDN on every connection.
        return SMTP(
            sink,
            hostname="smtp-sink.boxoffice.test",
            ident="boxoffice smtp-sink",
            enable_SMTPUTF8=True,
            authenticator=accept_any,
            auth_require_tls=False,
            loop=loop,
        )

    try:
        server = await loop.create_server(protocol, host=host, port=port)
    except OSError as err:
        sys.exit(f"smtp-sink: cannot listen on {host}:{port}: {err}")
    print(f"listening on {host}:{port}, writing messages to {directory}")
    await stop.wait()
    server.close()
    print(f"stopping after {sink.count} message(s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="where the .eml files go (made if missing)")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    sys.stdout.reconfigure(line_buffering=True)
    logging.getLogger("mail.log").addFilter(QuietAuth())
    asyncio.run(serve(args.host, args.port, os.path.abspath(args.dir)))


if __name__ == "__main__":
    main()
