// The operator console in headless Chromium: sign in with an API key, create an integration,
// make a connect link and finish it as the end user at oidc-provider, see the connection
// appear, filter, open it and its operations, check and refresh it now, delete it after a
// confirmation, revoke a key, sign out. axe-core
// checks every page (no serious or critical violation), no page may hold a stored secret, and
// no page may break its own Content-Security-Policy. Screenshots of each page go to
// SCREENSHOTS (docs/console/), light and dark, wide and phone-sized.
// Env: LATCHKEY_URL, LATCHKEY_API_KEY (bootstrap, for the REST calls that set up and read
// back), OIDC_SIGN_IN (1: also sign in through OpenID Connect as alice), SCREENSHOTS, CHROMIUM.
// Prints one JSON line; exits 0 when every step passed.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { LATCHKEY_URL, LATCHKEY_API_KEY, SCREENSHOTS = path.join(os.tmpdir(), 'console-shots') } = process.env;
fs.mkdirSync(SCREENSHOTS, { recursive: true });

const api = async (method, url, body) => {
  const response = await fetch(`${LATCHKEY_URL}${url}`, {
    method,
    headers: { Authorization: `Bearer ${LATCHKEY_API_KEY}`, 'Content-Type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
};

const steps = [];
const pages = new Map(); // name -> HTML seen
const violations = [];
const cspErrors = [];
const step = (name, ok, detail) => {
  steps.push({ name, ok: Boolean(ok), detail });
  if (!ok) throw new Error(`step failed: ${name}: ${JSON.stringify(detail)}`);
};

// axe-core, evaluated through the debugging protocol (which the page's CSP does not govern).
async function audit(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      violations.push({ page: name, id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) });
    }
  }
  pages.set(name, await page.content());
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function visit(page, name, { screenshot = true } = {}) {
  await page.waitForLoadState('load');
  await audit(page, name);
  if (screenshot) await shot(page, name);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failure = null;
let secrets = [];
try {
  const made = await api('POST', '/v1/api-keys', { name: 'operator', scopes: ['admin'] });
  step('an admin key for the operator', made.status === 201, made.status);
  const temporary = await api('POST', '/v1/api-keys', { name: 'temporary', scopes: ['proxy'] });
  step('a key to revoke', temporary.status === 201, temporary.status);
  secrets = [made.body.key, temporary.body.key, 'web-secret'];

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (/Content[- ]Security[- ]Policy/i.test(m.text())) cspErrors.push(m.text()); });
  page.on('dialog', (d) => d.accept());

  // Sign in: a wrong key first, then the operator's.
  await page.goto(`${LATCHKEY_URL}/console`);
  step('signed out, the console sends to sign-in', page.url().endsWith('/console/sign-in'), page.url());
  await visit(page, 'sign-in');
  await page.fill('#key', 'lk_wrong');
  await page.click('button[type=submit]');
  step('a wrong key is refused', (await page.textContent('.error')).includes('not valid'));
  await page.fill('#key', made.body.key);
  await page.click('button[type=submit]');
  step('an admin key signs in', page.url() === `${LATCHKEY_URL}/console`, page.url());
  await visit(page, 'overview-empty', { screenshot: false });

  // An integration, made in the console.
  await page.click('nav >> text=Integrations');
  await page.fill('#id', 'op-console');
  await page.selectOption('#connector', 'oidc');
  await page.fill('#client_id', 'latchkey-web');
  await page.fill('#client_secret', 'web-secret');
  await page.fill('#scopes', 'openid');
  await page.click('text=Create integration');
  step('the integration is listed', await page.isVisible('a[href="/console/integrations/op-console"]'));
  step('its secret is only "stored"', !(await page.content()).includes('web-secret'));
  await visit(page, 'integrations');
  await page.click('a[href="/console/integrations/op-console"]');
  await visit(page, 'integration');

  // A connect link, finished by the end user at oidc-provider in a browser of their own.
  await page.click('nav >> text=Connect links');
  await visit(page, 'links');
  await page.selectOption('#integration', 'op-console');
  await page.fill('#end_user', 'alice-user');
  await page.click('#create-link');
  const link = await page.inputValue('#connect-link');
  step('a link is made', link.startsWith(`${LATCHKEY_URL}/connect/`), link);
  await visit(page, 'link-made');
  const endUser = await browser.newContext();
  const popup = await endUser.newPage();
  await popup.goto(link);
  await popup.waitForSelector('input[name=login]');
  await popup.fill('input[name=login]', 'alice');
  await popup.fill('input[name=password]', 'pass');
  await popup.click('button[type=submit]');
  await popup.waitForSelector('button[type=submit]');
  await popup.click('button[type=submit]');
  await popup.waitForURL(/\/oauth\/callback/);
  const finished = await popup.textContent('body');
  step('the end user connected', /Connected/.test(finished), finished.slice(0, 200));
  await endUser.close();

  // The connection appears; filters narrow the list.
  await page.click('nav >> text=Connections');
  const row = page.locator('#connections tbody tr', { hasText: 'op-console' });
  step('the connection appears', (await row.count()) === 1, await row.count());
  const connectionId = (await row.locator('th a').textContent()).trim();
  await visit(page, 'connections');
  await page.selectOption('#f-integration', 'op-console');
  await page.fill('#f-end-user', 'alice-user');
  await page.click('text=Filter');
  step('the filter keeps it', (await page.locator('#connections tbody tr').count()) === 1);
  await page.selectOption('#f-integration', 'op');
  await page.click('text=Filter');
  step('another filter drops it', (await page.locator('#connections tbody tr').count()) === 0);
  await page.fill('#search-id', connectionId);
  await page.click('text=Open');
  step('a search by id opens it', page.url().endsWith(`/console/connections/${connectionId}`), page.url());

  // Check now, then its operations.
  await page.click('#check-now');
  await page.waitForLoadState('load');
  const health = (await page.textContent('#health')).trim();
  step('check now records a check', health === 'healthy' && (await page.textContent('#last-checked')).trim() !== 'never', health);
  await page.click('#refresh-now');
  await page.waitForLoadState('load');
  step('refresh now answers with the connection', page.url().endsWith(`/console/connections/${connectionId}`), page.url());
  let lastRefresh = '';
  for (let tries = 0; tries < 50 && !lastRefresh.includes('success'); tries += 1) {
    await page.reload();
    lastRefresh = await page.locator('dt:text-is("Last refresh") + dd').textContent();
    if (!lastRefresh.includes('success')) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  step('the forced refresh is the last refresh', lastRefresh.includes('success'), lastRefresh);
  await visit(page, 'connection');
  await page.click('#all-operations');
  const kinds = await page.locator('table tbody tr td:nth-child(2)').allTextContents();
  step('its operations include the connect step and the check', kinds.includes('connect') && kinds.includes('check'), kinds);
  await visit(page, 'operations');

  // Some traffic through the proxy (a few answers are errors) for the overview's chart.
  for (let i = 0; i < 12; i += 1) {
    await fetch(`${LATCHKEY_URL}/v1/proxy/${connectionId}/${i % 4 === 0 ? 'nowhere' : 'me'}`, {
      headers: { Authorization: `Bearer ${LATCHKEY_API_KEY}` },
    });
  }
  let logged = 0;
  for (let tries = 0; tries < 100 && logged < 12; tries += 1) {
    const ops = await api('GET', `/v1/operations?connection=${connectionId}&kind=request`);
    logged = ops.body.operations.length;
    if (logged < 12) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  step('the proxied requests are in the operation log', logged >= 12, logged);
  await page.click('nav >> text=Overview');
  const overview = await page.textContent('main');
  step('the overview counts them', overview.includes('12 requests, 3 errors') && overview.includes('op-console'), overview.slice(0, 400));
  await visit(page, 'overview');

  // The token the connection holds must appear on no page.
  const token = await api('GET', `/v1/connections/${connectionId}/token`);
  step('its access token is readable through the API', token.status === 200, token.status);
  secrets.push(token.body.access_token);

  // API keys: revoke the temporary one; make one (shown once).
  await page.click('nav >> text=API keys');
  const temporaryRow = page.locator('#api-keys tbody tr', { hasText: 'temporary' });
  await temporaryRow.locator('button', { hasText: 'Revoke' }).click();
  await page.waitForLoadState('load');
  step('the key is revoked', (await page.locator('#api-keys tbody tr', { hasText: 'temporary' }).textContent()).includes('revoked'));
  const refused = await fetch(`${LATCHKEY_URL}/v1/connections`, { headers: { Authorization: `Bearer ${temporary.body.key}` } });
  step('the revoked key stops working', refused.status === 401, refused.status);
  await visit(page, 'api-keys');
  await page.fill('#name', 'billing-backend');
  await page.check('input[name="scope:proxy"]');
  await page.click('#create-key');
  const shown = await page.inputValue('#created-key');
  step('a new key is shown once', shown.startsWith('lk_'), shown.slice(0, 3));
  const works = await fetch(`${LATCHKEY_URL}/v1/proxy/${connectionId}/me`, { headers: { Authorization: `Bearer ${shown}` } });
  step('and works through the proxy', works.status === 200, works.status);
  await shot(page, 'api-key-made');
  await page.click('nav >> text=API keys');
  step('and is not shown again', !(await page.content()).includes(shown));
  await page.click('nav >> text=Audit log');
  const actions = await page.locator('#audit tbody tr td:nth-child(3)').allTextContents();
  step('the audit log shows the console\'s actions',
    ['console.sign_in', 'integration.create', 'connect_session.create', 'connection.check', 'api_key.revoke'].every((a) => actions.includes(a)), actions);
  await visit(page, 'audit');

  // Deleting needs the id typed in.
  await page.goto(`${LATCHKEY_URL}/console/connections/${connectionId}`);
  await page.fill('#confirm', 'not-the-id');
  await page.click('text=Delete connection');
  step('a wrong confirmation deletes nothing', (await page.textContent('main')).includes('confirm'));
  const kept = await api('GET', `/v1/connections/${connectionId}`);
  step('the connection is still there', kept.status === 200, kept.status);

  // Dark, and on a phone.
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`${LATCHKEY_URL}/console`);
  await visit(page, 'overview-dark');
  await page.goto(`${LATCHKEY_URL}/console/connections/${connectionId}`);
  await visit(page, 'connection-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, storageState: await context.storageState() });
  const small = await phone.newPage();
  await small.goto(`${LATCHKEY_URL}/console/connections`);
  await visit(small, 'connections-phone');
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  step('the phone layout does not scroll sideways', overflow <= 1, overflow);
  await phone.close();

  // Delete it for real, then sign out.
  await page.goto(`${LATCHKEY_URL}/console/connections/${connectionId}`);
  await page.fill('#confirm', connectionId);
  await page.click('text=Delete connection');
  await page.waitForURL(`${LATCHKEY_URL}/console/connections`);
  const gone = await api('GET', `/v1/connections/${connectionId}`);
  step('delete with the id typed in deletes it', gone.status === 404, gone.status);

  // Sign out.
  await page.click('#sign-out');
  step('sign-out goes to sign-in', page.url().endsWith('/console/sign-in'), page.url());
  await page.goto(`${LATCHKEY_URL}/console/connections`);
  step('signed out, pages are closed', page.url().endsWith('/console/sign-in'), page.url());

  if (process.env.OIDC_SIGN_IN === '1') {
    await page.click('#oidc-sign-in');
    await page.waitForSelector('input[name=login]');
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[name=password]', 'pass');
    await page.click('button[type=submit]');
    await page.waitForSelector('button[type=submit]');
    await page.click('button[type=submit]');
    await page.waitForURL(`${LATCHKEY_URL}/console`);
    step('OpenID Connect signs alice in', (await page.textContent('.operator')).includes('alice'));
    await page.click('#sign-out');
    // Someone the provider knows but the console does not allow, in a browser of their own.
    const other = await browser.newContext();
    const stranger = await other.newPage();
    await stranger.goto(`${LATCHKEY_URL}/console/sign-in`);
    await stranger.click('#oidc-sign-in');
    await stranger.waitForSelector('input[name=login]');
    await stranger.fill('input[name=login]', 'mallory');
    await stranger.fill('input[name=password]', 'pass');
    await stranger.click('button[type=submit]');
    await stranger.waitForSelector('button[type=submit]');
    await stranger.click('button[type=submit]');
    await stranger.waitForURL(/\/console\/oidc\/callback/);
    const refusal = await stranger.textContent('.error');
    step('OpenID Connect refuses someone not on the list', refusal.includes('not allowed'), refusal);
    await stranger.goto(`${LATCHKEY_URL}/console`);
    step('and starts no session', stranger.url().endsWith('/console/sign-in'), stranger.url());
    await other.close();
  }

  const leaks = [...pages].filter(([, html]) => secrets.some((secret) => html.includes(secret))).map(([name]) => name);
  step(`none of ${pages.size} pages holds a secret`, leaks.length === 0, leaks);
  step('no serious or critical accessibility violation', violations.length === 0, violations);
  step('no Content-Security-Policy violation', cspErrors.length === 0, cspErrors);
} catch (error) {
  failure = String(error && error.stack || error);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: failure === null, failure, steps, violations, cspErrors, pages: [...pages.keys()] }));
process.exit(failure === null ? 0 : 1);
