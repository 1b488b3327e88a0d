#!/usr/bin/env python3
"""Reference MLLP receiver for the `mllp` bench: python-hl7's asyncio server, no persistence.

Usage: hl7_mllp_server.py PORT    (PORT 0 lets the system pick a free port)

Listens on 127.0.0.1:PORT with `hl7.mllp.start_hl7_server`, answers every message of a
connection, in order, with `message.create_ack()` (AA), and stores nothing. Once listening it
prints one line on stdout:

    ready PORT python-hl7 VERSION python X.Y.Z

and serves until its standard input is closed (the bench holds it open) or it is killed.
Without the `hl7` package it prints `unavailable: ...` on stderr and exits with status 3.
"""

import asyncio
import platform
import sys

try:
    import hl7
    from hl7.mllp import start_hl7_server
except ImportError as error:  # the bench reports the row as unavailable
    print(f"unavailable: python-hl7 is not installed ({error}); pip install hl7", file=sys.stderr)
    sys.exit(3)


async def answer(reader, writer):
    """One connection: read a message, write its ACK, wait for the socket to take it."""
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed the connection
    except Exception as error:  # anything else ends this connection: say why, for the bench
        print(f"connection dropped: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    finally:
        writer.close()


async def main(port):
    server = await start_hl7_server(answer, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    version = getattr(hl7, "__version__", "unknown")
    print(f"ready {bound} python-hl7 {version} python {platform.python_version()}", flush=True)
    # Serve until the parent closes our stdin (or goes away).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: hl7_mllp_server.py PORT", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(int(sys.argv[1])))
