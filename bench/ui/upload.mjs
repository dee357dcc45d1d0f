// Browser-side figures for bench/ui/upload.sh: one upload of FILE through ferryd's page and one
// through Uppy 6 (Dashboard + Tus, served from ROOT/uppy-bench/), each in a fresh browser
// context; prints `page SECONDS` and `uppy SECONDS` (from picking the file to the last answer).
// With `hash MIB` it prints the SHA-256 speed of the page's hashing worker instead.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const [base, which, arg] = process.argv.slice(2);
const T = 600_000;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function viaPage(page, file) {
  await page.goto(base);
  await page.waitForSelector('#pick-files', { state: 'attached' });
  const t0 = Date.now();
  await page.setInputFiles('#pick-files', file);
  await page.waitForFunction(() => window.ferryUploads?.[0]?.finished, null, { timeout: T, polling: 100 });
  const t = (Date.now() - t0) / 1000;
  const [status, err] = await page.evaluate(() => [window.ferryUploads[0].status, window.ferryUploads[0].error?.message]);
  if (status !== 'done') throw new Error(`page upload ${status}: ${err}`);
  return t;
}

async function viaUppy(page, file) {
  await page.goto(`${base}uppy-bench/index.html`);
  await page.waitForFunction(() => window.uppy, null, { timeout: T });
  const t0 = Date.now();
  await page.locator('input.uppy-Dashboard-input').first().setInputFiles(file);
  await page.waitForFunction(() => window.uppyDone, null, { timeout: T, polling: 100 });
  const t = (Date.now() - t0) / 1000;
  const done = await page.evaluate(() => window.uppyDone);
  if (done.ok !== 1) throw new Error(`uppy upload failed: ${JSON.stringify(done)}`);
  return t;
}

async function hashSpeed(page, mib) {
  await page.goto(base);
  await page.waitForSelector('#pick-files', { state: 'attached' });
  return page.evaluate(async (n) => {
    const chunk = new Uint8Array(1 << 20);
    for (let i = 0; i < chunk.length; i += 1) chunk[i] = (i * 2654435761) >>> 24;
    const file = new File(Array.from({ length: n }, () => chunk), 'x.bin');
    const w = new Worker(`${document.body.dataset.ui}hash-worker.js`);
    const s = performance.now();
    await new Promise((ok, bad) => {
      w.onmessage = ({ data }) => { if (data.hex) ok(); else if (data.error) bad(new Error(data.error)); };
      w.postMessage({ file });
    });
    return (n * 1048576) / 1e6 / ((performance.now() - s) / 1000);
  }, mib);
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  if (which === 'hash') console.log(`hash ${(await hashSpeed(page, Number(arg))).toFixed(0)}`);
  else if (which === 'page') console.log(`page ${(await viaPage(page, arg)).toFixed(2)}`);
  else console.log(`uppy ${(await viaUppy(page, arg)).toFixed(2)}`);
} finally {
  await browser.close();
}
