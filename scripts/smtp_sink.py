#!/usr/bin/env python3
"""A real SMTP server for tests (aiosmtpd). Each message received is written to OUT_DIR
as JSON with the raw message and its decoded subject and body, so tests can check what
actually arrived, including RFC 2047 encoded Japanese subjects.

Usage: smtp_sink.py PORT OUT_DIR [USER PASSWORD]
"""
import asyncio
import json
import os
import sys
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def raw_header(content, name):
    """The header exactly as sent (folded lines joined), before any decoding."""
    head = content.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    lines, current = [], None
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and current is not None:
            current += " " + line.strip()
            continue
        if current is not None:
            lines.append(current)
        current = line
    if current is not None:
        lines.append(current)
    for line in lines:
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "raw": envelope.content.decode("ascii", "replace"),
            "raw_subject": raw_header(envelope.content, "Subject"),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "body": body.get_content() if body is not None else "",
            "attachments": [
                {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "content": part.get_content() if part.get_content_maintype() == "text" else "",
                }
                for part in msg.iter_attachments()
            ],
            "authenticated": bool(getattr(session, "authenticated", False)),
        }
        path = os.path.join(self.out_dir, f"{self.count:05d}.json")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(tmp, path)
        return "250 Message accepted for delivery"


def main():
    port = int(sys.argv[1])
    out_dir = sys.argv[2]
    creds = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else None
    os.makedirs(out_dir, exist_ok=True)
    kwargs = {}
    if creds:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == creds
            # handled=False: let aiosmtpd answer 535 itself on failure.
            return AuthResult(success=ok, handled=False)
        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
