// The console in a real browser (ctest console.browser, run by tests/console/run.sh): the real keel
// binary with the shop's plugins and two event fixtures, Debian's Chromium driven by
// playwright-core. Every step names what it checks; a screenshot of each main view is saved.
//   node console.test.mjs --keel BIN --modules NODE_MODULES --plugins DIR --fixtures DIR --out DIR
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
for (const key of ['keel', 'modules', 'plugins', 'fixtures', 'out'])
  if (!args[key]) throw new Error(`console.test.mjs: --${key} is missing`);
const { chromium } = createRequire(path.join(args.modules, 'playwright-core', 'package.json'))('playwright-core');

const TOTAL_MS = 240_000;
const deadline = setTimeout(() => {
  console.error(`FAILED: the test did not finish in ${TOTAL_MS / 1000} s`);
  cleanup().finally(() => process.exit(1));
}, TOTAL_MS);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keel-console-'));
const token = randomBytes(32).toString('hex');
let keel = null;
let browser = null;

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (keel && keel.exitCode === null) {
    keel.kill('SIGTERM');
    await new Promise((resolve) => { keel.once('exit', resolve); setTimeout(resolve, 10_000); });
  }
  if (!process.env.KEEL_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
}

function check(ok, message) {
  if (!ok) throw new Error(message);
}

let stepNo = 0;
async function step(name, fn) {
  stepNo += 1;
  const started = Date.now();
  try {
    await fn();
  } catch (e) {
    e.message = `step ${stepNo} "${name}": ${e.message}`;
    throw e;
  }
  console.log(`ok ${stepNo} - ${name} (${Date.now() - started} ms)`);
}

async function startKeel() {
  const plugins = path.join(tmp, 'plugins');
  fs.mkdirSync(plugins);
  for (const name of ['hello', 'relay', 'catalog', 'orders', 'notifications'])
    fs.copyFileSync(path.join(args.plugins, `${name}.so`), path.join(plugins, `${name}.so`));
  for (const name of ['events_pub', 'events_sub'])
    fs.copyFileSync(path.join(args.fixtures, `${name}.so`), path.join(plugins, `${name}.so`));
  const config = path.join(tmp, 'keel.toml');
  fs.writeFileSync(config, [
    '[server]', 'listen = "127.0.0.1:0"', `data_dir = "${path.join(tmp, 'data')}"`,
    '[admin]', `token = "${token}"`,
    '[plugins]', `directory = "${plugins}"`,
    '[events]', 'max_attempts = 2', 'retry_base_ms = 10', ''].join('\n'), { mode: 0o600 });
  const portFile = path.join(tmp, 'port');
  const log = fs.openSync(path.join(tmp, 'keel.log'), 'w');
  keel = spawn(args.keel, ['serve', '--config', config, '--port-file', portFile], { stdio: ['ignore', log, log] });
  for (let i = 0; i < 300 && !fs.existsSync(portFile); ++i) {
    check(keel.exitCode === null, `keel exited with ${keel.exitCode}; log: ${path.join(tmp, 'keel.log')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  check(fs.existsSync(portFile), 'keel did not write its port file within 30 s');
  return `http://127.0.0.1:${fs.readFileSync(portFile, 'utf8').trim()}`;
}

async function http(base, method, url, body, headers = {}) {
  const res = await fetch(base + url, {
    method, body: body === undefined || typeof body === 'string' ? body : JSON.stringify(body),
    headers: { ...(body === undefined || typeof body === 'string' ? {} : { 'Content-Type': 'application/json' }), ...headers },
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { json = null; }
  return { status: res.status, headers: res.headers, text, json };
}

async function eventually(what, probe, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    check(Date.now() < until, `${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  fs.mkdirSync(args.out, { recursive: true });
  const base = await startKeel();
  const admin = { Authorization: `Bearer ${token}` };

  await step('the console is served with a strict Content-Security-Policy, its data is not', async () => {
    const page = await http(base, 'GET', '/admin/ui/');
    check(page.status === 200, `GET /admin/ui/ answered ${page.status}`);
    const csp = page.headers.get('content-security-policy') || '';
    check(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe'),
      `Content-Security-Policy: ${csp}`);
    check(!/<script(?![^>]*\bsrc=)/i.test(page.text), 'index.html holds an inline script');
    check((await http(base, 'GET', '/admin/plugins')).status === 401, 'the admin API answered without a token');
  });

  browser = await chromium.launch({ executablePath: process.env.KEEL_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`); });
  const tokenRequests = [];
  page.on('request', (r) => { if (r.url().includes(token)) tokenRequests.push(r.url()); });
  const shot = (name) => page.screenshot({ path: path.join(args.out, `${name}.png`), fullPage: true });

  await step('a wrong token is refused on the sign-in form', async () => {
    await page.goto(`${base}/admin/ui/`);
    await page.getByLabel('Admin token').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#login-error').getByText('not accepted').waitFor();
    await shot('sign-in');
  });

  await step('signing in with the admin token shows every plugin started', async () => {
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const rows = page.locator('#modules tbody tr[data-plugin]');
    await page.locator('#modules tbody tr[data-plugin="notifications"]').waitFor();
    const names = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.plugin));
    for (const name of ['hello', 'relay', 'catalog', 'orders', 'notifications', 'events_pub', 'events_sub'])
      check(names.includes(name), `no row for ${name} (rows: ${names.join(', ')})`);
    for (const name of names) {
      const state = (await page.locator(`#modules tr[data-plugin="${name}"] .badge`).first().textContent()).trim();
      check(state === 'started', `${name} is ${state}`);
    }
    check(await page.evaluate(() => sessionStorage.length === 1 && localStorage.getItem('keel.console.token') === null),
      'the token is not kept in sessionStorage only');
  });

  const stateOf = (name) => page.locator(`#modules tr[data-plugin="${name}"] td[data-label="State"]`).textContent();
  await step('disable and enable notifications from the console', async () => {
    await page.getByRole('button', { name: 'Disable notifications' }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Disable' }).click();
    await page.locator('#confirm-answer.ok').waitFor();
    await page.locator('#confirm').getByRole('button', { name: 'Close' }).click();
    await eventually('notifications shown disabled', async () => (await stateOf('notifications')).trim() === 'disabled');
    const api = await http(base, 'GET', '/admin/plugins', undefined, admin);
    check(api.json.find((p) => p.name === 'notifications').state === 'disabled', 'the API does not say disabled');
    await page.getByRole('button', { name: 'Enable notifications' }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Enable' }).click();
    await page.locator('#confirm-answer.ok').waitFor();
    await page.locator('#confirm').getByRole('button', { name: 'Close' }).click();
    await eventually('notifications shown started', async () => (await stateOf('notifications')).trim() === 'started');
  });

  await step('a reload the host refuses shows the reason', async () => {
    // A plugin whose file is gone cannot be reloaded: the refusal comes back with its reason.
    fs.renameSync(path.join(tmp, 'plugins', 'relay.so'), path.join(tmp, 'relay.so.away'));
    await page.getByRole('button', { name: 'Reload relay' }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Reload' }).click();
    await page.locator('#confirm-answer.bad').waitFor();
    const reason = await page.locator('#confirm-answer').textContent();
    check(/relay/.test(reason), `the refusal names no reason: ${reason}`);
    await page.locator('#confirm').getByRole('button', { name: 'Close' }).click();
    fs.renameSync(path.join(tmp, 'relay.so.away'), path.join(tmp, 'plugins', 'relay.so'));
  });

  const generationOf = async (name) =>
    Number((await page.locator(`#modules tr[data-plugin="${name}"] td[data-label="Generation"]`).textContent()).trim());
  await step('upload a new build of hello: its pre-flight is shown, then it is installed with a new generation', async () => {
    const before = await generationOf('hello');
    await page.getByRole('button', { name: 'Deploy a plugin' }).click();
    await page.setInputFiles('#deploy-file', path.join(args.plugins, 'hello.so'));
    await page.locator('#deploy').getByRole('button', { name: 'Check' }).click();
    await page.locator('#deploy-report.ok').waitFor();
    const report = await page.locator('#deploy-report').textContent();
    for (const part of ['hello 0.1.0', 'GET /greet/{name}', `generation ${before}`, 'SHA-256'])
      check(report.includes(part), `the pre-flight report lacks "${part}": ${report}`);
    await shot('deploy-preflight');
    await page.locator('#deploy').getByRole('button', { name: 'Install' }).click();
    await page.locator('#deploy-done').waitFor();
    check((await page.locator('#deploy-done').textContent()).includes(`generation ${before + 1}`), 'the answer lacks the new generation');
    await page.locator('#deploy').getByRole('button', { name: 'Close' }).click();
    await eventually('hello shown with the next generation', async () => (await generationOf('hello')) === before + 1);
  });

  await step('a broken file is refused at pre-flight and nothing is installed', async () => {
    const broken = path.join(tmp, 'broken.so');
    fs.writeFileSync(broken, fs.readFileSync(path.join(args.plugins, 'hello.so')).subarray(0, 4096));
    const files = fs.readdirSync(path.join(tmp, 'plugins')).sort().join(',');
    await page.getByRole('button', { name: 'Deploy a plugin' }).click();
    await page.setInputFiles('#deploy-file', broken);
    await page.locator('#deploy').getByRole('button', { name: 'Check' }).click();
    await page.locator('#deploy-report.bad').waitFor();
    check((await page.locator('#deploy-report').textContent()).includes('refused'), 'no refusal shown');
    check(await page.locator('#deploy-install').isDisabled(), 'Install is offered for a refused file');
    await shot('deploy-refused');
    await page.locator('#deploy').getByRole('button', { name: 'Cancel' }).click();
    check(fs.readdirSync(path.join(tmp, 'plugins')).sort().join(',') === files, 'the plugin directory changed');
  });

  await step('traffic shows as requests per second', async () => {
    for (let i = 0; i < 50; ++i) await http(base, 'GET', `/api/hello/greet/n${i}`);
    await eventually('hello shows requests', async () => {
      const text = await page.locator('#modules tr[data-plugin="hello"] td[data-label="Requests/s"] .v').textContent();
      return Number.parseFloat(text) > 0;
    });
    await eventually('hello shows a p99', async () =>
      /ms/.test(await page.locator('#modules tr[data-plugin="hello"] td[data-label="p99"] .v').textContent()));
    await shot('modules');
  });

  await step('the module map shows orders -> catalog and the event flow to notifications', async () => {
    await page.getByRole('link', { name: 'Map' }).click();
    await page.locator('#module-map').waitFor();
    check(await page.locator('g.edge-group[data-from="orders"][data-to="catalog"][data-kind="dep"]').count() === 1,
      'no dependency edge orders -> catalog');
    check(await page.locator('g.edge-group[data-from="orders"][data-to="notifications"][data-kind="event"]').count() === 1,
      'no event edge orders -> notifications');
  });

  await step('an order placed through the API is counted in the events view', async () => {
    const product = await http(base, 'POST', '/api/catalog/products',
      { sku: 'MUG-1', name: 'Mug', price_cents: 1250, currency: 'EUR', stock: 5 });
    check(product.status === 201, `product: ${product.status} ${product.text}`);
    const order = await http(base, 'POST', '/api/orders/orders', { items: [{ product_id: product.json.id, quantity: 2 }] },
      { 'Idempotency-Key': 'console-test-order-1' });
    check(order.status === 201, `order: ${order.status} ${order.text}`);
    // The call orders made to catalog shows on the map.
    await eventually('the map shows the call orders -> catalog', async () =>
      await page.locator('g.edge-group[data-from="orders"][data-to="catalog"][data-kind="call"]').count() === 1);
    await shot('map');
    await page.getByRole('link', { name: 'Events' }).click();
    await eventually('orders.placed counted', async () => {
      const cell = page.locator('td[data-topic="orders/orders.placed"]');
      return (await cell.count()) === 1 && (await cell.textContent()).trim() === '1';
    });
  });

  await step('a dead letter is resubmitted from the console', async () => {
    const published = await http(base, 'POST', '/api/events_pub/durable/1', 'fail:99-console');
    check(published.status === 200, `publish: ${published.status} ${published.text}`);
    const row = page.locator('#dead-letters tr[data-dead-letter]');
    await eventually('the dead letter is listed', async () => (await row.count()) === 1);
    check((await row.locator('.payload').textContent()).includes('fail:99-console'), 'the payload preview is missing');
    await shot('events');
    check((await http(base, 'POST', '/api/events_sub/heal')).status === 200, 'the subscriber did not heal');
    await row.getByRole('button', { name: 'Resubmit' }).click();
    await page.locator('#confirm').getByRole('button', { name: 'Resubmit' }).click();
    await page.locator('#confirm-answer.ok').waitFor();
    await page.locator('#confirm').getByRole('button', { name: 'Close' }).click();
    await eventually('delivered after the resubmission', async () =>
      (await http(base, 'GET', '/api/events_sub/attempt?payload=fail:99-console0')).status === 200);
    await eventually('the dead letter is gone from the view', async () => (await row.count()) === 0);
  });

  await step('routes and the OpenAPI document are shown', async () => {
    await page.getByRole('link', { name: 'Routes' }).click();
    await page.locator('#routes tbody tr').first().waitFor();
    check(await page.locator('#routes').getByText('/api/orders/orders/{id}/pay').count() === 1, 'no pay route in the table');
    await page.locator('#openapi details').first().waitFor();
    await shot('routes');
  });

  await step('the live log: lines as they come, filtered by module, a request\'s spans on a click', async () => {
    await page.getByRole('link', { name: 'Logs' }).click();
    await eventually('the stream is live', async () => /^Live/.test(await page.locator('#log-state').textContent()));
    const relayed = await http(base, 'GET', '/api/relay/greet/ada', undefined, { 'X-Request-Id': 'console-log-1' });
    check(relayed.status === 200, `relay: ${relayed.status}`);
    const requestButton = page.locator('#log-lines button[data-request="console-log-1"]');
    await eventually('the request\'s lines are shown', async () => (await requestButton.count()) >= 2);
    // Only hello's lines: the call relay made to it, not relay's own request line.
    await page.selectOption('#log-plugin', 'hello');
    await eventually('hello\'s lines are shown', async () =>
      (await page.locator('#log-lines li', { hasText: 'caller=relay target=hello' }).count()) === 1);
    check(await page.locator('#log-lines li', { hasText: 'target=/api/relay/greet/ada' }).count() === 0,
      'a line of relay\'s request passed the filter for hello');
    await page.locator('#log-lines button[data-request="console-log-1"]').first().click();
    await page.locator('#request-spans tr[data-kind="call"]').waitFor();
    check(await page.locator('#request-spans tr[data-kind="request"]').count() === 1, 'the request\'s own span is missing');
    check((await page.locator('#request-spans tr[data-kind="call"]').textContent()).includes('relay → hello'),
      'the call span does not name relay → hello');
    await shot('logs');
    await page.selectOption('#log-plugin', '');
  });

  await step('the dark theme and a phone-sized screen', async () => {
    await page.getByRole('button', { name: /theme/ }).click();
    check(await page.evaluate(() => document.documentElement.dataset.theme) === 'dark', 'the theme did not switch');
    await page.getByRole('link', { name: 'Modules' }).click();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('#modules tr[data-plugin="hello"]').waitFor();
    await shot('modules-phone-dark');
    await page.getByRole('button', { name: /theme/ }).click();
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  await step('a link with #token= signs in and the token leaves the address bar', async () => {
    const other = await context.newPage();
    await other.goto(`${base}/admin/ui/#token=${token}`);
    await other.locator('#modules tr[data-plugin="hello"]').waitFor();
    check(!other.url().includes(token), `the token is still in the address: ${other.url()}`);
    await other.close();
  });

  await step('no script error, no CSP violation, the token never in a URL', async () => {
    check(problems.length === 0, problems.join('\n'));
    check(tokenRequests.length === 0, `requests with the token in their URL: ${tokenRequests.join(', ')}`);
    const log = fs.readFileSync(path.join(tmp, 'keel.log'), 'utf8');
    check(!log.includes(token), 'the admin token is in the host log');
  });
}

let failed = false;
try {
  await main();
  console.log(`all ${stepNo} steps passed; screenshots in ${args.out}`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack || e.message}`);
  try {
    console.error(`--- keel log (last lines) ---\n${fs.readFileSync(path.join(tmp, 'keel.log'), 'utf8').split('\n').slice(-30).join('\n')}`);
  } catch { /* no log yet */ }
} finally {
  clearTimeout(deadline);
  await cleanup();
}
process.exit(failed ? 1 : 0);
