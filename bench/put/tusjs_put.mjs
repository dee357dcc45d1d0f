// tus-js-client under Node for bench/put/run.sh: uploads FILE with parallelUploads, as a user
// would, default chunkSize (one request per part). SOURCE: `buffer` reads the file into a
// Buffer; `stream` passes fs.createReadStream(FILE), which tus-js-client slices by path
// (its FileSource), so the file is never held in memory whole. CHUNK (bytes) sets chunkSize
// and RETRIES sets that many 1 s retryDelays (bench/put/flaky.sh: 8 MiB chunks, retries
// every second); without them tus-js-client's defaults apply and it retries twice.
//   node tusjs_put.mjs ENDPOINT TOKEN FILE PARALLEL [buffer|stream] [CHUNK] [RETRIES]
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
const tus = require('tus-js-client');
const [endpoint, token, file, parallel, source = 'buffer', chunk, retries] = process.argv.slice(2);
const input = source === 'stream' ? fs.createReadStream(file) : fs.readFileSync(file);
const upload = new tus.Upload(input, {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: path.basename(file) },
  parallelUploads: Number(parallel),
  ...(chunk ? { chunkSize: Number(chunk) } : {}),
  retryDelays: retries ? Array(Number(retries)).fill(1000) : [0, 1000],
  onError: (err) => {
    console.error(`tus-js-client failed: ${err}`);
    process.exit(1);
  },
  onSuccess: () => console.log(upload.url),
});
upload.start();
