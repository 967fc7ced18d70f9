// Drives the real `tokenlens lsp` binary over JSON-RPC (vscode-jsonrpc), as the extension's
// language client does, and paints the scores notification with the extension's own logic.
// Binary: $TOKENLENS_BIN, else ../../target/debug/tokenlens (build it with `cargo build`).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { SCORES_CAPABILITY, SCORES_NOTIFICATION, ScoresParams, colorId, rangesByBucket } from '../src/logic';

const repo = path.resolve(__dirname, '..', '..', '..', '..');
const binary = process.env.TOKENLENS_BIN ?? path.join(repo, 'target', 'debug', 'tokenlens');
const model = path.join(repo, 'fixtures', 'golden', 'tiny-bert');
const text = 'The acting was wonderful 😀 and the story moved me.\n\nThe ending was rushed and awful.\n';

test('the server paints scores and answers hover over JSON-RPC', { timeout: 120_000 }, async () => {
  assert.ok(fs.existsSync(binary), `no tokenlens binary at ${binary}; run cargo build`);
  const child = spawn(binary, ['lsp'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const connection = createMessageConnection(
    new StreamMessageReader(child.stdout),
    new StreamMessageWriter(child.stdin),
  );
  const scores = new Promise<ScoresParams>((resolve) =>
    connection.onNotification(SCORES_NOTIFICATION, (params: ScoresParams) => resolve(params)),
  );
  const diagnostics = new Promise<{ diagnostics: unknown[] }>((resolve) =>
    connection.onNotification('textDocument/publishDiagnostics', resolve),
  );
  connection.onRequest('workspace/configuration', (params: { items: unknown[] }) => params.items.map(() => ({})));
  connection.onRequest('window/workDoneProgress/create', () => null);
  connection.listen();

  const init: any = await connection.sendRequest('initialize', {
    processId: process.pid,
    rootUri: null,
    capabilities: {
      experimental: { [SCORES_CAPABILITY]: true },
      workspace: { configuration: true },
    },
    initializationOptions: { model, debounceMs: 0 },
  });
  // VS Code offers only UTF-16.
  assert.equal(init.capabilities.positionEncoding, 'utf-16');
  await connection.sendNotification('initialized', {});
  const uri = 'file:///tmp/vscode-test.txt';
  await connection.sendNotification('textDocument/didOpen', {
    textDocument: { uri, languageId: 'plaintext', version: 1, text },
  });

  const params = await scores;
  assert.equal(params.uri, uri);
  assert.equal(params.version, 1);
  assert.equal(params.units.length, 2);
  const groups = rangesByBucket(params);
  const painted = [...groups.values()].reduce((n, ranges) => n + ranges.length, 0);
  assert.ok(painted > 0);
  for (const [bucket, ranges] of groups) {
    assert.ok(colorId(bucket));
    for (const r of ranges) {
      // UTF-16 ranges: slicing a JavaScript string (UTF-16) by them gives the word.
      const line = text.split('\n')[r.start.line];
      const word = line.slice(r.start.character, r.end.character);
      assert.ok(word.length > 0 && !/\s/.test(word), `range covers ${JSON.stringify(word)}`);
    }
  }
  const published = await diagnostics;
  assert.ok(published.diagnostics.length > 0);

  const first = params.units[0].words[0];
  const hover: any = await connection.sendRequest('textDocument/hover', {
    textDocument: { uri },
    position: first.range.start,
  });
  assert.match(hover.contents.value, /rank \d+ of \d+/);

  await connection.sendRequest('shutdown');
  await connection.sendNotification('exit');
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);
  connection.dispose();
});
