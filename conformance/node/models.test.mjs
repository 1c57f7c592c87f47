// Model calls through filegate with the official @google/genai SDK, unchanged (only httpOptions.baseUrl
// points at filegate), forwarded as to Vertex AI to the fake of Google's services (tests/fakes/google.py),
// whose "model" answers with the SHA-256 of the bytes it could read. Where filegate keeps the file is the
// run's configuration: on the fake's Cloud Storage it reaches Vertex by its gs:// URI, elsewhere inline or
// through the staging bucket.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { GoogleGenAI, createPartFromUri, createUserContent } from '@google/genai';

const ALPHA_KEY = 'alpha-conformance-key';
const BEARER = 'vertex-conformance-token';
const INLINE_MAX = 64 * 1024;
const FAKE = new URL('../../tests/fakes/google.py', import.meta.url).pathname;

let dir;
let fake;
let fakeUrl;
let server;
let baseUrl;

/** Starts `command` and resolves with the URL it prints on its `listening on` line. */
function started(child, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start`)), 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('listening on ')) {
        clearTimeout(timer);
        resolve(line.slice('listening on '.length).trim());
      }
    });
  });
}

/** The fake Cloud Storage this run keeps files in, if it does (scripts/test.sh, sqlite-gcs). */
function runGcs() {
  const account = process.env.GOOGLE_SERVICE_ACCOUNT;
  if (!account || !(process.env.FILEGATE_BLOB_STORE ?? '').startsWith('gs://')) return null;
  return JSON.parse(readFileSync(account, 'utf8')).gcs_base_url;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'filegate-node-models-'));
  const gcs = runGcs();
  fake = spawn('python3', [FAKE, '--parent-pid', String(process.pid), '--bearer', BEARER, ...(gcs ? ['--gcs-url', gcs] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  fakeUrl = await started(fake, 'the fake of Google');
  const env = {
    ...process.env,
    FILEGATE_LISTEN: '127.0.0.1:0',
    FILEGATE_DATA_DIR: join(dir, 'data'),
    FILEGATE_API_KEYS: `alpha:${ALPHA_KEY}`,
    FILEGATE_UPSTREAM: 'vertex',
    FILEGATE_VERTEX_PROJECT: 'conformance',
    FILEGATE_VERTEX_ENDPOINT: fakeUrl,
    FILEGATE_UPSTREAM_BEARER_TOKEN: BEARER,
    FILEGATE_INLINE_MAX_BYTES: String(INLINE_MAX),
    FILEGATE_VERTEX_STAGING_BUCKET: 'gs://conformance-staging/copies',
  };
  if (!gcs) {
    const account = join(dir, 'fake-gcs-account.json');
    writeFileSync(account, JSON.stringify({
      private_key: 'unused', private_key_id: 'unused', client_email: 't@example.invalid',
      disable_oauth: true, gcs_base_url: `${fakeUrl}/gcs`,
    }));
    env.GOOGLE_SERVICE_ACCOUNT = account;
  }
  server = spawn(process.env.FILEGATE_BIN ?? 'filegate', ['serve'], {
    env,
    stdio: ['ignore', 'pipe', openSync(join(dir, 'server.log'), 'w')],
  });
  baseUrl = await started(server, 'filegate');
});

after(() => {
  server.kill('SIGTERM');
  fake.kill();
  rmSync(dir, { recursive: true, force: true });
});

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const saw = (text) => JSON.parse(text).saw;

for (const size of [1000, 300_000]) {
  test(`generateContent reads a file of ${size} bytes, streaming and not`, async () => {
    const ai = new GoogleGenAI({ apiKey: ALPHA_KEY, httpOptions: { baseUrl } });
    const bytes = randomBytes(size);
    const file = await ai.files.upload({ file: new Blob([bytes]), config: { mimeType: 'video/mp4' } });
    const contents = createUserContent([createPartFromUri(file.uri, file.mimeType), 'Describe it']);

    const response = await ai.models.generateContent({ model: 'gemini-test', contents });
    const seen = saw(response.text);
    assert.equal(seen[0].sha256, sha(bytes));
    assert.equal(seen[0].mime, 'video/mp4');
    const expected = runGcs() || size > INLINE_MAX ? 'gs' : 'inline';
    assert.equal(seen[0].via, expected);
    assert.equal(response.usageMetadata.totalTokenCount, 25);

    let text = '';
    let events = 0;
    for await (const chunk of await ai.models.generateContentStream({ model: 'gemini-test', contents })) {
      text += chunk.text;
      events += 1;
    }
    assert.equal(events, 3);
    assert.equal(saw(text)[0].sha256, sha(bytes));
  });
}

test('a missing file is refused with Google\'s wording before any upstream call', async () => {
  const ai = new GoogleGenAI({ apiKey: ALPHA_KEY, httpOptions: { baseUrl } });
  const contents = createUserContent([createPartFromUri(`${baseUrl}/v1beta/files/nosuchfile`, 'video/mp4'), 'Hi']);
  await assert.rejects(ai.models.generateContent({ model: 'gemini-test', contents }), (err) => {
    assert.equal(err.status, 403);
    assert.match(err.message, /You do not have permission to access the File nosuchfile/);
    return true;
  });
});

test('in Vertex AI express mode (vertexai: true, an API key) calls, streams, counts and caches', async () => {
  const gemini = new GoogleGenAI({ apiKey: ALPHA_KEY, httpOptions: { baseUrl } });
  const vertex = new GoogleGenAI({ vertexai: true, apiKey: ALPHA_KEY, httpOptions: { baseUrl } });
  const bytes = randomBytes(100_000);
  // Vertex AI has no Files API: the file is uploaded in Gemini API mode and named by its URI.
  const file = await gemini.files.upload({ file: new Blob([bytes]), config: { mimeType: 'video/mp4' } });
  const clip = { ...createPartFromUri(file.uri, 'video/mp4'), videoMetadata: { startOffset: '3s', endOffset: '9s' } };
  const contents = createUserContent([clip, 'What happens?']);

  const seen = saw((await vertex.models.generateContent({ model: 'gemini-test', contents })).text);
  assert.equal(seen[0].sha256, sha(bytes));
  const offsets = Object.fromEntries(Object.entries(seen[0].videoMetadata).map(([k, v]) => [k.replace('_o', 'O'), v]));
  assert.deepEqual(offsets, { startOffset: '3s', endOffset: '9s' });
  let text = '';
  for await (const chunk of await vertex.models.generateContentStream({ model: 'gemini-test', contents })) {
    text += chunk.text;
  }
  assert.equal(saw(text)[0].sha256, sha(bytes));
  assert.equal((await vertex.models.countTokens({ model: 'gemini-test', contents })).totalTokens, 20);

  const cache = await vertex.caches.create({ model: 'gemini-test', config: { contents: [clip], ttl: '300s' } });
  const cached = await vertex.models.generateContent({
    model: 'gemini-test', contents: 'And then?', config: { cachedContent: cache.name },
  });
  assert.equal(saw(cached.text)[0].sha256, sha(bytes));
  await vertex.caches.delete({ name: cache.name });
  await assert.rejects(vertex.caches.get({ name: cache.name }), (err) => err.status === 403);
});

test('the openai SDK: files.create, a chat reading the file, a tool call round trip, files.content and del', async () => {
  const { default: OpenAI, toFile } = await import('openai');
  const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: ALPHA_KEY });
  const bytes = randomBytes(50_000);
  // The Node SDK sends the file before the purpose: filegate checks the purpose once the bytes are in.
  const file = await client.files.create({ file: await toFile(bytes, 'clip.mp4'), purpose: 'user_data' });
  assert.ok(file.id.startsWith('file-'));
  assert.equal(file.bytes, bytes.length);
  assert.equal((await client.files.retrieve(file.id)).filename, 'clip.mp4');
  assert.ok((await client.files.list()).data.some((f) => f.id === file.id));
  const content = Buffer.from(await (await client.files.content(file.id)).arrayBuffer());
  assert.ok(content.equals(bytes));

  const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
  const messages = [{ role: 'user', content: [{ type: 'file', file: { file_id: file.id } }, { type: 'text', text: 'What is it?' }] }];
  const first = await client.chat.completions.create({ model: 'gemini-test', messages, tools });
  const call = first.choices[0].message.tool_calls[0];
  assert.equal(first.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(JSON.parse(call.function.arguments), { asked: 'What is it?' });
  const final = await client.chat.completions.create({
    model: 'gemini-test',
    tools,
    messages: [...messages, first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'a clip' }],
  });
  const seen = saw(final.choices[0].message.content);
  assert.equal(seen[0].sha256, sha(bytes));
  assert.deepEqual(seen.at(-1), { functionResponse: { name: 'lookup', response: { content: 'a clip' } } });

  assert.equal((await client.files.delete(file.id)).deleted, true);
  await assert.rejects(client.files.retrieve(file.id), (err) => err.status === 404);
});

test('the openai SDK: responses.create reading an uploaded file, and its event stream', async () => {
  const { default: OpenAI, toFile } = await import('openai');
  const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: ALPHA_KEY });
  const bytes = randomBytes(10_000);
  const file = await client.files.create({ file: await toFile(bytes, 'notes.txt'), purpose: 'user_data' });
  const input = [{ role: 'user', content: [{ type: 'input_file', file_id: file.id }, { type: 'input_text', text: 'Summarize' }] }];
  const response = await client.responses.create({ model: 'gemini-test', input });
  assert.equal(response.status, 'completed');
  assert.equal(saw(response.output_text)[0].sha256, sha(bytes));
  const kinds = [];
  let text = '';
  for await (const event of await client.responses.create({ model: 'gemini-test', input, stream: true })) {
    kinds.push(event.type);
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  assert.equal(kinds[0], 'response.created');
  assert.equal(kinds.at(-1), 'response.completed');
  assert.equal(saw(text)[0].sha256, sha(bytes));
});
