"""A fixed-response HTTP/1.1 upstream for bench/proxy.sh.

Every request gets 200 with a ~100-byte JSON body, and the connection is kept alive.
asyncio's low-level protocol API keeps it cheap, so it is not the bottleneck of the proxied run.
Usage: upstream.py PORT. Prints "ready" once listening, and the X-Api-Key header of the first
request it receives (so the benchmark can check the proxy applied the credential).
"""
import asyncio
import sys

BODY = (b'{"id":42,"name":"widget","tags":["a","b","c"],"price":9.99,'
        b'"currency":"EUR","in_stock":true,"ok":true}')
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
first_request = True


class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
        self.skip = 0  # body bytes of the current request still to discard

    def data_received(self, data):
        global first_request
        self.buffer += data
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.buffer = self.buffer[taken:]
                self.skip -= taken
                if self.skip:
                    return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            checking = first_request or b"check=" in head.split(b"\r\n")[0]
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.skip = int(value)
                elif checking and name == b"x-api-key":
                    print("x-api-key:", value.strip().decode(), flush=True)
            if first_request:
                first_request = False
                print("first request:", head.split(b"\r\n")[0].decode(), flush=True)
            self.transport.write(RESPONSE)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()


asyncio.run(main())
