// For the page's workers (importScripts): the bytes of a Blob as a sequence of Uint8Arrays,
// read from `blob.stream()` with a BYOB reader into one reused buffer. Each Blob read lands in
// a new ArrayBuffer otherwise (4-8 MiB each for `slice().arrayBuffer()`), and allocating and
// filling those cost the worker about twice what the digest does: 512 MiB of PATCH checksums
// took 1.5-2.6 s of browser CPU that way, 0.9-1.6 s with this (bench/ui/upload.sh, 2026-12-05).
// A browser whose Blob stream is not a byte stream gets the default reader's chunks.
/* exported blobChunks */

const CHUNK_BUFFER = 1024 * 1024;
const spare = []; // buffers of finished reads, for the next (reads in one worker may overlap)

/** Calls `fn(bytes)` for each piece of `blob` in order; `bytes` is only valid during the call. */
async function blobChunks(blob, fn) {
  const stream = blob.stream();
  let byob = null;
  try { byob = stream.getReader({ mode: 'byob' }); } catch { /* not a byte stream */ }
  if (!byob) {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      fn(value);
    }
  }
  let buf = spare.pop() ?? new ArrayBuffer(CHUNK_BUFFER);
  try {
    for (;;) {
      const { done, value } = await byob.read(new Uint8Array(buf));
      if (value) buf = value.buffer; // the buffer comes back (transferred) with every answer
      if (done) break;
      fn(value);
    }
  } finally {
    if (buf.byteLength === CHUNK_BUFFER) spare.push(buf); // not when a failed read kept it
  }
}
