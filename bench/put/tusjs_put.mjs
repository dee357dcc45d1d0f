// tus-js-client under Node for bench/put/run.sh: uploads FILE with parallelUploads, as a user
// would (the file read into a Buffer; default chunkSize, i.e. one request per part).
//   node tusjs_put.mjs ENDPOINT TOKEN FILE PARALLEL
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
const tus = require('tus-js-client');
const [endpoint, token, file, parallel] = process.argv.slice(2);
const upload = new tus.Upload(fs.readFileSync(file), {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: path.basename(file) },
  parallelUploads: Number(parallel),
  retryDelays: [0, 1000],
  onError: (err) => {
    console.error(`tus-js-client failed: ${err}`);
    process.exit(1);
  },
  onSuccess: () => console.log(upload.url),
});
upload.start();
