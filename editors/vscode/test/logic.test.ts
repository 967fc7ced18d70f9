import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BUCKETS,
  ScoresParams,
  colorId,
  expandScores,
  isStale,
  rangesByBucket,
  serverCommand,
  serverSettings,
  summary,
} from '../src/logic';

const range = (line: number, start: number, end: number) => ({
  start: { line, character: start },
  end: { line, character: end },
});

const params: ScoresParams = {
  uri: 'file:///a.txt',
  version: 3,
  units: [
    {
      range: range(0, 0, 20),
      label: 'positive',
      target: 'positive',
      probs: [
        { label: 'negative', probability: 0.1 },
        { label: 'positive', probability: 0.9 },
      ],
      words: [
        { range: range(0, 0, 4), score: 1, bucket: 5, color: '#a63603' },
        { range: range(0, 5, 9), score: -0.3, bucket: -2, color: '#c6dbef' },
        { range: range(0, 10, 12), score: 0.95, bucket: 5, color: '#a63603' },
      ],
    },
  ],
};

test('buckets map to the contributed colour ids', () => {
  assert.equal(colorId(5), 'tokenlens.positive5');
  assert.equal(colorId(-1), 'tokenlens.negative1');
  assert.equal(colorId(0), undefined);
  assert.equal(colorId(9), 'tokenlens.positive5');
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
  const contributed = pkg.contributes.colors.map((c: { id: string }) => c.id).sort();
  assert.deepEqual(BUCKETS.map((b) => colorId(b)).sort(), contributed);
});

test('words are grouped by bucket, every bucket present', () => {
  const groups = rangesByBucket(params);
  assert.equal(groups.size, 10);
  assert.deepEqual(groups.get(5), [range(0, 0, 4), range(0, 10, 12)]);
  assert.deepEqual(groups.get(-2), [range(0, 5, 9)]);
  assert.deepEqual(groups.get(1), []);
});

test('stale notifications are recognised', () => {
  assert.equal(isStale(params, 4), true);
  assert.equal(isStale(params, 3), false);
});

test('summary lists the most probable class first', () => {
  assert.equal(summary(params.units[0]), 'positive 90% · negative 10%');
});

test('settings keep only the server keys that are set', () => {
  const values: Record<string, unknown> = {
    model: '',
    method: 'attention_rollout',
    topK: 10,
    path: '/usr/bin/tokenlens',
    'features.inlayHints': true,
    'features.fade': undefined,
  };
  assert.deepEqual(serverSettings((key) => values[key]), {
    method: 'attention_rollout',
    topK: 10,
    features: { inlayHints: true },
  });
  assert.deepEqual(serverCommand(''), { command: 'tokenlens', args: ['lsp'] });
  assert.deepEqual(serverCommand('/x/tokenlens'), { command: '/x/tokenlens', args: ['lsp'] });
});

test('expandScores moves the words of repeated units to their new place', () => {
  const previous: ScoresParams = {
    uri: 'file:///a.txt',
    version: 1,
    units: [
      { range: range(0, 0, 10), label: 'positive', target: 'positive', probs: [], words: [] },
      {
        range: { start: { line: 2, character: 0 }, end: { line: 3, character: 8 } },
        label: 'negative',
        target: 'negative',
        probs: [{ label: 'negative', probability: 0.9 }],
        words: [
          { range: range(2, 4, 9), score: -1, bucket: -5, color: '#08519c' },
          { range: range(3, 0, 4), score: 0.3, bucket: 2, color: '#fdd0a2' },
        ],
      },
    ],
  };
  const message = {
    uri: 'file:///a.txt',
    version: 2,
    base: 1,
    units: [
      { range: range(0, 0, 12), label: 'positive', target: 'positive', probs: [], words: [] },
      { range: { start: { line: 3, character: 2 }, end: { line: 4, character: 8 } }, sameAs: 1 },
    ],
  };
  const full = expandScores(message, previous);
  assert.ok(full);
  assert.equal(full.version, 2);
  assert.deepEqual(full.units[0].range, range(0, 0, 12));
  assert.equal(full.units[1].label, 'negative');
  // The unit moved one line down and two characters right: its first line's words move right too.
  assert.deepEqual(full.units[1].words[0].range, range(3, 6, 11));
  assert.deepEqual(full.units[1].words[1].range, range(4, 0, 4));
  // A message based on another notification cannot be rebuilt.
  assert.equal(expandScores({ ...message, base: 7 }, previous), undefined);
  // A full message needs no previous one.
  assert.deepEqual(expandScores({ ...previous, version: 3 }, undefined)?.units, previous.units);
});
