"""A fixed-response HTTP/1.1 upstream for the proxy benchmark: every request gets 200 and a
small JSON body, with keep-alive. asyncio's low-level protocol keeps it cheap."""
import asyncio
import sys

BODY = b'{"id":42,"name":"widget","tags":["a","b","c"],"price":9.99,"currency":"EUR","ok":true}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.buffer = self.buffer[length:]
            self.transport.write(RESPONSE)


async def main():
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
