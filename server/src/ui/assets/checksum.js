// Per-PATCH `Upload-Checksum` (tus checksum extension) for tus-js-client, which has no option
// for it but takes a custom HTTP stack: this one wraps the default stack and, for a PATCH,
// hashes the body (a Blob slice of the file) in a worker before the request goes out. A chunk
// damaged on the way is then refused by the server (460) and sent again, never kept.
//
// The algorithm is the first the server advertises of crc32, sha256 — the order of
// `ferry put --checksum auto`: the check guards one chunk in transit, so the cheapest adequate
// one comes first; the file's identity is the whole-file SHA-256 of instant upload.

const PREFERRED = ['crc32', 'sha256'];

const MIB = 1024 * 1024;
// PATCH sizes while checksumming. The server keeps nothing of a checksummed PATCH cut short (it
// cannot verify it), so a cut or a reload loses the PATCH each part has in flight. A part's
// first PATCH is 8 MiB (ferry put's default); each next one is what the part sent in about
// PACE ms (it grows at most 4x a step, never below 8 MiB, never above 64 MiB). A fast link then
// sends a 128 MiB part in 5 PATCHes instead of 16, and every PATCH costs the browser a request
// and a Blob read of its own: 512 MiB on loopback took about 0.5 s less browser CPU with 32 MiB
// PATCHes than with 8 (bench/ui/upload.sh, 2026-12-05); a slow link keeps 8 MiB PATCHes.
export const CHUNK_MIN = 8 * MIB;
export const CHUNK_MAX = 64 * MIB;
const PACE = 1000;

/** The size of a part's next PATCH, given the current size and that `bytes` took `ms` to send. */
export function nextChunk(current, bytes, ms) {
  if (!(ms > 0) || !(bytes > 0)) return current;
  const fit = Math.floor((bytes * PACE) / ms / MIB) * MIB;
  return Math.max(CHUNK_MIN, Math.min(CHUNK_MAX, 4 * current, fit));
}

/** The algorithm to use given the server's `Tus-Checksum-Algorithm`, or null for none. */
export function pickAlgorithm(advertised) {
  const offered = (advertised || '').split(',').map((s) => s.trim().toLowerCase());
  return PREFERRED.find((a) => offered.includes(a)) ?? null;
}

// Workers, one per core up to four (a big file's parts are hashed at once), all started with
// the first upload; each message goes to the one with the fewest waiting.
const POOL = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
const workers = [];
let seq = 0;
const waiting = new Map();

function spawn(workerUrl) {
  const w = { worker: new Worker(workerUrl), busy: 0 };
  w.worker.onmessage = ({ data }) => {
    const job = waiting.get(data.id);
    waiting.delete(data.id);
    w.busy -= 1;
    if (data.error) job?.reject(new Error(`checksum: ${data.error}`)); else job?.resolve(data.b64);
  };
  w.worker.onerror = (e) => {
    for (const [id, job] of waiting) {
      if (job.w === w) { job.reject(new Error(`checksum: ${e.message || 'worker failed'}`)); waiting.delete(id); }
    }
    workers.splice(workers.indexOf(w), 1);
  };
  workers.push(w);
  return w;
}

/** Starts the workers and has them load `algo`'s code, so that the first digest does not wait
 * for it: called when an upload starts, while the page asks the server and creates the upload. */
export function warm(algo, workerUrl) {
  while (workers.length < POOL) spawn(workerUrl).worker.postMessage({ algo });
}

function pick(workerUrl) {
  if (workers.length < POOL && workers.every((w) => w.busy > 0)) spawn(workerUrl);
  return workers.reduce((a, b) => (b.busy < a.busy ? b : a));
}

function digest(blob, algo, workerUrl) {
  const w = pick(workerUrl);
  w.busy += 1;
  seq += 1;
  const id = seq;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject, w });
    w.worker.postMessage({ id, blob, algo });
  });
}

/** A PATCH whose body is hashed before it is sent; every other call goes to the inner request. */
class ChecksumRequest {
  constructor(inner, stack) {
    Object.assign(this, { inner, stack, aborted: false });
  }

  getMethod() { return this.inner.getMethod(); }

  getURL() { return this.inner.getURL(); }

  setHeader(name, value) { this.inner.setHeader(name, value); }

  getHeader(name) { return this.inner.getHeader(name); }

  setProgressHandler(fn) { this.inner.setProgressHandler(fn); }

  getUnderlyingObject() { return this.inner.getUnderlyingObject(); }

  async send(body = null) {
    if (body instanceof Blob) {
      const offset = Number(this.inner.getHeader('Upload-Offset'));
      const sum = await this.stack.sum(this.getURL(), offset, body);
      if (this.aborted) throw new Error('aborted');
      this.inner.setHeader('Upload-Checksum', `${this.stack.algo} ${sum}`);
      const t = performance.now();
      const res = await this.inner.send(body);
      if (res.getStatus() === 204) this.stack.paced(this.getURL(), body.size, performance.now() - t);
      return res;
    }
    return this.inner.send(body);
  }

  abort() {
    this.aborted = true;
    return this.inner.abort();
  }
}

/** tus-js-client's `httpStack` option: `inner` with a checksum on every PATCH. For an upload
 * made known with `source()`, a chunk's digest is computed ahead: the first one while
 * tus-js-client asks the server for the offset, each next one while a chunk is on its way, so
 * hashing and sending overlap. Such an upload's PATCH size is paced too (`nextChunk`). */
export class ChecksumStack {
  constructor(inner, algo, workerUrl) {
    Object.assign(this, { inner, algo, workerUrl, sources: new Map() });
  }

  /** The upload at `url` sends `blob` from `offset` (the server's offset as last seen: a wrong
   * guess costs one digest, never a wrong checksum) in PATCHes of the size given to
   * `setChunk(bytes)`, which tus-js-client must read before each PATCH; CHUNK_MIN at first. */
  source(url, blob, offset, setChunk) {
    const src = { blob, chunk: CHUNK_MIN, setChunk, next: null };
    this.sources.set(url, src);
    setChunk(src.chunk);
    this.ahead(src, offset);
  }

  /** A PATCH of `bytes` to `url` was answered after `ms`: the pace for its next ones. */
  paced(url, bytes, ms) {
    const src = this.sources.get(url);
    if (src) src.chunk = nextChunk(src.chunk, bytes, ms);
  }

  /** Starts the digest of `src`'s chunk at `at`, if there is one, and makes that chunk's size
   * the one tus-js-client cuts next (it reads the size once the PATCH before it is answered). */
  ahead(src, at) {
    const size = Math.min(src.chunk, src.blob.size - at);
    src.setChunk(src.chunk);
    src.next = Number.isFinite(at) && size > 0
      ? { offset: at, size, sum: digest(src.blob.slice(at, at + size), this.algo, this.workerUrl) } : null;
    src.next?.sum.catch(() => {}); // a failure counts only if that chunk is sent
  }

  /** The digest of `body`, sent at `offset` to `url`: the one computed ahead when it is that
   * very chunk; then the following chunk's is started. */
  sum(url, offset, body) {
    const src = this.sources.get(url);
    const ahead = src?.next;
    const sum = ahead && ahead.offset === offset && ahead.size === body.size
      ? ahead.sum : digest(body, this.algo, this.workerUrl);
    if (src) this.ahead(src, offset + body.size);
    return sum;
  }

  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    return method === 'PATCH' ? new ChecksumRequest(req, this) : req;
  }

  getName() { return `ChecksumStack(${this.inner.getName()})`; }
}
