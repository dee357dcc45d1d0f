// Per-PATCH `Upload-Checksum` (tus checksum extension) for tus-js-client, which has no option
// for it but takes a custom HTTP stack: this one wraps the default stack and, for a PATCH,
// hashes the body (a Blob slice of the file) in a worker before the request goes out. A chunk
// damaged on the way is then refused by the server (460) and sent again, never kept.
//
// The algorithm is the first the server advertises of crc32, sha256 — the order of
// `ferry put --checksum auto`: the check guards one chunk in transit, so the cheapest adequate
// one comes first; the file's identity is the whole-file SHA-256 of instant upload.

const PREFERRED = ['crc32', 'sha256'];

/** The algorithm to use given the server's `Tus-Checksum-Algorithm`, or null for none. */
export function pickAlgorithm(advertised) {
  const offered = (advertised || '').split(',').map((s) => s.trim().toLowerCase());
  return PREFERRED.find((a) => offered.includes(a)) ?? null;
}

// Workers, one per core up to four (a big file's parts are hashed at once); each message goes
// to the one with the fewest waiting.
const POOL = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
const workers = [];
let seq = 0;
const waiting = new Map();

function pick(workerUrl) {
  if (workers.length < POOL && workers.every((w) => w.busy > 0)) {
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
  }
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
    }
    return this.inner.send(body);
  }

  abort() {
    this.aborted = true;
    return this.inner.abort();
  }
}

/** tus-js-client's `httpStack` option: `inner` with a checksum on every PATCH. For an upload
 * made known with `source()`, the next chunk's digest is computed while a chunk is on its way,
 * so hashing and sending overlap. */
export class ChecksumStack {
  constructor(inner, algo, workerUrl) {
    Object.assign(this, { inner, algo, workerUrl, sources: new Map() });
  }

  /** The upload at `url` sends `blob` in PATCHes of `chunk` bytes. */
  source(url, blob, chunk) {
    this.sources.set(url, { blob, chunk, next: null });
  }

  /** The digest of `body`, sent at `offset` to `url`: the one computed ahead when it is that
   * very chunk; then the following chunk's is started. */
  sum(url, offset, body) {
    const src = this.sources.get(url);
    const ahead = src?.next;
    const sum = ahead && ahead.offset === offset && ahead.size === body.size
      ? ahead.sum : digest(body, this.algo, this.workerUrl);
    if (src) {
      const at = offset + body.size;
      const size = Math.min(src.chunk, src.blob.size - at);
      src.next = Number.isFinite(at) && size > 0
        ? { offset: at, size, sum: digest(src.blob.slice(at, at + size), this.algo, this.workerUrl) } : null;
      src.next?.sum.catch(() => {}); // a failure counts only if that chunk is sent
    }
    return sum;
  }

  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    return method === 'PATCH' ? new ChecksumRequest(req, this) : req;
  }

  getName() { return `ChecksumStack(${this.inner.getName()})`; }
}
