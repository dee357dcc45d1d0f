// Browser-side figures for bench/ui/upload.sh, each run in a fresh browser:
//   node upload.mjs URL page[@AT] FILE PUBLISHED [SHOT.png]
//   node upload.mjs URL uppy[?QUERY] FILE PUBLISHED [SHOT.png]
// upload FILE through ferryd's page, or through Uppy 6 (Dashboard + Tus, served from
// ROOT/uppy-bench/; QUERY = the Tus options of bench/ui/uppy/bench.mjs), and print
// `SECONDS`: from setting the file on the page's input to ferryd having published it (the
// file PUBLISHED in ROOT at its full size) and the page reporting the upload done. With SHOT a
// screenshot of the page is taken once 40 % is sent (that run is not a figure). Then prints
// `cpu SECONDS`: the CPU the browser (node and every chromium process) used.
//   node upload.mjs URL hash[@AT] FILE
// prints the SHA-256 speed of the page's hashing worker over FILE (picked like an upload), MB/s.
// @AT (a path on ferryd, e.g. /ui-try/) loads the page's assets from there instead of from the
// ones compiled into ferryd: the listing's asset prefix is rewritten while the page loads (only
// that document is intercepted; interception stays off while bytes move, it would carry every
// PATCH body through the DevTools protocol). upload.sh copies a directory of assets there.
import { createRequire } from 'node:module';
import { appendFileSync, readdirSync, readFileSync, statSync } from 'node:fs';

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const [base, which, arg, published, shot] = process.argv.slice(2);
const T = 600_000;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

/** Resolves with the time (ms, Date.now()) at which `path` first has `size` bytes. */
function whenPublished(path, size) {
  return new Promise((ok) => {
    const look = () => {
      let n = -1;
      try { n = statSync(path).size; } catch { /* not yet */ }
      if (n === size) ok(Date.now()); else setTimeout(look, 5);
    };
    look();
  });
}

/** Sets `file` on `input`, takes the screenshot past 40 % (`sent()` in 0..1), waits for
 * `done()` in the page and for the published file; returns seconds. */
async function timed(page, input, file, sent, done) {
  const { size } = statSync(file);
  const t0 = Date.now();
  const pub = whenPublished(published, size);
  await input.setInputFiles(file);
  if (shot) {
    await page.waitForFunction(sent, null, { timeout: T, polling: 50 });
    await page.screenshot({ path: shot });
  }
  await page.waitForFunction(done, null, { timeout: T, polling: 20 });
  const t1 = Date.now();
  const t2 = await pub;
  return (Math.max(t1, t2) - t0) / 1000;
}

/** Opens ferryd's page, its assets from `at` when given (see the top). */
async function open(page, at) {
  if (at) {
    await page.route((url) => url.href === base, async (route) => {
      const res = await route.fetch();
      const html = (await res.text()).replace(/\/\.ferry-ui\/[^/"]+\//g, at);
      await route.fulfill({ response: res, body: html });
    });
  }
  await page.goto(base);
  await page.waitForSelector('#pick-files', { state: 'attached' });
  await page.unrouteAll();
}

async function viaPage(page, file, at) {
  await open(page, at);
  const t = await timed(page, page.locator('#pick-files'), file,
    () => window.ferryUploads?.[0]?.sent / window.ferryUploads?.[0]?.file.size > 0.4,
    () => window.ferryUploads?.[0]?.finished);
  const [status, err] = await page.evaluate(() => [window.ferryUploads[0].status, window.ferryUploads[0].error?.message]);
  if (status !== 'done') throw new Error(`page upload ${status}: ${err}`);
  return t;
}

async function viaUppy(page, query, file) {
  await page.goto(`${base}uppy-bench/index.html${query ? `?${query}` : ''}`);
  await page.waitForFunction(() => window.uppy, null, { timeout: T });
  const t = await timed(page, page.locator('input.uppy-Dashboard-input').first(), file,
    () => window.uppy.getState().totalProgress > 40,
    () => window.uppyDone);
  const done = await page.evaluate(() => window.uppyDone);
  if (done.ok !== 1) throw new Error(`uppy upload failed: ${JSON.stringify(done)}`);
  return t;
}

/** SHA-256 of `file`, picked like an upload, in the page's hashing worker: MB/s. */
async function hashSpeed(page, file, at) {
  await open(page, at);
  await page.evaluate(() => {
    const i = document.createElement('input');
    Object.assign(i, { type: 'file', id: 'bench-hash', hidden: true });
    document.body.append(i);
  });
  await page.setInputFiles('#bench-hash', file);
  return page.evaluate(async () => {
    const f = document.getElementById('bench-hash').files[0];
    const w = new Worker(`${document.body.dataset.ui}hash-worker.js`);
    const s = performance.now();
    await new Promise((ok, bad) => {
      w.onmessage = ({ data }) => { if (data.hex) ok(); else if (data.error) bad(new Error(data.error)); };
      w.postMessage({ file: f });
    });
    return f.size / 1e6 / ((performance.now() - s) / 1000);
  });
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const [kind, at] = which.split('@');
  if (kind === 'hash') console.log((await hashSpeed(page, arg, at)).toFixed(0));
  else if (kind === 'page') console.log((await viaPage(page, arg, at)).toFixed(2));
  else if (which.startsWith('uppy')) console.log((await viaUppy(page, which.split('?')[1], arg)).toFixed(2));
  else throw new Error(`unknown run ${which}`);
  if (errors.length) throw errors[0];
  if (kind !== 'hash') {
    const cpu = processCpu();
    console.log(`cpu ${[...cpu.values()].reduce((a, b) => a + b, 0).toFixed(2)}`);
    if (process.env.PROCS) {
      appendFileSync(process.env.PROCS, `${which} ${[...cpu].map(([t, c]) => `${t}=${c.toFixed(2)}`).join(' ')}\n`);
    }
  }
} finally {
  await browser.close();
}

/** CPU seconds so far of this process (node) and of each chromium process, summed by type
 * (browser, renderer, utility:NetworkService, gpu-process, …), from /proc just before the
 * browser closes. (/usr/bin/time misses much of it: renderers are forked by chromium's zygote
 * and not reaped into the tree.) Printed as `cpu TOTAL`; PROCS=FILE appends the breakdown. */
function processCpu() {
  const hz = 100; // USER_HZ on Linux
  const procs = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8'); // NUL- or space-separated
      const type = (/--type=([\w-]+)/.exec(cmd)?.[1] ?? 'browser')
        + (/--utility-sub-type=(?:\w+\.mojom\.)?(\w+)/.exec(cmd)?.[1]?.replace(/^/, ':') ?? '');
      procs.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / hz, type });
    } catch { /* gone */ }
  }
  const root = process.pid; // chromium is this process's child
  const under = (pid) => { for (let p = pid; p > 1; p = procs.get(p)?.ppid ?? 0) if (p === root) return true; return false; };
  const sum = new Map();
  for (const [pid, p] of procs) if (pid !== root && under(pid)) sum.set(p.type, (sum.get(p.type) ?? 0) + p.cpu);
  const own = process.cpuUsage();
  sum.set('node', (own.user + own.system) / 1e6);
  return sum;
}
