// @tus/server with @tus/file-store on 127.0.0.1, for ferry's tests and benchmarks.
//
//   node tus-node-server.mjs DIR [PORT]
//
// Stores uploads in DIR, listens on PORT (0, the default, picks a free one) and prints the
// endpoint URL (http://127.0.0.1:PORT/files/) on one line of stdout once it accepts requests.
// With TUS_TOKEN set, every request except OPTIONS needs `Authorization: Bearer $TUS_TOKEN`.
// Restarting with the same DIR and PORT resumes the same uploads (the file store is durable).
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [dir, port = '0'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node tus-node-server.mjs DIR [PORT]');
  process.exit(2);
}
const token = process.env.TUS_TOKEN;

const server = new Server({
  path: '/files',
  datastore: new FileStore({ directory: dir }),
  async onIncomingRequest(req) {
    if (token && req.method !== 'OPTIONS' && req.headers.get('authorization') !== `Bearer ${token}`) {
      throw { status_code: 401, body: 'expected Authorization: Bearer <token>\n' };
    }
  },
});

const http = server.listen({ host: '127.0.0.1', port: Number(port) }, () => {
  console.log(`http://127.0.0.1:${http.address().port}/files/`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
