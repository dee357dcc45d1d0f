// Uploads one file to a tus endpoint with tus-js-client under Node, as a user would.
//
// Usage: node tus_js_upload.mjs '<json options>' where the options are
//   { endpoint, token, file, chunkSize?, parallel?, deferred?, uploadUrl? }
// parallel > 1 uses parallelUploads (partial uploads + concatenation); deferred streams the
// file with uploadLengthDeferred; uploadUrl resumes an existing upload.
// Prints "URL <upload url>" on success; exits 1 on error.
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import * as tus from 'tus-js-client';

const o = JSON.parse(process.argv[2]);
// A plain Readable (not an fs.ReadStream, which tus-js-client 4.3.1 slices by path and, with a
// deferred length, announces a full chunk's Content-Length for the short last one).
const input = o.deferred ? fs.createReadStream(o.file).pipe(new PassThrough()) : fs.readFileSync(o.file);
const options = {
  endpoint: o.endpoint,
  headers: { Authorization: `Bearer ${o.token}` },
  metadata: { filename: path.basename(o.file) },
  retryDelays: [0, 200, 1000],
  removeFingerprintOnSuccess: true,
  onError: (err) => {
    console.error(`tus-js-client failed: ${err}`);
    process.exit(1);
  },
  onSuccess: () => {
    console.log(`URL ${upload.url}`);
  },
};
if (o.chunkSize) options.chunkSize = o.chunkSize;
if (o.parallel && o.parallel > 1) options.parallelUploads = o.parallel;
if (o.deferred) options.uploadLengthDeferred = true;
if (o.uploadUrl) options.uploadUrl = o.uploadUrl;
const upload = new tus.Upload(input, options);
upload.start();
