// The connect popup in headless Chromium: a test app page calls Latchkey.connect({ token }),
// the popup goes through login and consent at oidc-provider, closes, and the promise settles.
// Env: LATCHKEY_URL, LATCHKEY_API_KEY, INTEGRATION, ARTIFACTS (screenshots), MODE
// (approve | close-early | deny: the user cancels at the provider's login page, which redirects
// back with error=access_denied), CHROMIUM (default /usr/bin/chromium). Prints one JSON line;
// exits 0 when the outcome is the expected one.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { chromium } from 'playwright-core';

const { LATCHKEY_URL, LATCHKEY_API_KEY, INTEGRATION, ARTIFACTS = os.tmpdir(), MODE = 'approve' } = process.env;
fs.mkdirSync(ARTIFACTS, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(ARTIFACTS, `${MODE}-${name}.png`) }).catch(() => {});

const app = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/html');
  res.end(`<!doctype html><title>Test app</title>
<script src="${LATCHKEY_URL}/latchkey.js"></script>
<button id="connect">Connect</button><pre id="result"></pre>
<script>
document.getElementById('connect').addEventListener('click', () => {
  Latchkey.connect({ token: window.CONNECT_TOKEN })
    .then((connection) => { document.getElementById('result').textContent = JSON.stringify({ ok: true, connection }); })
    .catch((error) => { document.getElementById('result').textContent = JSON.stringify({ ok: false, error: error.message, code: error.code }); });
});
</script>`);
});
await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${app.address().port}`;

const api = (method, url, body) => fetch(`${LATCHKEY_URL}${url}`, {
  method,
  headers: { Authorization: `Bearer ${LATCHKEY_API_KEY}`, 'Content-Type': 'application/json' },
  body: body && JSON.stringify(body),
}).then((r) => r.json());

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let outcome;
try {
  const session = await api('POST', '/v1/connect-sessions', { integration: INTEGRATION, allowed_origin: origin });
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(origin);
  await page.evaluate((token) => { window.CONNECT_TOKEN = token; }, session.token);
  await shot(page, '1-app');
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#connect')]);
  if (MODE === 'close-early') {
    await popup.waitForLoadState();
    await shot(popup, '2-provider');
    await popup.close();
  } else if (MODE === 'deny') {
    await popup.waitForSelector('input[name=login]');
    await shot(popup, '2-login');
    await Promise.all([popup.waitForEvent('close', { timeout: 30000 }), popup.click('text=[ Cancel ]')]);
  } else {
    await popup.waitForSelector('input[name=login]');
    await shot(popup, '2-login');
    await popup.fill('input[name=login]', 'alice');
    await popup.fill('input[name=password]', 'pass');
    await popup.click('button[type=submit]');
    await popup.waitForSelector('button[type=submit]');
    await shot(popup, '3-consent');
    await Promise.all([popup.waitForEvent('close', { timeout: 30000 }), popup.click('button[type=submit]')]);
  }
  await page.waitForFunction(() => document.getElementById('result').textContent !== '', null, { timeout: 30000 });
  await shot(page, '4-result');
  const result = JSON.parse(await page.textContent('#result'));
  const polled = await api('GET', `/v1/connect-sessions/${session.id}`);
  outcome = { mode: MODE, result, session: polled };
} finally {
  await browser.close();
  app.close();
}
console.log(JSON.stringify(outcome));
const expected = {
  approve: () => outcome.result.ok === true && outcome.session.status === 'done'
    && outcome.result.connection.id === outcome.session.connection_id,
  'close-early': () => outcome.result.ok === false && outcome.result.code === 'window_closed'
    && outcome.session.status !== 'done',
  deny: () => outcome.result.ok === false && outcome.result.code === 'access_denied'
    && outcome.session.status === 'failed' && outcome.session.error.code === 'access_denied',
};
const ok = expected[MODE]();
process.exit(ok ? 0 : 1);
