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

let worker = null;
let seq = 0;
const waiting = new Map();

function digest(blob, algo, workerUrl) {
  if (!worker) {
    worker = new Worker(workerUrl);
    worker.onmessage = ({ data }) => {
      const w = waiting.get(data.id);
      waiting.delete(data.id);
      if (data.error) w?.reject(new Error(`checksum: ${data.error}`)); else w?.resolve(data.b64);
    };
    worker.onerror = (e) => {
      for (const w of waiting.values()) w.reject(new Error(`checksum: ${e.message || 'worker failed'}`));
      waiting.clear();
      worker = null;
    };
  }
  seq += 1;
  const id = seq;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    worker.postMessage({ id, blob, algo });
  });
}

/** A PATCH whose body is hashed before it is sent; every other call goes to the inner request. */
class ChecksumRequest {
  constructor(inner, algo, workerUrl) {
    Object.assign(this, { inner, algo, workerUrl, aborted: false });
  }

  getMethod() { return this.inner.getMethod(); }

  getURL() { return this.inner.getURL(); }

  setHeader(name, value) { this.inner.setHeader(name, value); }

  getHeader(name) { return this.inner.getHeader(name); }

  setProgressHandler(fn) { this.inner.setProgressHandler(fn); }

  getUnderlyingObject() { return this.inner.getUnderlyingObject(); }

  async send(body = null) {
    if (body instanceof Blob) {
      const sum = await digest(body, this.algo, this.workerUrl);
      if (this.aborted) throw new Error('aborted');
      this.inner.setHeader('Upload-Checksum', `${this.algo} ${sum}`);
    }
    return this.inner.send(body);
  }

  abort() {
    this.aborted = true;
    return this.inner.abort();
  }
}

/** tus-js-client's `httpStack` option: `inner` with a checksum on every PATCH. */
export class ChecksumStack {
  constructor(inner, algo, workerUrl) {
    Object.assign(this, { inner, algo, workerUrl });
  }

  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    return method === 'PATCH' ? new ChecksumRequest(req, this.algo, this.workerUrl) : req;
  }

  getName() { return `ChecksumStack(${this.inner.getName()})`; }
}
