// The official @google/genai SDK, unchanged, against filegate: only httpOptions.baseUrl points at it.
// FILEGATE_BIN names the server binary; one server (port 0, temporary data dir) serves the whole file.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { GoogleGenAI } from '@google/genai';

const ALPHA_KEY = 'alpha-conformance-key';
const BETA_KEY = 'beta-conformance-key';
const CHUNK = 8 * 1024 * 1024;

let server;
let baseUrl;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'filegate-node-'));
  server = spawn(process.env.FILEGATE_BIN ?? 'filegate', ['serve'], {
    env: {
      ...process.env,
      FILEGATE_LISTEN: '127.0.0.1:0',
      FILEGATE_DATA_DIR: join(dir, 'data'),
      FILEGATE_API_KEYS: `alpha:${ALPHA_KEY},beta:${BETA_KEY}`,
    },
    stdio: ['ignore', 'pipe', openSync(join(dir, 'server.log'), 'w')],
  });
  baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('filegate did not start')), 60_000);
    createInterface({ input: server.stdout }).on('line', (line) => {
      if (line.startsWith('listening on ')) {
        clearTimeout(timer);
        resolve(line.slice('listening on '.length).trim());
      }
    });
  });
});

after(() => {
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

const client = (key = ALPHA_KEY) => new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl } });

function payload(size, seed) {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block = createHash('sha256').update(block).digest();
    block.copy(out, offset);
  }
  return out;
}

const digest = (bytes) => createHash('sha256').update(bytes).digest('base64');

for (const size of [1, CHUNK - 1, CHUNK, CHUNK + 1, 20_000_000]) {
  test(`upload of ${size} bytes from a Blob round-trips with the right digest`, async () => {
    const ai = client();
    const bytes = payload(size, size);
    const file = await ai.files.upload({
      file: new Blob([bytes]),
      config: { mimeType: 'application/octet-stream', displayName: `blob ${size}` },
    });
    assert.equal(file.sizeBytes, String(size), 'int64 arrives as a string, passed through');
    assert.equal(file.sha256Hash, digest(bytes));
    assert.equal(file.state, 'ACTIVE');
    assert.equal(file.displayName, `blob ${size}`);
    assert.match(file.name, /^files\/[a-z0-9]{16}$/);
    const got = await ai.files.get({ name: file.name });
    assert.deepEqual(got, file);
  });
}

test('upload from a path guesses the mime type, keeps a chosen name and downloads to a path', async () => {
  const ai = client();
  const name = `doc-${randomUUID().slice(0, 8)}`;
  const bytes = payload(CHUNK + 4321, 7);
  const path = join(dir, 'report.pdf');
  writeFileSync(path, bytes);
  const file = await ai.files.upload({ file: path, config: { name } });
  assert.equal(file.name, `files/${name}`);
  assert.equal(file.mimeType, 'application/pdf');
  const out = join(dir, 'download.pdf');
  await ai.files.download({ file: file.name, downloadPath: out });
  assert.equal(digest(readFileSync(out)), digest(bytes));
});

test('list pages through every file', async () => {
  const ai = client(BETA_KEY);
  const names = new Set();
  for (let i = 0; i < 5; i++) {
    const f = await ai.files.upload({ file: new Blob([`n${i}`]), config: { mimeType: 'text/plain' } });
    names.add(f.name);
  }
  const listed = [];
  const pager = await ai.files.list({ config: { pageSize: 2 } });
  for await (const f of pager) listed.push(f.name);
  for (const n of names) assert.ok(listed.includes(n), `${n} listed`);
  assert.equal(new Set(listed).size, listed.length, 'no file twice');
});

test('delete, then get is PERMISSION_DENIED', async () => {
  const ai = client();
  const file = await ai.files.upload({ file: new Blob(['bye']), config: { mimeType: 'text/plain' } });
  await ai.files.delete({ name: file.name });
  await assert.rejects(ai.files.get({ name: file.name }), (err) => {
    assert.equal(err.status, 403);
    assert.equal(JSON.parse(err.message).error.status, 'PERMISSION_DENIED');
    return true;
  });
});

test('a duplicate name is ALREADY_EXISTS and a wrong key is API_KEY_INVALID', async () => {
  const ai = client();
  const name = `dup-${randomUUID().slice(0, 8)}`;
  await ai.files.upload({ file: new Blob(['1']), config: { name, mimeType: 'text/plain' } });
  await assert.rejects(ai.files.upload({ file: new Blob(['2']), config: { name, mimeType: 'text/plain' } }), (err) => {
    assert.equal(err.status, 409);
    return true;
  });
  await assert.rejects(client('wrong-key').files.list(), (err) => {
    assert.equal(err.status, 400);
    assert.equal(JSON.parse(err.message).error.details[0].reason, 'API_KEY_INVALID');
    return true;
  });
});

test('another project cannot see the file', async () => {
  const file = await client().files.upload({ file: new Blob(['mine']), config: { mimeType: 'text/plain' } });
  await assert.rejects(client(BETA_KEY).files.get({ name: file.name }), (err) => err.status === 403);
});

test('a 0-byte Blob fails inside the SDK (known client bug) and leaves nothing listed', async () => {
  const ai = client();
  const before = [];
  for await (const f of await ai.files.list({ config: { pageSize: 100 } })) before.push(f.name);
  // @google/genai never sends a chunk for an empty file, then parses an empty reply (docs §4.2).
  await assert.rejects(ai.files.upload({ file: new Blob([]), config: { mimeType: 'text/plain' } }));
  const afterList = [];
  for await (const f of await ai.files.list({ config: { pageSize: 100 } })) afterList.push(f.name);
  assert.deepEqual(afterList, before, 'the dangling session is not a file');
});
