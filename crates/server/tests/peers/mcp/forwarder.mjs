// Forwards every request to TARGET (an origin such as http://127.0.0.1:8080) with
// `Authorization: Bearer $LATCHKEY_MCP_TOKEN` added, as an agent framework attaches its token:
// the conformance suite's own client sends none. Prints `listening PORT` once it accepts.
// Usage: node forwarder.mjs TARGET   (the token comes by environment, never on a command line)
import http from "node:http";

const target = new URL(process.argv[2]);
const token = process.env.LATCHKEY_MCP_TOKEN;
if (!token) {
  console.error("forwarder: LATCHKEY_MCP_TOKEN is not set");
  process.exit(2);
}

const server = http.createServer((incoming, outgoing) => {
  const headers = { ...incoming.headers, authorization: `Bearer ${token}` };
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      method: incoming.method,
      path: incoming.url,
      headers, // `host` as the client sent it: the server's rebinding check sees it
    },
    (answer) => {
      outgoing.writeHead(answer.statusCode, answer.headers);
      answer.pipe(outgoing);
    },
  );
  upstream.on("error", (e) => {
    outgoing.writeHead(502, { "content-type": "text/plain" });
    outgoing.end(`forwarder: ${e.message}`);
  });
  incoming.pipe(upstream);
});
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
