// Upload-Checksum digests of PATCH bodies (tus checksum extension) for checksum.js: one worker
// for the page; a message {id, blob, algo} is answered with {id, b64} or {id, error}. The Blob
// is streamed through one reused buffer (blob-chunks.js), so a chunk is never copied whole.
// hash-wasm, not crypto.subtle: the latter is missing on plain-http origins other than
// localhost (a LAN address). A message {algo} alone only loads that algorithm: checksum.js
// sends it when an upload starts, so the first chunk's digest does not wait for the load.
/* global hashwasm, blobChunks */
importScripts('blob-chunks.js');

const LIBS = { crc32: 'vendor/hash-wasm-crc32.umd.min.js', sha256: 'vendor/hash-wasm-sha256.umd.min.js' };
const CREATE = { crc32: () => hashwasm.createCRC32(), sha256: () => hashwasm.createSHA256() };
const loaded = new Set();

function load(algo) {
  if (!LIBS[algo]) throw new Error(`no checksum algorithm ${algo}`);
  if (!loaded.has(algo)) { importScripts(LIBS[algo]); loaded.add(algo); }
  return CREATE[algo]();
}

self.onmessage = async ({ data: { id, blob, algo } }) => {
  try {
    const h = await load(algo);
    if (id === undefined) return;
    h.init();
    await blobChunks(blob, (bytes) => h.update(bytes));
    let bin = '';
    for (const b of h.digest('binary')) bin += String.fromCharCode(b);
    self.postMessage({ id, b64: btoa(bin) });
  } catch (e) {
    if (id !== undefined) self.postMessage({ id, error: String(e && e.message ? e.message : e) });
  }
};
