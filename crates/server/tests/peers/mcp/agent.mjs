// An agent, as the official TypeScript SDK's client: connects to Latchkey's /mcp with its
// agent token, lists the tools and the connections it may use, and calls `request`. Prints one
// JSON document with everything the server returned to it, for the test to inspect.
// Usage: node agent.mjs MCP_URL CONNECTION PATH   (the token comes as LATCHKEY_MCP_TOKEN)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, connection, path] = process.argv.slice(2);
const token = process.env.LATCHKEY_MCP_TOKEN;
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "latchkey-test-agent", version: "1.0.0" });
await client.connect(transport);
const seen = {
  server: client.getServerVersion(),
  instructions: client.getInstructions(),
  tools: await client.listTools(),
  connections: await client.callTool({ name: "list_connections", arguments: {} }),
  request: await client.callTool({
    name: "request",
    arguments: { connection, method: "GET", path, query: { state: "open" } },
  }),
  outside: await client.callTool({
    name: "request",
    arguments: { connection, method: "DELETE", path },
  }),
  cut: await client.callTool({
    name: "request",
    arguments: { connection, method: "GET", path, max_body_bytes: 5 },
  }),
};
await client.close();
console.log(JSON.stringify(seen));
