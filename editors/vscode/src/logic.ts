// Pure logic of the extension (no `vscode` import), unit-tested in test/logic.test.ts.

/** An LSP position / range as they arrive in the notification. */
export interface Position {
  line: number;
  character: number;
}
export interface Range {
  start: Position;
  end: Position;
}

/** Params of the server's `tokenlens/publishScores` notification (see docs/lsp.md). */
export interface ScoresParams {
  uri: string;
  version: number;
  method?: string;
  encoding?: string;
  units: ScoredUnit[];
}
/**
 * The notification as sent to a client that declares `tokenlensScoresIncremental`: units the
 * previous notification (version `base`) had are repeated by reference.
 */
export interface ScoresMessage {
  uri: string;
  version: number;
  method?: string;
  encoding?: string;
  base?: number;
  units: (ScoredUnit | RepeatedUnit)[];
}
export interface RepeatedUnit {
  range: Range;
  /** Index of the unit of notification `base` with the same text. */
  sameAs: number;
}
export interface ScoredUnit {
  range: Range;
  label: string;
  target: string;
  probs: { label: string; probability: number }[];
  words: ScoredWord[];
}
export interface ScoredWord {
  range: Range;
  score: number;
  /** −5..5, never 0: sign = for/against the explained class, magnitude = strength. */
  bucket: number;
  color: string;
}

/** The server's relevance methods (`tokenlens score --help`). */
export const METHODS = [
  'chefer_lrp_all_layers',
  'chefer_lrp_last_layer_rollout',
  'partial_lrp_last_layer',
  'full_lrp',
  'raw_attention_last_layer',
  'attention_rollout',
  'attention_gradcam',
  'gradient_rollout_iccv21',
  'gradient_x_input',
  'attnlrp',
  'cplrp',
] as const;

export const SCORES_NOTIFICATION = 'tokenlens/publishScores';
export const SCORES_CAPABILITY = 'tokenlensScores';
export const SCORES_INCREMENTAL_CAPABILITY = 'tokenlensScoresIncremental';

/**
 * The full scores of `message`: repeated units take the words of unit `sameAs` of `previous`
 * (the notification of version `base`), moved by the change of the unit's start. `undefined`
 * when the message refers to a notification other than `previous`.
 */
export function expandScores(
  message: ScoresMessage,
  previous: ScoresParams | undefined,
): ScoresParams | undefined {
  if (message.base !== undefined && previous?.version !== message.base) {
    return undefined;
  }
  const units: ScoredUnit[] = [];
  for (const unit of message.units) {
    if (!('sameAs' in unit)) {
      units.push(unit);
      continue;
    }
    const old = previous?.units[unit.sameAs];
    if (!old) {
      return undefined;
    }
    const lines = unit.range.start.line - old.range.start.line;
    const characters = unit.range.start.character - old.range.start.character;
    const moved = (p: Position): Position => ({
      line: p.line + lines,
      character: p.line === old.range.start.line ? p.character + characters : p.character,
    });
    units.push({
      ...old,
      range: unit.range,
      words: old.words.map((w) => ({ ...w, range: { start: moved(w.range.start), end: moved(w.range.end) } })),
    });
  }
  return { uri: message.uri, version: message.version, method: message.method, encoding: message.encoding, units };
}

/** The colour ids contributed in package.json (`contributes.colors`), one per bucket. */
export const BUCKETS = [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5];

export function colorId(bucket: number): string | undefined {
  const strength = Math.min(Math.abs(Math.trunc(bucket)), 5);
  if (strength === 0) {
    return undefined;
  }
  return `tokenlens.${bucket < 0 ? 'negative' : 'positive'}${strength}`;
}

/** Ranges of every marked word, grouped by bucket (one decoration type per bucket). */
export function rangesByBucket(params: ScoresParams): Map<number, Range[]> {
  const groups = new Map<number, Range[]>(BUCKETS.map((b) => [b, []]));
  for (const unit of params.units) {
    for (const word of unit.words) {
      const group = groups.get(word.bucket);
      if (group) {
        group.push(word.range);
      }
    }
  }
  return groups;
}

/** Whether a notification is for an older text than the editor shows (then it is dropped). */
export function isStale(params: ScoresParams, documentVersion: number): boolean {
  return params.version < documentVersion;
}

/** `POSITIVE 97% · NEGATIVE 3%`, most probable first. */
export function summary(unit: ScoredUnit): string {
  return [...unit.probs]
    .sort((a, b) => b.probability - a.probability)
    .map((p) => `${p.label} ${Math.round(p.probability * 100)}%`)
    .join(' · ');
}

/** The settings as the server reads them (`initializationOptions`, workspace/configuration). */
export interface ServerSettings {
  model?: string;
  method?: string;
  target?: string;
  topK?: number;
  diagnosticsPerUnit?: number;
  diagnosticSeverity?: string;
  debounceMs?: number;
  languages?: string[];
  features?: Record<string, boolean>;
}

const SERVER_KEYS = [
  'model',
  'method',
  'target',
  'topK',
  'diagnosticsPerUnit',
  'diagnosticSeverity',
  'debounceMs',
  'languages',
] as const;
const FEATURES = ['documentColor', 'diagnostics', 'codeLens', 'inlayHints', 'semanticTokens', 'fade'];

/** Picks the server's keys out of the `tokenlens` configuration section (a getter by key). */
export function serverSettings(get: (key: string) => unknown): ServerSettings {
  const out: Record<string, unknown> = {};
  for (const key of SERVER_KEYS) {
    const value = get(key);
    if (value !== undefined && value !== null && value !== '') {
      out[key] = value;
    }
  }
  const features: Record<string, boolean> = {};
  for (const feature of FEATURES) {
    const value = get(`features.${feature}`);
    if (typeof value === 'boolean') {
      features[feature] = value;
    }
  }
  out.features = features;
  return out as ServerSettings;
}

/** The command line that starts the server. */
export function serverCommand(path: string | undefined): { command: string; args: string[] } {
  return { command: path && path.trim() !== '' ? path : 'tokenlens', args: ['lsp'] };
}
