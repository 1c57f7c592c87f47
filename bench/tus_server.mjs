// The peer for bench/throughput.sh: @tus/server with @tus/file-store (the resumable-upload server people
// deploy today), on loopback. usage: node tus_server.mjs DIR → prints "listening on http://127.0.0.1:PORT".
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const directory = process.argv[2];
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(0, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`));
