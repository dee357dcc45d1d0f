// SHA-256 of a File in a Web Worker with hash-wasm, streaming 8 MiB slices (never the whole
// file in memory); posts {progress: percent} as it goes and {hex} or {error} at the end.
/* global hashwasm */
importScripts('vendor/hash-wasm-sha256.umd.min.js');

const SLICE = 8 * 1024 * 1024;

self.onmessage = async ({ data }) => {
  try {
    const { file } = data;
    const h = await hashwasm.createSHA256();
    h.init();
    let last = -1;
    for (let at = 0; at < file.size; at += SLICE) {
      const buf = new Uint8Array(await file.slice(at, Math.min(file.size, at + SLICE)).arrayBuffer());
      h.update(buf);
      const pct = Math.floor(((at + buf.length) * 100) / file.size);
      if (pct !== last) { last = pct; self.postMessage({ progress: pct }); }
    }
    self.postMessage({ hex: h.digest('hex') });
  } catch (e) {
    self.postMessage({ error: String(e && e.message ? e.message : e) });
  }
};
