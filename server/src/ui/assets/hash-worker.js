// SHA-256 of a File in a Web Worker with hash-wasm, streamed through one reused buffer
// (blob-chunks.js: never the whole file in memory, no buffer allocated per slice); posts
// {progress: percent} as it goes and {hex} or {error} at the end.
/* global hashwasm, blobChunks */
importScripts('blob-chunks.js', 'vendor/hash-wasm-sha256.umd.min.js');

self.onmessage = async ({ data }) => {
  try {
    const { file } = data;
    const h = await hashwasm.createSHA256();
    h.init();
    let done = 0;
    let last = -1;
    await blobChunks(file, (bytes) => {
      h.update(bytes);
      done += bytes.length;
      const pct = Math.floor((done * 100) / file.size);
      if (pct !== last) { last = pct; self.postMessage({ progress: pct }); }
    });
    self.postMessage({ hex: h.digest('hex') });
  } catch (e) {
    self.postMessage({ error: String(e && e.message ? e.message : e) });
  }
};
