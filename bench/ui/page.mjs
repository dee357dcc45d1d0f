// Page-side figures for bench/ui/run.sh: time until the listing page of URL is interactive,
// and the hashing worker's SHA-256 speed over MIB MiB held in memory.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const [url, mib] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const t0 = Date.now();
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 120_000 });
  await page.waitForSelector('#filter', { timeout: 120_000 });
  await page.waitForFunction(() => document.querySelectorAll('#listing tbody tr').length > 0);
  const ready = (Date.now() - t0) / 1000;
  // One more frame answered within the budget: the page is not frozen.
  const frame = await page.evaluate(() => new Promise((ok) => {
    const s = performance.now(); requestAnimationFrame(() => ok(performance.now() - s));
  }));
  console.log(`page of 100000 entries interactive after ${ready.toFixed(2)} s (next frame ${frame.toFixed(0)} ms)`);
  const mbps = await page.evaluate(async (n) => {
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
  }, Number(mib));
  console.log(`sha-256 in the page's worker: ${mbps.toFixed(0)} MB/s over ${mib} MiB`);
} finally {
  await browser.close();
}
