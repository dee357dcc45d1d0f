// Uppy 6 with its Dashboard and Tus plugins, set up as its documentation does, uploading into
// ferryd's tus endpoint. bench/ui/upload.sh bundles this file with esbuild (npm ci here, never
// in the product) and serves it from ferryd's ROOT; bench/ui/upload.mjs sets a file on the
// Dashboard's input and waits for `window.uppyDone`.
//
// Tus options from the query string: none = Uppy's defaults (chunkSize Infinity: one PATCH for
// the whole file, parallelUploads 1); `?parallel=N` and `?chunk=MiB` set tus-js-client's
// parallelUploads (partial uploads joined by concatenation) and chunkSize.
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import Tus from '@uppy/tus';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';

const q = new URLSearchParams(location.search);
const tus = { endpoint: '/files/' };
if (q.has('parallel')) tus.parallelUploads = Number(q.get('parallel'));
if (q.has('chunk')) tus.chunkSize = Number(q.get('chunk')) * 1024 * 1024;

const uppy = new Uppy({ autoProceed: true })
  .use(Dashboard, { inline: true, target: '#uppy' })
  .use(Tus, tus);
uppy.on('complete', (result) => {
  window.uppyDone = { ok: result.successful.length, failed: result.failed.length };
});
window.uppy = uppy;
window.uppyTus = tus;
