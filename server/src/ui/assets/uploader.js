// One file's upload, and the rules that keep its work: instant upload (OPTIONS with
// Ferry-Instant-Length, SHA-256 in a worker only on `?1`, creation with the `sha256` metadata),
// creation by the page itself (tus-js-client ignores Upload-Offset on a creation response, so
// an instant answer would be missed), then tus-js-client from the server's offset. Retries with
// backoff, honouring Retry-After; waits for the network when offline. The upload URL is kept in
// localStorage under (endpoint, target path, size, lastModified) so a reload resumes it.

const STORE = 'ferry-upload:';
const BACKOFF = [1, 2, 4, 8, 15, 30];
const CHUNK = 16 * 1024 * 1024;

export class HttpError extends Error {
  constructor(status, reason, retryAfter) {
    super(reason || `HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Whether an error is worth retrying by itself: the network, 409 (offset), 423, 429, 5xx. */
export function retryable(err) {
  const s = err.status ?? 0;
  return s === 0 || s === 409 || s === 423 || s === 429 || s >= 500;
}

function b64(s) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
}

function retryAfter(v) {
  if (!v) return undefined;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, n);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

async function reason(r) {
  const text = (await r.text().catch(() => '')).trim();
  return text.slice(0, 300) || `${r.status} ${r.statusText}`;
}

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
   * @param opts { endpoint, token: () => string|null, onChange(upload), onDone(upload) }
   */
  constructor(file, dir, opts) {
    this.file = file;
    this.dir = dir;
    this.opts = opts;
    this.target = dir ? `${dir}/${file.name}` : file.name;
    this.key = storageKey(opts.endpoint, this.target, file);
    this.status = 'queued';
    this.history = ['queued']; // every status this upload went through, for tests
    this.sent = 0;
    this.hashed = 0;
    this.attempt = 0;
    this.samples = [];
    this.tus = null;
    this.url = null;
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

  /** Starts or resumes: a kept URL first, else instant check, else a fresh creation. */
  async start() {
    this.stopped = false;
    this.set('checking', { error: null });
    try {
      if (!this.url) this.url = this.kept();
      if (this.url && !(await this.stillThere())) this.url = null;
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
    try { return JSON.parse(localStorage.getItem(this.key) || 'null')?.url ?? null; } catch { return null; }
  }

  keep() {
    const rec = { url: this.url, name: this.file.name, dir: this.dir, offset: this.sent, at: Date.now() };
    try { localStorage.setItem(this.key, JSON.stringify(rec)); } catch { /* storage full: resume works within this page */ }
  }

  /** HEAD of a kept upload: whether it can be resumed, and from where. */
  async stillThere() {
    const r = await fetch(this.url, { method: 'HEAD', headers: this.headers(), cache: 'no-store' });
    if (r.status === 404 || r.status === 410 || r.status === 403) {
      localStorage.removeItem(this.key);
      return false;
    }
    if (!r.ok) throw new HttpError(r.status, `HEAD ${r.status}`, retryAfter(r.headers.get('Retry-After')));
    this.sent = Number(r.headers.get('Upload-Offset') || 0);
    return true;
  }

  async create() {
    const meta = [['filename', this.file.name], ['filetype', this.file.type || 'application/octet-stream']];
    if (this.dir) meta.push(['dir', this.dir]);
    const digest = await this.instantDigest();
    if (this.stopped) return null;
    if (digest) meta.push(['sha256', digest]);
    const r = await fetch(this.opts.endpoint, {
      method: 'POST',
      headers: this.headers({
        'Upload-Length': String(this.file.size),
        'Upload-Metadata': meta.map(([k, v]) => `${k} ${b64(v)}`).join(','),
      }),
    });
    if (!r.ok) throw new HttpError(r.status, await reason(r), retryAfter(r.headers.get('Retry-After')));
    const loc = r.headers.get('Location');
    if (!loc) throw new HttpError(0, 'creation answered without Location');
    this.url = new URL(loc, new URL(this.opts.endpoint, location.href)).href;
    this.published = r.headers.get('Ferry-Published');
    const offset = Number(r.headers.get('Upload-Offset') ?? -1);
    if (offset === this.file.size) return digest ? 'instant' : 'complete';
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

  /** Hands the URL to tus-js-client, which asks the server for the offset and sends the rest. */
  send() {
    this.set(this.sent > 0 ? 'resuming' : 'uploading');
    this.samples = [{ t: performance.now(), b: this.sent }];
    const up = new window.tus.Upload(this.file, {
      uploadUrl: this.url,
      chunkSize: CHUNK,
      retryDelays: null, // retries are ours: they honour Retry-After and the offline state
      storeFingerprintForResuming: false,
      headers: this.authHeader(), // tus-js-client adds Tus-Resumable itself
      onProgress: (b) => this.progress(b),
      onSuccess: ({ lastResponse }) => {
        this.published = lastResponse?.getHeader('Ferry-Published') || this.published;
        this.finish('done');
      },
      onError: (err) => this.failed(err),
    });
    this.tus = up;
    up.start();
  }

  progress(bytes) {
    if (this.status !== 'uploading') this.set('uploading');
    this.sent = bytes;
    this.attempt = 0;
    const now = performance.now();
    this.samples.push({ t: now, b: bytes });
    while (this.samples.length > 2 && now - this.samples[0].t > 5000) this.samples.shift();
    const first = this.samples[0];
    const dt = (now - first.t) / 1000;
    this.speed = dt > 0.2 ? (bytes - first.b) / dt : this.speed;
    this.opts.onChange(this);
  }

  finish(status) {
    localStorage.removeItem(this.key);
    this.tus = null;
    this.sent = this.file.size;
    this.set(status);
    this.opts.onDone(this);
  }

  failed(err) {
    if (this.stopped) return;
    const res = err.originalResponse;
    const status = err.status ?? (res ? res.getStatus() : 0);
    const why = res ? (res.getBody() || '').trim().slice(0, 300) : err.message;
    const e = new HttpError(status, why || err.message, err.retryAfter ?? retryAfter(res?.getHeader('Retry-After')));
    this.tus = null;
    if ((status === 404 || status === 410) && this.url && !this.recreated) {
      // The kept upload expired or was removed: start a new one, once.
      this.recreated = true;
      localStorage.removeItem(this.key);
      this.url = null;
      this.sent = 0;
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
    if (this.tus) this.tus.abort(false);
    this.tus = null;
  }

  pause() {
    this.halt();
    this.set('paused');
  }

  async cancel() {
    this.pause();
    localStorage.removeItem(this.key);
    if (this.url) {
      await fetch(this.url, { method: 'DELETE', headers: this.headers() }).catch(() => {});
    }
    this.url = null;
    this.sent = 0;
    this.set('cancelled');
    this.opts.onDone(this);
  }
}
