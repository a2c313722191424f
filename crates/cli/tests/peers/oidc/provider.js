// oidc-provider (OpenID Certified) as the peer for Latchkey's OAuth2 tests.
// Env: PORT, REDIRECT_URI. Prints "ready" when listening. One confidential client
// (client_secret_basic) with authorization code + PKCE (required), refresh tokens with rotation,
// and client credentials. Login and consent are oidc-provider's own development pages.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
let tokenRequests = 0;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'latchkey-web',
    client_secret: 'web-secret',
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  features: { clientCredentials: { enabled: true }, devInteractions: { enabled: true } },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id, name: `User ${id}` }; } };
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400 },
});

provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token') tokenRequests += 1;
  if (ctx.path === '/test/stats') {
    ctx.body = { token_requests: tokenRequests };
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => console.log('ready'));
