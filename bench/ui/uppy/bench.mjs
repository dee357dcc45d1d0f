// Uppy 6 with its Dashboard and Tus plugins, as its documentation sets them up, uploading into
// ferryd's tus endpoint; bench/ui/upload.mjs drops a file on the Dashboard's input and waits for
// `window.uppyDone`. Tus options are Uppy's defaults (one PATCH for the whole file).
import { Uppy, Dashboard, Tus } from './uppy.min.mjs';

const uppy = new Uppy({ autoProceed: true })
  .use(Dashboard, { inline: true, target: '#uppy' })
  .use(Tus, { endpoint: '/files/' });
uppy.on('complete', (result) => {
  window.uppyDone = { ok: result.successful.length, failed: result.failed.length };
});
window.uppy = uppy;
