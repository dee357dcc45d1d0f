// @tus/server with @tus/file-store, the reference Node tus server, for bench/tus/run.sh.
// Usage: node tus_node_server.mjs DIR  -> prints "listening on http://127.0.0.1:PORT/files/"
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

// The packages are installed once, in tests/interop (scripts/test does it).
const interop = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../tests/interop/');
const req = createRequire(interop);
const { Server } = await import(pathToFileURL(req.resolve('@tus/server')));
const { FileStore } = await import(pathToFileURL(req.resolve('@tus/file-store')));

const server = new Server({ path: '/files', datastore: new FileStore({ directory: process.argv[2] }) });
const httpServer = http.createServer((rq, rs) => server.handle(rq, rs));
httpServer.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${httpServer.address().port}/files/`);
});
