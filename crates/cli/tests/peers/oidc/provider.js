// oidc-provider (OpenID Certified) as the peer for Latchkey's OAuth2 tests.
// Env: REDIRECT_URI (and EXTRA_REDIRECT_URIS, comma-separated, also allowed for `latchkey-web`). Listens on a free port (the system picks it) and prints "ready PORT". Login and consent are oidc-provider's
// own development pages. Clients:
// - `latchkey-web`: confidential (client_secret_basic), authorization code + PKCE (required),
//   refresh tokens with rotation, and client credentials;
// - `latchkey-pkjwt`: confidential, authenticating with private_key_jwt (RFC 7523 §2.2) signed
//   by a throwaway RSA key generated here at start-up (its private half at /test/client-key),
//   client credentials only;
// - `latchkey-device`: public, device authorization grant (RFC 8628) with refresh tokens.
// Token revocation (RFC 7009) is on: the discovery document names its `revocation_endpoint`.
// Test-only routes: /test/stats (token requests), /test/client-key (the PEM above) and
// /api/whoami (200 with the token's client and account for a valid Bearer access token or
// client-credentials token, else 401).
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

// Bound first, on port 0, because the issuer names the port.
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;
let tokenRequests = 0;

const clientKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const clientKeyPem = clientKey.privateKey.export({ type: 'pkcs8', format: 'pem' });
const clientJwk = { ...clientKey.publicKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'latchkey-web',
    client_secret: 'web-secret',
    redirect_uris: [process.env.REDIRECT_URI, ...(process.env.EXTRA_REDIRECT_URIS || '').split(',').filter(Boolean)],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }, {
    client_id: 'latchkey-pkjwt',
    redirect_uris: [],
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [clientJwk] },
  }, {
    client_id: 'latchkey-device',
    redirect_uris: [],
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    token_endpoint_auth_method: 'none',
  }],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id, name: `User ${id}` }; } };
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 3600,
    DeviceCode: 600,
    RefreshToken: 86400,
    Grant: 86400,
    Interaction: 600,
    Session: 86400,
  },
});

provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token') tokenRequests += 1;
  if (ctx.path === '/test/stats') {
    ctx.body = { token_requests: tokenRequests };
    return;
  }
  if (ctx.path === '/test/client-key') {
    ctx.type = 'application/x-pem-file';
    ctx.body = clientKeyPem;
    return;
  }
  if (ctx.path === '/api/whoami') {
    const [scheme, value] = (ctx.get('authorization') || '').split(' ');
    const token = scheme === 'Bearer' && value
      ? (await provider.AccessToken.find(value)) || (await provider.ClientCredentials.find(value))
      : undefined;
    if (!token) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
      ctx.body = { error: 'invalid_token' };
      return;
    }
    ctx.body = {
      kind: token.kind,
      client_id: token.clientId,
      account_id: token.accountId ?? null,
      scope: token.scope ?? null,
    };
    return;
  }
  await next();
  // oidc-provider's device authorization response names no `interval` (clients then poll every
  // five seconds, RFC 8628 §3.2); naming one keeps the test short and checks Latchkey reads it.
  if (ctx.method === 'POST' && ctx.path === '/device/auth' && ctx.status === 200
      && ctx.body && typeof ctx.body === 'object') {
    ctx.body = { ...ctx.body, interval: 1 };
  }
});

// The harness reads the "ready" line and then closes the pipe; oidc-provider's notices (its
// default device pages print some on stdout) must not kill the process with EPIPE.
process.stdout.on('error', () => {});
server.on('request', provider.callback());
console.log(`ready ${port}`);
