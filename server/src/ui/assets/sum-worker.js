// Upload-Checksum digests of PATCH bodies (tus checksum extension) for checksum.js: one worker
// for the page; a message {id, blob, algo} is answered with {id, b64} or {id, error}. The Blob
// is read in 4 MiB slices, so a chunk is never copied whole. hash-wasm, not crypto.subtle:
// the latter is missing on plain-http origins other than localhost (a LAN address).
/* global hashwasm */
importScripts('vendor/hash-wasm-crc32.umd.min.js', 'vendor/hash-wasm-sha256.umd.min.js');

const SLICE = 4 * 1024 * 1024;
const create = { crc32: () => hashwasm.createCRC32(), sha256: () => hashwasm.createSHA256() };

self.onmessage = async ({ data: { id, blob, algo } }) => {
  try {
    const h = await create[algo]();
    h.init();
    for (let at = 0; at < blob.size; at += SLICE) {
      h.update(new Uint8Array(await blob.slice(at, Math.min(blob.size, at + SLICE)).arrayBuffer()));
    }
    let bin = '';
    for (const b of h.digest('binary')) bin += String.fromCharCode(b);
    self.postMessage({ id, b64: btoa(bin) });
  } catch (e) {
    self.postMessage({ id, error: String(e && e.message ? e.message : e) });
  }
};
