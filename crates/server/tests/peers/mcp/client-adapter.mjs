// The client side of the MCP conformance suite's auth scenarios, with Latchkey as the OAuth
// client: every OAuth step goes through Latchkey's REST API (POST /v1/mcp-integrations runs the
// discovery and registration, a connect session the authorization), and the TypeScript SDK only
// speaks MCP — through Latchkey's proxy, which adds the connection's token.
// Usage: node client-adapter.mjs MCP_SERVER_URL  (LATCHKEY_URL, LATCHKEY_API_KEY in the env;
// MCP_CONFORMANCE_CONTEXT may carry a pre-registered client).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const server = process.argv[process.argv.length - 1];
const latchkey = process.env.LATCHKEY_URL;
const key = process.env.LATCHKEY_API_KEY;
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || "{}");

async function api(method, path, body) {
  const response = await fetch(`${latchkey}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

// A browser's step: one request, the redirect not followed.
async function step(url, cookie) {
  const response = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
  return response;
}

const id = `mcp-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const integration = { id, mcp_server: server };
if (context.client_id) integration.client_id = context.client_id;
if (context.client_secret) integration.client_secret = context.client_secret;
await api("POST", "/v1/mcp-integrations", integration);
const session = await api("POST", "/v1/connect-sessions", { integration: id });
const opened = await step(`${latchkey}/connect/${session.token}`);
const cookie = (opened.headers.get("set-cookie") || "").split(";")[0];
const authorized = await step(opened.headers.get("location"));
const callback = await step(authorized.headers.get("location"), cookie);
if (!callback.ok) throw new Error(`callback: ${callback.status} ${await callback.text()}`);
const done = await api("GET", `/v1/connect-sessions/${session.id}`);
if (!done.connection_id) throw new Error(`no connection: ${JSON.stringify(done)}`);

const transport = new StreamableHTTPClientTransport(
  new URL(`${latchkey}/v1/proxy/${done.connection_id}`),
  { requestInit: { headers: { Authorization: `Bearer ${key}` } } },
);
const client = new Client({ name: "latchkey-conformance-client", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
if (tools.length > 0) await client.callTool({ name: tools[0].name, arguments: {} });
await client.close();
console.log(JSON.stringify({ connection: done.connection_id, tools: tools.length }));
