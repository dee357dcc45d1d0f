// The upload side's scenarios of issue 10 (points 3 and 4), added to browser.mjs's table:
// per-PATCH checksums through a proxy that damages one chunk, big files as concatenated parts
// (then instant upload of the same bytes), a 503 with Retry-After, paste, the prompt on leaving
// mid-upload, and a real folder drop walked with readEntries. The Rust side
// (tests/tests/e2e/browser/upload.rs) starts ferryd (and the proxy) and checks the server.
import path from 'node:path';

export default function uploadScenarios({ cfg, T, check, open, throttle, allDone, listed, statuses }) {
  const start = async (browser, opts) => {
    const o = await open(browser, opts);
    await o.page.goto(`${cfg.url}#token=${cfg.token}`);
    await o.page.waitForSelector('#upload');
    return o;
  };
  const patches = (log) => log.filter((r) => r.method === 'PATCH');

  return {
    // Point 4: every PATCH carries Upload-Checksum (crc32, the server's cheapest); the proxy in
    // front of ferryd flips one byte of one PATCH body, the server answers 460, the page sends
    // the chunk again.
    async checksum(browser) {
      const { page, log } = await start(browser);
      await page.setInputFiles('#pick-files', path.join(cfg.dir, 'sum.bin'));
      await allDone(page);
      const p = patches(log);
      check(p.length >= 2 && p.every((r) => /^crc32 [A-Za-z0-9+/]{6}==$/.test(r.sum || '')), `checksummed PATCHes: ${JSON.stringify(p)}`);
      const hist = await page.evaluate(() => window.ferryUploads[0].history);
      check(hist.includes('retrying'), `the damaged chunk was retried: ${JSON.stringify(hist)}`);
      // Checksummed PATCHes are paced (a cut one is lost whole): the next size is what the last
      // one's rate sends in about a second, 8 MiB at least, 64 MiB at most, at most 4x a step.
      const paced = await page.evaluate(async () => {
        const { nextChunk } = await import(`${document.body.dataset.ui}checksum.js`);
        const M = 1024 * 1024;
        return [
          [8, 8, 2000], // 4 MiB/s: a slow link keeps 8 MiB
          [8, 8, 100], // 80 MiB/s: 4x a step
          [32, 32, 250], // 128 MiB/s: 64 MiB at most
          [64, 8, 1000], // slowed down to 8 MiB/s: back to 8 MiB
          [16, 20, 1000], // 20 MiB/s: 20 MiB
          [16, 8, 0], // nothing measured: unchanged
        ].map(([cur, mib, ms]) => nextChunk(cur * M, mib * M, ms) / M);
      });
      check(JSON.stringify(paced) === '[8,32,64,8,20,16]', `paced PATCH sizes: ${JSON.stringify(paced)}`);
      return { patches: p.map((r) => [r.offset, r.sum]), hist };
    },

    // Point 4: a big file goes as parts joined by the server (partial uploads + one final
    // upload, parts sent at once); the same bytes under another name are then instant: no
    // part created, no PATCH.
    async parts_then_instant(browser) {
      const { page, log } = await start(browser);
      await page.setInputFiles('#pick-files', path.join(cfg.dir, 'big.bin'));
      await allDone(page);
      const partial = log.filter((r) => r.method === 'POST' && r.concat === 'partial');
      const final = log.filter((r) => r.method === 'POST' && r.concat?.startsWith('final;'));
      const urls = new Set(patches(log).map((r) => r.url));
      check(partial.length >= 2 && final.length === 1, `parts and one final: ${JSON.stringify(log)}`);
      check(urls.size === partial.length, `every part sent: ${[...urls]}`);
      check(patches(log).every((r) => r.sum), 'checksummed parts');
      await listed(page, 'big.bin');
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
      check(!second.some((r) => r.method === 'PATCH' || r.concat), `instant, no part: ${JSON.stringify(second)}`);
      check((await statuses(page))[1][1] === 'instant', JSON.stringify(await statuses(page)));
      await listed(page, 'copy.bin');
      return { parts: partial.length, second };
    },

    // Point 3: a 503 with Retry-After: 2 (the proxy answers the first PATCH so) is honoured:
    // the next request waits 2 s, not the 1 s of the first backoff step.
    async retry_after(browser) {
      const { page, log } = await start(browser);
      let refused = 0;
      page.on('response', (r) => { if (r.status() === 503) refused = Date.now(); });
      await page.setInputFiles('#pick-files', path.join(cfg.dir, 'ra.bin'));
      await allDone(page);
      check(refused > 0, 'the proxy refused a PATCH');
      const next = log.find((r) => r.at > refused);
      const gap = next.at - refused;
      check(gap >= 1900 && gap < 6000, `next request ${gap} ms after the 503 (Retry-After: 2)`);
      const hist = await page.evaluate(() => window.ferryUploads[0].history);
      check(hist.includes('retrying'), JSON.stringify(hist));
      return { gap, hist };
    },

    // Point 3: a file pasted on the page (a paste event carrying clipboard files).
    async paste(browser) {
      const { page } = await start(browser);
      await page.evaluate(() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['pasted bytes'], 'pasted.txt', { type: 'text/plain' }));
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      });
      await allDone(page);
      await listed(page, 'pasted.txt');
      return statuses(page);
    },

    // Point 3: leaving mid-upload asks first (staying keeps the upload going); once everything
    // is finished the page closes without asking.
    async leave(browser) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const dialogs = [];
      let asked;
      page.on('dialog', (d) => { dialogs.push(d.type()); d.dismiss(); asked(); });
      const prompt = () => new Promise((ok) => { asked = ok; });
      await throttle(context, page, 4 * 1024 * 1024);
      await page.goto(`${cfg.url}#token=${cfg.token}`);
      await page.waitForSelector('#upload');
      await page.mouse.click(5, 5); // a prompt needs the user to have touched the page
      await page.setInputFiles('#pick-files', path.join(cfg.dir, 'p.bin'));
      await page.waitForFunction(() => window.ferryUploads?.[0]?.sent > 0, null, { timeout: T, polling: 50 });
      const first = prompt();
      await page.close({ runBeforeUnload: true });
      await first;
      check(dialogs.length === 1 && dialogs[0] === 'beforeunload', `asked before leaving: ${dialogs}`);
      check(!page.isClosed(), 'staying keeps the page');
      await allDone(page);
      const closed = new Promise((ok) => { page.once('close', ok); });
      await page.close({ runBeforeUnload: true });
      await Promise.race([closed, prompt()]);
      check(dialogs.length === 1 && page.isClosed(), `no prompt once done: ${dialogs}`);
      return dialogs;
    },

    // Point 3: a real folder dropped on the page (Chromium's own drag and drop, through the
    // DevTools protocol, with the directory's path): the walker reads every entry (readEntries
    // until empty: Chromium hands out 100 per call, and `many/` holds more) and keeps the tree.
    async folder_drop(browser) {
      const { context, page } = await start(browser);
      const cdp = await context.newCDPSession(page);
      const data = { items: [], files: [path.join(cfg.dir, 'tree')], dragOperationsMask: 1 };
      for (const type of ['dragEnter', 'dragOver', 'drop']) {
        await cdp.send('Input.dispatchDragEvent', { type, x: 200, y: 200, data });
      }
      await page.waitForFunction((n) => window.ferryUploads?.length === n, cfg.count, { timeout: T });
      const rels = await page.evaluate(() => window.ferryUploads.map((u) => [u.rel, u.dir]));
      await allDone(page);
      await listed(page, 'tree/');
      return rels;
    },
  };
}
