// One file's upload, and the rules that keep its work: instant upload (OPTIONS with
// Ferry-Instant-Length, SHA-256 in a worker only on `?1`, creation with the `sha256` metadata),
// creation by the page itself (tus-js-client ignores Upload-Offset on a creation response, so
// an instant answer would be missed), then tus-js-client from the server's offset. A big file
// is sent as several parts joined by the server (tus concatenation), like `ferry put -x`; every
// PATCH carries an `Upload-Checksum` when the server offers one (checksum.js). Retries with
// backoff, honouring Retry-After; waits for the network when offline. The upload URLs are kept
// in localStorage under (endpoint, target path, size, lastModified) so a reload resumes them.
import {
  CHUNK_MIN, ChecksumStack, pickAlgorithm, warm,
} from './checksum.js';
import {
  HttpError, retryable, retryAfter, reason, encodeMetadata, capabilities, planParts, createUpload, headUpload,
} from './tusapi.js';

export { HttpError, retryable };

const STORE = 'ferry-upload:';
const BACKOFF = [1, 2, 4, 8, 15, 30];
// Bytes per PATCH: ferry put's default. With a checksum this is the first PATCH's size, the
// next ones are paced by checksum.js (the server keeps nothing of a checksummed PATCH cut short).
const CHUNK = CHUNK_MIN;
// Milliseconds between two redraws for progress alone (a status change redraws at once): the
// parts' progress events come dozens of times a second, and each redraw costs the page's
// thread a style and layout pass. Uppy's Dashboard redraws its progress twice a second.
const REDRAW = 250;

export function storageKey(endpoint, target, file) {
  return `${STORE}${JSON.stringify([endpoint, target, file.size, file.lastModified])}`;
}

/** Unfinished uploads kept from earlier visits, for this endpoint. */
export function pendingUploads(endpoint) {
  const out = [];
  for (let i = 0; i < localStorage.length; i += 1) {
    const k = localStorage.key(i);
    if (!k?.startsWith(STORE)) continue;
    try {
      const [ep, target, size] = JSON.parse(k.slice(STORE.length));
      if (ep === endpoint) out.push({ key: k, target, size, ...JSON.parse(localStorage.getItem(k)) });
    } catch { localStorage.removeItem(k); }
  }
  return out;
}

export class Upload {
  /**
   * @param file the File
   * @param dir the target directory relative to ROOT ('' for the root, 'a/b' otherwise)
   * @param opts { endpoint, token: () => string|null, workerUrl (SHA-256), sumWorkerUrl
   *   (Upload-Checksum), onChange(upload), onDone(upload) }
   */
  constructor(file, dir, opts) {
    this.file = file;
    this.dir = dir;
    this.opts = opts;
    this.target = dir ? `${dir}/${file.name}` : file.name;
    this.key = storageKey(opts.endpoint, this.target, file);
    this.status = 'queued';
    this.history = ['queued']; // every status this upload went through, for tests
    this.sent = 0; // bytes sent, some maybe still on their way
    this.acked = 0; // bytes the server has confirmed
    this.hashed = 0;
    this.attempt = 0;
    this.samples = [];
    this.tus = null; // tus-js-client uploads, one per part being sent
    this.url = null; // the upload, or the final upload joining the parts
    this.parts = null; // [{start, end, url, sent}] when the file goes as several parts
  }

  set(status, extra = {}) {
    if (status !== this.status) this.history.push(status);
    Object.assign(this, { status }, extra);
    this.opts.onChange(this);
  }

  authHeader() {
    const tok = this.opts.token();
    return tok ? { Authorization: `Bearer ${tok}` } : {};
  }

  headers(more = {}) {
    return { 'Tus-Resumable': '1.0.0', ...this.authHeader(), ...more };
  }

  get active() {
    return ['checking', 'hashing', 'uploading', 'retrying', 'resuming', 'offline'].includes(this.status);
  }

  get finished() {
    return ['done', 'instant', 'cancelled', 'failed'].includes(this.status);
  }

  /** Starts or resumes: kept URLs first, else instant check, else a fresh creation. */
  async start() {
    this.stopped = false;
    this.set('checking', { error: null });
    try {
      this.caps = await capabilities(this.opts.endpoint, this.headers());
      const algo = pickAlgorithm(this.caps.checksums);
      if (algo && this.file.size > 0) warm(algo, this.opts.sumWorkerUrl);
      if (!this.url) Object.assign(this, this.kept());
      if (this.url) {
        const state = await this.resumable();
        if (this.stopped) return;
        if (state === 'complete') return this.finish('done');
        if (state === 'gone') this.forget();
      }
      if (!this.url) {
        const created = await this.create();
        if (this.stopped) return;
        if (created === 'instant') return this.finish('instant');
        if (created === 'complete') return this.finish('done');
      }
      if (this.stopped) return;
      this.send();
    } catch (err) {
      this.failed(err);
    }
  }

  kept() {
    try {
      const rec = JSON.parse(localStorage.getItem(this.key) || 'null');
      return { url: rec?.url ?? null, parts: rec?.parts ?? null };
    } catch { return { url: null, parts: null }; }
  }

  keep() {
    const parts = this.parts?.map(({ start, end, url }) => ({ start, end, url }));
    const rec = { url: this.url, parts, name: this.file.name, dir: this.dir, offset: this.acked, at: Date.now() };
    try { localStorage.setItem(this.key, JSON.stringify(rec)); } catch { /* storage full: resume works within this page */ }
  }

  forget() {
    localStorage.removeItem(this.key);
    this.url = null;
    this.parts = null;
    this.sent = 0;
    this.acked = 0;
  }

  /** HEADs of a kept upload: 'gone', 'complete' (a final upload already joined), or 'open'
   * with each part's offset from the server. */
  async resumable() {
    const h = this.headers();
    const head = await headUpload(this.url, h);
    if (!head) return 'gone';
    if (head.offset === this.file.size) {
      this.published = head.published || this.published;
      return 'complete';
    }
    if (!this.parts) {
      this.sent = head.offset ?? 0;
      this.acked = this.sent;
      return 'open';
    }
    for (const p of this.parts) {
      const ph = await headUpload(p.url, h);
      if (!ph) {
        fetch(this.url, { method: 'DELETE', headers: h }).catch(() => {});
        return 'gone';
      }
      p.sent = ph.offset ?? 0;
      p.acked = p.sent;
    }
    this.sent = this.parts.reduce((s, p) => s + p.sent, 0);
    this.acked = this.sent;
    return 'open';
  }

  metadata(digest) {
    const meta = [['filename', this.file.name], ['filetype', this.file.type || 'application/octet-stream']];
    if (this.dir) meta.push(['dir', this.dir]);
    if (digest) meta.push(['sha256', digest]);
    return encodeMetadata(meta);
  }

  /** Creates the upload: one whole-file upload, or (big files) partial uploads and the final
   * upload that joins them. With a digest the whole-file creation comes first even for a big
   * file: it is the instant-upload question, removed again when the server lacks the bytes. */
  async create() {
    const digest = await this.instantDigest();
    if (this.stopped) return null;
    const { endpoint } = this.opts;
    const h = this.headers();
    const size = this.file.size;
    const plan = planParts(size, this.caps.extensions);
    if (digest || plan.length === 1) {
      const c = await createUpload(endpoint, h, { length: size, metadata: this.metadata(digest) });
      this.published = c.published;
      if (c.offset === size) return digest ? 'instant' : 'complete';
      if (plan.length === 1) {
        this.url = c.url;
        this.keep();
        return 'created';
      }
      fetch(c.url, { method: 'DELETE', headers: h }).catch(() => {});
    }
    const parts = [];
    for (const [start, end] of plan) {
      const c = await createUpload(endpoint, h, { length: end - start, concat: 'partial' });
      parts.push({ start, end, url: c.url, sent: 0 });
    }
    const paths = parts.map((p) => new URL(p.url).pathname).join(' ');
    const fin = await createUpload(endpoint, h, { metadata: this.metadata(digest), concat: `final;${paths}` });
    Object.assign(this, { url: fin.url, parts, published: fin.published });
    this.keep();
    return 'created';
  }

  /** SHA-256 of the file, only when the server holds a file of this size (`?1`). */
  async instantDigest() {
    if (this.file.size === 0) return null;
    const r = await fetch(this.opts.endpoint, {
      method: 'OPTIONS',
      headers: this.headers({ 'Ferry-Instant-Length': String(this.file.size) }),
    });
    if (r.status === 401) throw new HttpError(401, await reason(r));
    if (r.headers.get('Ferry-Instant-Candidate') !== '?1') return null;
    this.set('hashing', { hashed: 0 });
    return this.hash();
  }

  hash() {
    return new Promise((resolve, reject) => {
      const w = new Worker(this.opts.workerUrl);
      this.worker = w;
      w.onmessage = ({ data }) => {
        if (data.progress !== undefined) {
          this.hashed = data.progress;
          this.opts.onChange(this);
        } else {
          w.terminate();
          this.worker = null;
          if (data.error) reject(new HttpError(0, data.error)); else resolve(data.hex);
        }
      };
      w.onerror = (e) => { w.terminate(); reject(new HttpError(-1, e.message || 'hashing failed')); };
      w.postMessage({ file: this.file });
    });
  }

  /** The HTTP stack for tus-js-client: the default one, with a checksum on every PATCH when
   * the server offers an algorithm we have. */
  stack() {
    const algo = pickAlgorithm(this.caps?.checksums);
    const inner = new window.tus.DefaultHttpStack();
    return algo ? new ChecksumStack(inner, algo, this.opts.sumWorkerUrl) : inner;
  }

  /** Hands each unfinished part (or the whole file) to tus-js-client, which asks the server for
   * the offset and sends the rest; the parts go at once, each over its own connection. */
  send() {
    this.set(this.sent > 0 ? 'resuming' : 'uploading');
    this.samples = [{ t: performance.now(), b: this.sent }];
    const pieces = this.parts ?? [{ start: 0, end: this.file.size, url: this.url, sent: this.sent, acked: this.acked }];
    const open = pieces.filter((p) => p.sent < p.end - p.start);
    const gen = (this.gen = (this.gen ?? 0) + 1);
    const stack = this.stack();
    let left = open.length;
    if (!left) return this.join();
    this.tus = open.map((p) => {
      const blob = this.parts ? this.file.slice(p.start, p.end) : this.file;
      const up = new window.tus.Upload(blob, {
        uploadUrl: p.url,
        chunkSize: CHUNK,
        retryDelays: null, // retries are ours: they honour Retry-After and the offline state
        storeFingerprintForResuming: false,
        headers: this.authHeader(), // tus-js-client adds Tus-Resumable itself
        httpStack: stack,
        onProgress: (b) => { if (gen === this.gen) { p.sent = b; this.progress(pieces); } },
        onChunkComplete: (_, accepted) => {
          if (gen !== this.gen) return;
          p.acked = accepted;
          this.acked = pieces.reduce((sum, q) => sum + (q.acked ?? 0), 0);
        },
        onSuccess: ({ lastResponse }) => {
          if (gen !== this.gen) return;
          p.sent = p.end - p.start;
          this.published = lastResponse?.getHeader('Ferry-Published') || this.published;
          left -= 1;
          if (left > 0) return;
          if (this.parts) this.join(); else this.finish('done');
        },
        onError: (err) => { if (gen === this.gen) this.failed(err); },
      });
      stack.source?.(p.url, blob, p.sent, (n) => { up.options.chunkSize = n; });
      up.start();
      return up;
    });
  }

  /** Every part is complete: ferryd has joined them into the final upload already (or does so
   * on this HEAD, tus concatenation-unfinished); another server may take a moment. */
  async join() {
    this.tus = null;
    try {
      for (let wait = 50; ; wait *= 2) {
        const head = await headUpload(this.url, this.headers());
        if (!head) throw new HttpError(410, 'the final upload is gone');
        if (head.offset === this.file.size) {
          this.published = head.published || this.published;
          return this.finish('done');
        }
        if (wait > 5000) throw new HttpError(0, 'the parts were not joined');
        await new Promise((ok) => { setTimeout(ok, wait); });
      }
    } catch (err) {
      this.failed(err);
    }
  }

  progress(pieces) {
    if (this.status !== 'uploading') this.set('uploading');
    const bytes = pieces.reduce((s, p) => s + p.sent, 0);
    this.sent = bytes;
    this.attempt = 0;
    const now = performance.now();
    this.samples.push({ t: now, b: bytes });
    while (this.samples.length > 2 && now - this.samples[0].t > 5000) this.samples.shift();
    const first = this.samples[0];
    const dt = (now - first.t) / 1000;
    this.speed = dt > 0.2 ? (bytes - first.b) / dt : this.speed;
    if (!(now - this.keptAt < 2000)) { this.keptAt = now; this.keep(); } // for the pending list
    if (!(now - this.drawnAt < REDRAW)) { this.drawnAt = now; this.opts.onChange(this); }
  }

  finish(status) {
    localStorage.removeItem(this.key);
    this.tus = null;
    this.sent = this.file.size;
    this.set(status);
    this.opts.onDone(this);
  }

  /** Stops every part's transfer (a failure of one stops the others: they restart together
   * from the server's offsets). */
  abortAll() {
    this.gen = (this.gen ?? 0) + 1;
    for (const up of this.tus ?? []) up.abort(false);
    this.tus = null;
  }

  failed(err) {
    if (this.stopped) return;
    const res = err.originalResponse;
    const status = err.status ?? (res ? res.getStatus() : 0);
    const why = res ? (res.getBody() || '').trim().slice(0, 300) : err.message;
    const e = new HttpError(status, why || err.message, err.retryAfter ?? retryAfter(res?.getHeader('Retry-After')));
    this.abortAll();
    if ((status === 404 || status === 410) && this.url && !this.recreated) {
      // The kept upload expired or was removed: start a new one, once.
      this.recreated = true;
      if (this.parts) fetch(this.url, { method: 'DELETE', headers: this.headers() }).catch(() => {});
      this.forget();
      this.start();
      return;
    }
    if (status === 401) return this.set('failed', { error: e, authFailed: true });
    if (!retryable(e)) return this.set('failed', { error: e });
    this.retry(e);
  }

  /** Waits (offline: for the network; else backoff or Retry-After), then starts again. */
  retry(e) {
    if (!navigator.onLine) {
      this.set('offline');
      const go = () => { window.removeEventListener('online', go); if (this.status === 'offline') this.start(); };
      window.addEventListener('online', go);
      return;
    }
    const wait = e.retryAfter ?? BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    this.until = Date.now() + wait * 1000;
    this.set('retrying', { error: e });
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (this.status !== 'retrying') return clearInterval(this.timer);
      if (Date.now() >= this.until) { clearInterval(this.timer); this.start(); } else this.opts.onChange(this);
    }, 250);
  }

  /** The browser went offline: stop sending now (an open request may hang rather than fail)
   * and start again by itself once it is back online. */
  offline() {
    if (!this.active || this.status === 'offline') return;
    this.halt();
    this.retry(new HttpError(0, 'offline'));
  }

  halt() {
    this.stopped = true;
    clearInterval(this.timer);
    this.worker?.terminate();
    this.worker = null;
    this.abortAll();
  }

  pause() {
    this.halt();
    this.set('paused');
  }

  async cancel() {
    this.pause();
    // Terminating a final upload ends the parts it holds too (ferryd); the parts are asked
    // anyway, for a server that keeps them apart.
    const urls = [this.url, ...(this.parts ?? []).map((p) => p.url)].filter(Boolean);
    this.forget();
    await Promise.all(urls.map((u) => fetch(u, { method: 'DELETE', headers: this.headers() }).catch(() => {})));
    this.set('cancelled');
    this.opts.onDone(this);
  }
}
