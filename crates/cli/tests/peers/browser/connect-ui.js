// The connect page in headless Chromium, screen by screen: the picker and its search, field
// help and validation (client and server side), a failed credential test, the success screen,
// each language (the session's `lang` and the browser's Accept-Language), dark mode, a branded
// page, the full-page flow ending on `return_url`, `access_denied`, a reconnect link, and the
// SDK's events and headless mode. axe-core checks every screen: no serious or critical
// violation. No page may log a Content-Security-Policy violation.
// Env: LATCHKEY_URL, LATCHKEY_API_KEY, HTTPBIN (an httpbin base URL), OAUTH_INTEGRATION (an
// integration whose provider is oidc-provider), SCREENSHOTS (where the PNGs go), CHROMIUM.
// Prints one JSON line per step; exits 1 on the first failed check.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { LATCHKEY_URL, LATCHKEY_API_KEY, HTTPBIN, OAUTH_INTEGRATION, SCREENSHOTS } = process.env;
fs.mkdirSync(SCREENSHOTS, { recursive: true });

let failures = 0;
function check(step, ok, detail) {
  console.log(JSON.stringify({ step, ok: !!ok, detail }));
  if (!ok) failures++;
  return ok;
}

// The app: any path serves a page that loads latchkey.js and records the SDK's events.
const app = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/html');
  res.end(`<!doctype html><html lang="en"><title>Test app</title>
<script src="${LATCHKEY_URL}/latchkey.js"></script>
<main><h1>Test app</h1><button id="connect">Connect</button><pre id="result"></pre></main>
<script>
window.EVENTS = [];
Latchkey.on('opened', (e) => EVENTS.push(e.type));
Latchkey.on('closed', (e) => EVENTS.push(e.type));
document.getElementById('connect').addEventListener('click', () => {
  Latchkey.connect({ token: window.CONNECT_TOKEN, onEvent: (e) => { if (e.type === 'success' || e.type === 'error') EVENTS.push(e.type); } })
    .then((connection) => { document.getElementById('result').textContent = JSON.stringify({ ok: true, connection }); })
    .catch((error) => { document.getElementById('result').textContent = JSON.stringify({ ok: false, code: error.code }); });
});
</script></html>`);
});
await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${app.address().port}`;

async function api(method, url, body, type = 'application/json') {
  const r = await fetch(`${LATCHKEY_URL}${url}`, {
    method,
    headers: { Authorization: `Bearer ${LATCHKEY_API_KEY}`, 'Content-Type': type },
    body: body === undefined ? undefined : (type === 'application/json' ? JSON.stringify(body) : body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, body: json, text };
}

async function session(body) {
  const r = await api('POST', '/v1/connect-sessions', body);
  if (r.status !== 201) throw new Error(`session ${JSON.stringify(body)}: ${r.status} ${r.text}`);
  return r.body;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

const cspErrors = [];
async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 480, height: 860 }, locale: 'en-US', ...options });
  const page = await context.newPage();
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); });
  page.on('popup', (p) => p.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); }));
  return page;
}

// axe-core, evaluated through the DevTools protocol (which the page's CSP does not govern).
async function axe(step, page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  check(`${step}: axe`, bad.length === 0, bad);
}

const shot = (page, name) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });

const connector = `id: hb
name: Httpbin
description: A test API.
category: developer-tools
base_url: ${HTTPBIN}
headers: {X-Team: '{{ config.team }}', X-Region: '{{ config.region }}'}
config:
  - {key: region, label: Region, pattern: '[a-z]{2}', default: us, help: Where your account is hosted., example: eu}
  - {key: team, label: Team name, pattern: '[a-z0-9-]+', help: The name in your workspace address., example: acme}
auth:
  - type: api_key
    fields:
      - {key: user, label: Account name, secret: false, pattern: '[a-z]+', example: ann, help: The name you sign in with.}
      - {key: token, label: API token, pattern: 'tok-[0-9]+', example: tok-123, help: Create one under Settings → API tokens., docs_url: 'https://httpbin.org/#/Auth'}
    apply: {in: header, name: Authorization, value: 'Basic {{ (credentials.user ~ ":" ~ credentials.token) | base64 }}'}
test: {path: /basic-auth/ann/tok-1, label: '{{ response.user }}'}
`;

try {
  let r = await api('PUT', '/v1/connectors/hb', connector, 'application/yaml');
  check('setup: connector', r.status === 200, r.text);
  r = await api('POST', '/v1/integrations', { id: 'hb-app', connector: 'hb' });
  check('setup: integration', r.status === 201, r.text);
  r = await api('PUT', '/v1/environments/default/branding', { custom_css: 'body { background: url(https://evil.example/x.png) }' });
  check('branding: CSS that loads a resource is refused', r.status === 400 && r.body.field === 'custom_css', r.text);

  // The picker: search, then pick.
  {
    const s = await session({ integrations: ['hb-app', OAUTH_INTEGRATION] });
    const page = await newPage();
    await page.goto(s.connect_link);
    check('picker: title', (await page.textContent('h1')) === 'Choose a service to connect');
    check('picker: two choices', (await page.locator('#choices li').count()) === 2);
    await axe('picker', page);
    await page.fill('#q', 'httpb');
    check('picker: search filters', (await page.locator('#choices li:visible').count()) === 1);
    await shot(page, 'picker');
    await page.click('#choices li:visible a');
    await page.waitForSelector('#connect-form');
    check('picker: the pick opens its form', (await page.textContent('h1')) === 'Connect Httpbin');
    check('known values: a default is pre-filled', (await page.inputValue('#f-region')) === 'us');
    check('known values: required config the app did not pass is asked', await page.isVisible('#f-team'));

    // Validation before submit, next to each field.
    await page.click('button[type=submit]');
    check('validation: empty required field', (await page.textContent('#e-team')) === 'Enter your Team name.');
    check('validation: aria-invalid', (await page.getAttribute('#f-team', 'aria-invalid')) === 'true');
    check('validation: focus on the first invalid field', await page.evaluate(() => document.activeElement.id === 'f-team'));
    await page.fill('#f-team', 'Acme!');
    await page.fill('#f-user', 'ann');
    await page.fill('#f-token', 'nope');
    await page.click('button[type=submit]');
    check('validation: pattern with example', (await page.textContent('#e-token')) === 'API token does not have the expected format, for example tok-123.');
    check('validation: help and docs link', (await page.textContent('#h-token')).includes('Settings → API tokens')
      && (await page.getAttribute('#h-token a', 'href')) === 'https://httpbin.org/#/Auth');
    await axe('form with errors', page);
    await shot(page, 'form-errors');

    // The server checks too: a wrong token that matches the pattern is refused by the API.
    await page.fill('#f-team', 'acme');
    await page.fill('#f-token', 'tok-2');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    const summary = await page.textContent('#summary');
    check('credential test: what the API answered', summary.includes('401 Unauthorized') && summary.includes('Httpbin did not accept'), summary);
    check('credential test: non-secret values kept, secrets not', (await page.inputValue('#f-user')) === 'ann' && (await page.inputValue('#f-token')) === '');
    await axe('credential test failed', page);
    await shot(page, 'test-failed');
    await page.fill('#f-token', 'tok-1');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    check('success screen', (await page.textContent('h1')) === 'Connected' && (await page.textContent('.outcome p')).includes('Httpbin is connected'));
    await axe('success', page);
    await shot(page, 'done');
    const polled = await api('GET', `/v1/connect-sessions/${s.id}`);
    check('picker: the session is done', polled.body.status === 'done', polled.body);
    await page.context().close();
  }

  // Server-side validation without the page's script.
  {
    const s = await session({ integration: 'hb-app', config: { team: 'acme' } });
    const r2 = await fetch(s.connect_link, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'user=ann&token=bad' });
    const html = await r2.text();
    check('validation: the server refuses a pattern mismatch', r2.status === 400 && html.includes('API token does not have the expected format'), r2.status);
  }

  // Each language, from the session's lang; the browser's Accept-Language otherwise.
  const titles = { en: 'Connect Httpbin', fr: 'Connecter Httpbin', de: 'Httpbin verbinden', es: 'Conectar Httpbin', ja: 'Httpbin に接続' };
  for (const [lang, title] of Object.entries(titles)) {
    const s = await session({ integration: 'hb-app', lang, config: { team: 'acme' } });
    const page = await newPage();
    await page.goto(s.connect_link);
    check(`lang ${lang}: html lang`, (await page.getAttribute('html', 'lang')) === lang);
    check(`lang ${lang}: title`, (await page.textContent('h1')) === title, await page.textContent('h1'));
    check(`lang ${lang}: config the app passed is not shown`, (await page.locator('#f-team').count()) === 0);
    await page.click('button[type=submit]');
    check(`lang ${lang}: inline error translated`, (await page.textContent('#e-user')).length > 0 && !(lang !== 'en' && (await page.textContent('#e-user')).startsWith('Enter your')));
    await axe(`lang ${lang}`, page);
    await shot(page, `form-${lang}`);
    await page.context().close();
  }
  {
    const s = await session({ integration: 'hb-app', config: { team: 'acme' } });
    const page = await newPage({ locale: 'es-ES' });
    await page.goto(s.connect_link);
    check('lang from Accept-Language', (await page.textContent('h1')) === 'Conectar Httpbin');
    await page.context().close();
  }

  // Dark mode from the system.
  {
    const s = await session({ integration: 'hb-app', config: { team: 'acme' } });
    const page = await newPage({ colorScheme: 'dark' });
    await page.goto(s.connect_link);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check('dark mode: dark background', bg === 'rgb(13, 17, 23)', bg);
    await axe('dark mode', page);
    await shot(page, 'form-dark');
    await page.context().close();
  }

  // A branded page: the environment's name, logo and colour, the integration's theme and CSS.
  {
    const logo = 'data:image/svg+xml;base64,' + Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" rx="14" fill="#7b2ff7"/><text x="32" y="43" font-size="30" text-anchor="middle" fill="#fff" font-family="sans-serif">A</text></svg>').toString('base64');
    r = await api('PUT', '/v1/environments/default/branding', { display_name: 'Acme CRM', logo, primary_color: '#7b2ff7' });
    check('branding: environment set', r.status === 200, r.text);
    r = await api('PUT', '/v1/integrations/hb-app/branding', { theme: 'dark', custom_css: '.card { border-width: 2px; border-color: #7b2ff7; }' });
    check('branding: integration set', r.status === 200, r.text);
    const s = await session({ integration: 'hb-app', config: { team: 'acme' } });
    const page = await newPage();
    await page.goto(s.connect_link);
    check('branding: name', (await page.textContent('header.brand span')) === 'Acme CRM');
    check('branding: inline logo', (await page.getAttribute('header.brand img', 'src')).startsWith('data:image/svg+xml'));
    check('branding: theme', (await page.getAttribute('html', 'data-theme')) === 'dark');
    const button = await page.evaluate(() => getComputedStyle(document.querySelector('button[type=submit]')).backgroundColor);
    check('branding: primary colour', button === 'rgb(123, 47, 247)', button);
    const border = await page.evaluate(() => getComputedStyle(document.querySelector('.card')).borderTopWidth);
    check('branding: custom CSS applies', border === '2px', border);
    await axe('branded', page);
    await shot(page, 'branded');
    await page.context().close();
    await api('PUT', '/v1/environments/default/branding', {});
    await api('PUT', '/v1/integrations/hb-app/branding', {});
  }

  // The full-page flow: no SDK, back to the app's return_url with the outcome.
  {
    const s = await session({ integration: 'hb-app', allowed_origin: origin, return_url: `${origin}/done?from=test`, config: { team: 'acme' } });
    const page = await newPage();
    await page.goto(s.connect_link);
    await page.fill('#f-user', 'ann');
    await page.fill('#f-token', 'tok-1');
    await Promise.all([page.waitForURL(`${origin}/done**`), page.click('button[type=submit]')]);
    const url = new URL(page.url());
    check('full page: back on return_url', url.searchParams.get('from') === 'test' && url.searchParams.get('status') === 'done'
      && url.searchParams.get('session_id') === s.id && !!url.searchParams.get('connection_id'), page.url());
    await page.context().close();
  }

  // access_denied at the provider.
  {
    const s = await session({ integration: OAUTH_INTEGRATION });
    const page = await newPage();
    await page.goto(s.connect_link);
    await page.waitForSelector('input[name=login]');
    await Promise.all([page.waitForURL(`${LATCHKEY_URL}/oauth/callback**`), page.click('text=[ Cancel ]')]);
    check('access_denied: the page says so', (await page.textContent('[role=alert]')).startsWith('Access was not granted'));
    await axe('access_denied', page);
    await shot(page, 'access-denied');
    const polled = await api('GET', `/v1/connect-sessions/${s.id}`);
    check('access_denied: the session failed', polled.body.status === 'failed' && polled.body.error.code === 'access_denied', polled.body);
    await page.context().close();
  }

  // An OAuth connection, then a reconnect link that re-authorises it in place.
  {
    const page = await newPage();
    const consent = async () => {
      const login = await page.waitForSelector('input[name=login], button[type=submit], .outcome', { timeout: 30000 });
      if ((await login.getAttribute('name')) === 'login') {
        await page.fill('input[name=login]', 'alice');
        await page.fill('input[name=password]', 'pass');
        await page.click('button[type=submit]');
      }
      while (!(await page.locator('.outcome').count())) {
        await page.waitForSelector('button[type=submit], .outcome', { timeout: 30000 });
        if (await page.locator('.outcome').count()) break;
        await page.click('button[type=submit]');
        await page.waitForLoadState();
      }
    };
    const first = await session({ integration: OAUTH_INTEGRATION });
    await page.goto(first.connect_link);
    await consent();
    const made = (await api('GET', `/v1/connect-sessions/${first.id}`)).body;
    check('oauth: connected', made.status === 'done', made);
    const again = await session({ reconnect: made.connection_id });
    await page.goto(again.connect_link);
    await consent();
    check('reconnect: success screen', (await page.textContent('h1')) === 'Connected');
    await axe('reconnect', page);
    await shot(page, 'reconnect-done');
    const polled = (await api('GET', `/v1/connect-sessions/${again.id}`)).body;
    check('reconnect: same connection', polled.status === 'done' && polled.connection_id === made.connection_id, polled);
    await page.context().close();
  }

  // The SDK: lifecycle events around a popup, and headless mode.
  {
    const page = await newPage();
    await page.goto(origin);
    const s = await session({ integration: 'hb-app', allowed_origin: origin, config: { team: 'acme' } });
    await page.evaluate((token) => { window.CONNECT_TOKEN = token; }, s.token);
    const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#connect')]);
    await popup.waitForSelector('#f-user');
    await popup.fill('#f-user', 'ann');
    await popup.fill('#f-token', 'tok-1');
    await Promise.all([popup.waitForEvent('close', { timeout: 30000 }), popup.click('button[type=submit]')]);
    await page.waitForFunction(() => window.EVENTS.includes('closed'), null, { timeout: 10000 });
    const events = await page.evaluate(() => window.EVENTS);
    const result = JSON.parse(await page.textContent('#result'));
    check('sdk: events opened, success, closed', JSON.stringify(events) === JSON.stringify(['opened', 'success', 'closed']), events);
    check('sdk: the promise resolves', result.ok === true && result.connection.connector === 'hb', result);

    const picker = await session({ integrations: ['hb-app', OAUTH_INTEGRATION], allowed_origin: origin });
    const headless = await page.evaluate(async (token) => {
      const out = {};
      const s = await Latchkey.headless({ token });
      out.choices = s.choices.map((c) => c.integration);
      const hb = await s.pick('hb-app');
      out.fields = hb.fields.map((f) => f.key);
      out.redirect = hb.redirect;
      try { await hb.submit({ user: 'ann', token: 'bad' }); } catch (e) { out.refused = { code: e.code, fields: e.fields }; }
      const connection = await hb.submit({ team: 'acme', user: 'ann', token: 'tok-1' });
      out.connection = connection.connector;
      return out;
    }, picker.token);
    check('sdk headless: choices', JSON.stringify(headless.choices) === JSON.stringify(['hb-app', OAUTH_INTEGRATION]), headless);
    check('sdk headless: fields', JSON.stringify(headless.fields) === JSON.stringify(['region', 'team', 'user', 'token']) && headless.redirect === false, headless);
    check('sdk headless: refused fields', headless.refused && headless.refused.code === 'invalid_request'
      && headless.refused.fields.token === 'mismatch' && headless.refused.fields.team === 'missing', headless);
    check('sdk headless: connected', headless.connection === 'hb', headless);
    await page.context().close();
  }
  check('no Content-Security-Policy violation', cspErrors.length === 0, cspErrors);
} catch (e) {
  check('no exception', false, String(e && e.stack || e));
} finally {
  await browser.close();
  app.close();
}
process.exit(failures ? 1 : 0);
