"""An asyncio TCP server on HOST:PORT that answers each request line with a counter that
lives in the process: "count N <line>". Writes "listening" once it serves."""

import asyncio
import socket
import sys

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global count
    line = await reader.readline()
    count += 1
    writer.write(f"count {count} {line.decode().strip()}\n".encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    server = await asyncio.start_server(handle, host, port, backlog=77, reuse_port=True)
    for s in server.sockets:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with open(out, "a") as f:
        f.write("listening\n")
    async with server:
        await server.serve_forever()


asyncio.run(main())
