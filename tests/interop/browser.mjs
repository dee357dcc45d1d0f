// Real-browser scenarios for ferryd's page (issue 10 point 8), driven by playwright-core with
// Debian's chromium. Usage: node browser.mjs SCENARIO '{"url":…,"token":…,"dir":…,"out":…}'
// The Rust test (tests/tests/e2e/browser.rs) starts ferryd, writes the fixtures into `dir`,
// runs one scenario and then checks on the server what it should have done. Every wait is on
// a condition, never a fixed sleep. Exit status 0 and a last line `OK {json}` on success.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const [scenario, raw] = process.argv.slice(2);
const cfg = JSON.parse(raw);
const T = 60_000;

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

async function open(browser, opts = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...opts });
  const page = await context.newPage();
  const log = [];
  page.on('request', (r) => {
    if (!r.url().includes('/files/')) return;
    const h = r.headers();
    log.push({ method: r.method(), url: r.url(), offset: h['upload-offset'], concat: h['upload-concat'], sum: h['upload-checksum'], at: Date.now() });
  });
  page.on('pageerror', (e) => { throw new Error(`page error: ${e.message}`); });
  page.on('dialog', (d) => (d.type() === 'beforeunload' ? d.accept() : d.dismiss()));
  return { context, page, log };
}

/** Upload throughput in bytes/s (Chromium network emulation), so a test can act mid-upload. */
async function throttle(context, page, bytesPerSec) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: bytesPerSec,
  });
}

const uploadsSettled = (page) => page.waitForFunction(
  () => window.ferryUploads?.length && window.ferryUploads.every((u) => u.finished), null, { timeout: T });
const statuses = (page) => page.evaluate(() => window.ferryUploads.map((u) => [u.rel, u.status, u.error?.message ?? null]));
const listed = (page, name) => page.waitForFunction(
  (n) => [...document.querySelectorAll('#listing td.n a')].some((a) => a.textContent === n), name, { timeout: T });

async function allDone(page) {
  await uploadsSettled(page);
  const st = await statuses(page);
  check(st.every(([, s]) => s === 'done' || s === 'instant'), JSON.stringify(st));
  return st;
}

const scenarios = {
  // (a) several files through the file input and a folder with nested subfolders.
  async files_and_folder(browser) {
    const { page } = await open(browser);
    await page.goto(`${cfg.url}inbox/#token=${cfg.token}`);
    await page.setInputFiles('#pick-files', [path.join(cfg.dir, 'one.txt'), path.join(cfg.dir, 'two.bin')]);
    await page.setInputFiles('#pick-folder', path.join(cfg.dir, 'tree'));
    await allDone(page);
    for (const n of ['one.txt', 'two.bin', 'tree/']) await listed(page, n);
    return statuses(page);
  },

  // (h) hostile names render as text, in the listing and in the upload queue.
  async xss_names(browser) {
    const { page } = await open(browser);
    let dialogs = 0;
    page.on('dialog', () => { dialogs += 1; });
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    await page.waitForSelector('#upload');
    const names = await page.$$eval('#listing td.n a', (as) => as.map((a) => a.textContent));
    for (const n of cfg.names) check(names.includes(n), `listed as text: ${JSON.stringify(n)} in ${JSON.stringify(names)}`);
    check(await page.locator('#listing img').count() === 0, 'no element made from a name');
    await page.setInputFiles('#pick-files', { name: cfg.upload, mimeType: 'text/plain', buffer: Buffer.from('x') });
    await allDone(page);
    await listed(page, cfg.upload);
    check(await page.locator('#queue .name').first().textContent() === cfg.upload, 'queue row as text');
    check(dialogs === 0 && await page.evaluate(() => window.pwned === undefined), 'nothing ran');
    return names;
  },

  // (e) the same bytes under another name: no PATCH, published, "already on the server".
  async instant(browser) {
    const { page, log } = await open(browser);
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    await page.setInputFiles('#pick-files', path.join(cfg.dir, 'orig.bin'));
    await allDone(page);
    // The content index hashes published files in the background: wait until it has it.
    await page.evaluate(async ([size, token, limit]) => {
      const until = Date.now() + limit;
      while (Date.now() < until) {
        const r = await fetch('/files/', { method: 'OPTIONS', headers: { 'Ferry-Instant-Length': String(size), Authorization: `Bearer ${token}` } });
        if (r.headers.get('Ferry-Instant-Candidate') === '?1') return;
        await new Promise((ok) => { setTimeout(ok, 50); });
      }
      throw new Error('the content index never had the file');
    }, [cfg.size, cfg.token, T]);
    const before = log.length;
    await page.setInputFiles('#pick-files', path.join(cfg.dir, 'copy.bin'));
    await allDone(page);
    const second = log.slice(before);
    check(!second.some((r) => r.method === 'PATCH'), `no PATCH: ${JSON.stringify(second)}`);
    check(second.filter((r) => r.method === 'POST').length === 1, 'one creation');
    const st = await statuses(page);
    check(st[1][1] === 'instant', JSON.stringify(st));
    await page.waitForSelector('#queue li:nth-child(2) .st.ok');
    await listed(page, 'copy.bin');
    return second;
  },

  // (c) reload past 25 % of a 64 MiB upload (two parts joined by concatenation), pick the file
  // again: no new creation, each part's first PATCH starts at the offset the server gave.
  async reload_resume(browser) {
    const { context, page, log } = await open(browser);
    await throttle(context, page, 24 * 1024 * 1024);
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    const file = path.join(cfg.dir, 'big.bin');
    await page.setInputFiles('#pick-files', file);
    // Past 25 % on the server: confirmed chunks (a cut checksummed PATCH is not kept).
    await page.waitForFunction((n) => window.ferryUploads?.[0]?.acked > n / 4, cfg.size, { timeout: T, polling: 50 });
    const parts = log.filter((r) => r.method === 'POST' && r.concat === 'partial').length;
    check(parts >= 2, `a big file goes as parts: ${JSON.stringify(log)}`);
    await page.reload();
    await page.waitForSelector('#pending:not([hidden])');
    const pending = await page.locator('#pending').textContent();
    check(pending.includes('big.bin'), `unfinished upload listed: ${pending}`);
    const heads = {};
    page.on('response', (r) => {
      // The first HEAD of each upload after the reload (the final upload has no offset yet).
      if (r.request().method() === 'HEAD' && r.url().includes('/files/') && !(r.url() in heads)) heads[r.url()] = r.headers()['upload-offset'];
    });
    const from = log.length;
    await page.setInputFiles('#pick-files', file);
    await allDone(page);
    const after = log.slice(from);
    check(!after.some((r) => r.method === 'POST'), `no new creation: ${JSON.stringify(after)}`);
    const patched = [...new Set(after.filter((r) => r.method === 'PATCH').map((r) => r.url))];
    check(patched.length >= 1, `parts sent after the reload: ${JSON.stringify(after)}`);
    let offset = 0;
    for (const url of patched) {
      const first = after.find((r) => r.method === 'PATCH' && r.url === url);
      check(heads[url] !== undefined && Number(first.offset) === Number(heads[url]), `first PATCH of ${url} at ${first.offset}, server had ${heads[url]}`);
    }
    for (const v of Object.values(heads)) offset += Number(v || 0);
    check(offset > cfg.size / 4, `server kept more than 25 %: ${offset}`);
    return { offset, parts, after };
  },

  // (f) pause and resume one upload, cancel another.
  async pause_cancel(browser) {
    const { context, page, log } = await open(browser);
    await throttle(context, page, 8 * 1024 * 1024);
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    await page.setInputFiles('#pick-files', [path.join(cfg.dir, 'p.bin'), path.join(cfg.dir, 'c.bin')]);
    await page.waitForFunction(() => window.ferryUploads?.length === 2 && window.ferryUploads.every((u) => u.sent > 0), null, { timeout: T, polling: 50 });
    const [pause, cancel] = [page.locator('#queue li').nth(0).locator('button').first(), page.locator('#queue li').nth(1).locator('button', { hasText: 'Cancel' })];
    await pause.click();
    await page.waitForFunction(() => window.ferryUploads[0].status === 'paused');
    const held = await page.evaluate(() => window.ferryUploads[0].sent);
    await cancel.click();
    await page.waitForFunction(() => window.ferryUploads[1].status === 'cancelled', null, { timeout: T });
    check(log.some((r) => r.method === 'DELETE'), 'cancel terminates the upload');
    check(await pause.textContent() === 'Resume', 'the button now resumes');
    await pause.click();
    await page.waitForFunction(() => window.ferryUploads[0].status === 'done', null, { timeout: T });
    const patches = log.filter((r) => r.method === 'PATCH' && r.url === log.find((x) => x.method === 'HEAD')?.url);
    return { held, patches: patches.map((p) => p.offset) };
  },

  // (g) token: from the fragment (and gone from the address bar); asked for; a wrong one.
  async token(browser) {
    const a = await open(browser);
    await a.page.goto(`${cfg.url}#token=${cfg.token}`);
    await a.page.waitForSelector('#upload');
    check(!a.page.url().includes('#'), `fragment removed: ${a.page.url()}`);
    check(await a.page.locator('#token-form').isHidden(), 'no prompt with a token');
    const b = await open(browser);
    await b.page.goto(cfg.url);
    await b.page.waitForSelector('#token-form:not([hidden])');
    check((await b.page.locator('#upload-error').textContent()).length > 0, 'says a token is needed');
    await b.page.fill('#token', 'wrong-token');
    await b.page.click('#token-form button[type=submit]');
    await b.page.setInputFiles('#pick-files', path.join(cfg.dir, 'one.txt'));
    await b.page.waitForFunction(() => window.ferryUploads?.[0]?.status === 'failed', null, { timeout: T });
    await b.page.waitForSelector('#token-form:not([hidden])');
    const msg = await b.page.locator('#upload-error').textContent();
    check(/refused/.test(msg), `clear message: ${msg}`);
    await b.page.fill('#token', cfg.token);
    await b.page.click('#token-form button[type=submit]');
    await allDone(b.page);
    await listed(b.page, 'one.txt');
    return msg;
  },

  // (g) under --read-token: the token from the fragment becomes a cookie; a wrong one is said.
  async read_token(browser) {
    const a = await open(browser);
    await a.page.goto(`${cfg.url}#token=${cfg.token}&read-token=${cfg.read}`);
    await a.page.waitForSelector('#upload');
    check(!a.page.url().includes('#'), `fragment removed: ${a.page.url()}`);
    await listed(a.page, 'a.txt');
    await a.page.setInputFiles('#pick-files', path.join(cfg.dir, 'one.txt'));
    await allDone(a.page);
    await listed(a.page, 'one.txt');
    const b = await open(browser);
    await b.page.goto(cfg.url);
    await b.page.fill('#read-token', 'wrong-token');
    await b.page.click('#open');
    await b.page.waitForFunction(() => document.getElementById('login-error')?.textContent.length > 0, null, { timeout: T });
    const msg = await b.page.locator('#login-error').textContent();
    check(/refused/.test(msg), `clear message: ${msg}`);
    await b.page.fill('#read-token', cfg.read);
    await b.page.click('#open');
    await listed(b.page, 'one.txt');
    return msg;
  },

  // (d) offline mid-upload and back: it finishes by itself.
  async offline(browser) {
    const { context, page } = await open(browser);
    await throttle(context, page, 8 * 1024 * 1024);
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    await page.setInputFiles('#pick-files', path.join(cfg.dir, 'p.bin'));
    await page.waitForFunction(() => window.ferryUploads?.[0]?.sent > 1048576, null, { timeout: T, polling: 50 });
    await context.setOffline(true);
    await page.waitForFunction(() => ['offline', 'retrying', 'done', 'failed'].includes(window.ferryUploads[0].status), null, { timeout: T });
    const seen = await page.evaluate(() => window.ferryUploads[0].history);
    await context.setOffline(false);
    await allDone(page);
    const all = await page.evaluate(() => window.ferryUploads[0].history);
    check(seen.includes('offline') || seen.includes('retrying'), `noticed the drop: ${JSON.stringify(all)}`);
    return all;
  },

  // (b) drop files on the page (a synthetic drop: DataTransfer.files, the fallback path).
  async drop(browser) {
    const { page } = await open(browser);
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    await page.waitForSelector('#upload');
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['dropped one'], 'drop1.txt', { type: 'text/plain' }));
      dt.items.add(new File(['dropped two'], 'drop2.txt', { type: 'text/plain' }));
      document.querySelector('main').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await allDone(page);
    await listed(page, 'drop2.txt');
    return statuses(page);
  },

  // (i) keyboard only: Tab to the button, Enter opens the picker, the upload finishes.
  async keyboard(browser) {
    const { page } = await open(browser);
    await page.goto(`${cfg.url}#token=${cfg.token}`);
    await page.waitForSelector('#upload');
    // The page settles first (listing enhancement, pending-upload check), so nothing moves the
    // focus between Tab and Enter: a full run once timed out waiting for the picker here.
    await page.waitForLoadState('networkidle');
    let id = '';
    for (let i = 0; i < 30 && id !== 'btn-files'; i += 1) {
      await page.keyboard.press('Tab');
      id = await page.evaluate(() => document.activeElement?.id);
    }
    check(id === 'btn-files', 'Tab reaches the upload button');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check(outline !== 'none', 'focus is visible');
    const chooser = page.waitForEvent('filechooser', { timeout: T });
    check(await page.evaluate(() => document.activeElement?.id) === 'btn-files', 'focus stays on the button');
    await page.keyboard.press('Enter');
    await (await chooser).setFiles(path.join(cfg.dir, 'one.txt'));
    await allDone(page);
    await listed(page, 'one.txt');
    return id;
  },

  // Point 2: sortable columns with aria-sort (folders stay first), the filter box, the
  // download attribute, Simplified Chinese from navigator.language.
  async listing(browser) {
    const { page } = await open(browser);
    await page.goto(cfg.url);
    await page.waitForSelector('#filter');
    const names = () => page.$$eval('#listing tbody td.n > a', (as) => as.map((a) => a.textContent));
    check(JSON.stringify(await names()) === JSON.stringify(['zdir/', 'a.txt', 'b.txt', 'c.txt']), `folders first: ${await names()}`);
    await page.click('#listing th.s button');
    check(await page.getAttribute('#listing th.s', 'aria-sort') === 'ascending', 'aria-sort on the sorted column');
    check(await page.getAttribute('#listing th.n', 'aria-sort') === null, 'only one column sorted');
    check(JSON.stringify(await names()) === JSON.stringify(['zdir/', 'b.txt', 'c.txt', 'a.txt']), `by size: ${await names()}`);
    await page.click('#listing th.s button');
    check(await page.getAttribute('#listing th.s', 'aria-sort') === 'descending', 'descending on a second click');
    check(JSON.stringify(await names()) === JSON.stringify(['zdir/', 'a.txt', 'c.txt', 'b.txt']), `by size, descending: ${await names()}`);
    await page.fill('#filter', 'B.T');
    await page.waitForFunction(() => document.querySelectorAll('#listing tbody td.n > a').length === 1);
    check(await page.getAttribute('#listing a[download]', 'download') === 'b.txt', 'download attribute');
    check((await page.getAttribute('#listing td.s', 'title')).includes('1,000'), 'exact bytes on hover');
    const zh = await open(browser, { locale: 'zh-CN' });
    await zh.page.goto(`${cfg.url}#token=${cfg.token}`);
    await zh.page.waitForSelector('#btn-files');
    const label = await zh.page.textContent('#btn-files');
    check(label === '上传文件', `Chinese strings: ${label}`);
    check(await zh.page.getAttribute('html', 'lang') === 'zh-CN', 'lang follows');
    return label;
  },

  // (j) screenshots: light, dark, phone (390×844), under `out`.
  async screenshots(browser) {
    mkdirSync(cfg.out, { recursive: true });
    const shots = [['light', {}], ['dark', { colorScheme: 'dark' }],
      ['phone', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }],
      ['phone-dark', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, colorScheme: 'dark' }]];
    const files = [];
    for (const [name, opts] of shots) {
      const { page } = await open(browser, { colorScheme: 'light', viewport: { width: 1100, height: 760 }, ...opts });
      await page.goto(`${cfg.url}docs/#token=${cfg.token}`);
      await page.setInputFiles('#pick-files', path.join(cfg.dir, 'one.txt'));
      await allDone(page);
      await listed(page, 'one.txt');
      const file = path.join(cfg.out, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      files.push(file);
    }
    return files;
  },
};

// The upload side's further scenarios (checksums, parts, paste, leaving, folder drop, Retry-After).
Object.assign(scenarios, (await import('./browser-upload.mjs')).default({
  cfg, T, check, open, throttle, allDone, listed, statuses,
}));

const browser = await chromium.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  // Playwright gives every launch a fresh temporary --user-data-dir of its own.
  args: ARGS,
});
try {
  const result = await scenarios[scenario](browser);
  console.log(`OK ${JSON.stringify(result)}`);
} catch (e) {
  console.error(`FAILED ${scenario}: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
