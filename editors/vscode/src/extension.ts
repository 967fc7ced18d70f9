// tokenlens for VS Code: starts `tokenlens lsp`, asks for its scores notification and paints
// every scored word's background (one decoration type per bucket, themeable colours from
// `contributes.colors`), with a mark in the overview ruler.
import * as vscode from 'vscode';
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  StaticFeature,
  ClientCapabilities,
  FeatureState,
} from 'vscode-languageclient/node';
import {
  BUCKETS,
  METHODS,
  SCORES_CAPABILITY,
  SCORES_INCREMENTAL_CAPABILITY,
  SCORES_NOTIFICATION,
  ScoresMessage,
  ScoresParams,
  colorId,
  expandScores,
  isStale,
  rangesByBucket,
  serverCommand,
  serverSettings,
} from './logic';

let client: LanguageClient | undefined;
let decorationsOn = true;
const decorationTypes = new Map<number, vscode.TextEditorDecorationType>();
/** Last scores per document URI, to repaint when editors become visible again. */
const lastScores = new Map<string, ScoresParams>();

/**
 * Declares `experimental.tokenlensScores` so that the server sends the notification, and
 * `tokenlensScoresIncremental` so that unchanged paragraphs come by reference.
 */
class ScoresFeature implements StaticFeature {
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.experimental = {
      ...(capabilities.experimental ?? {}),
      [SCORES_CAPABILITY]: true,
      [SCORES_INCREMENTAL_CAPABILITY]: true,
    };
  }
  getState(): FeatureState {
    return { kind: 'static' };
  }
  initialize(): void {}
  clear(): void {}
}

function createDecorationTypes(): void {
  for (const bucket of BUCKETS) {
    const id = colorId(bucket);
    if (!id) {
      continue;
    }
    const color = new vscode.ThemeColor(id);
    decorationTypes.set(
      bucket,
      vscode.window.createTextEditorDecorationType({
        backgroundColor: color,
        overviewRulerColor: Math.abs(bucket) >= 3 ? color : undefined,
        overviewRulerLane: vscode.OverviewRulerLane.Center,
        rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
      }),
    );
  }
}

function paint(editor: vscode.TextEditor): void {
  const params = lastScores.get(editor.document.uri.toString());
  const enabled = decorationsOn && vscode.workspace.getConfiguration('tokenlens').get('decorations', true);
  const groups = params && enabled && !isStale(params, editor.document.version) ? rangesByBucket(params) : undefined;
  for (const [bucket, type] of decorationTypes) {
    const ranges = groups?.get(bucket) ?? [];
    editor.setDecorations(
      type,
      ranges.map(
        (r) => new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character),
      ),
    );
  }
}

function paintAll(): void {
  for (const editor of vscode.window.visibleTextEditors) {
    paint(editor);
  }
}

function settings() {
  const section = vscode.workspace.getConfiguration('tokenlens');
  return serverSettings((key) => section.get(key));
}

async function start(context: vscode.ExtensionContext): Promise<void> {
  const section = vscode.workspace.getConfiguration('tokenlens');
  const { command, args } = serverCommand(section.get<string>('path'));
  const serverOptions: ServerOptions = { command, args };
  const languages = section.get<string[]>('languages') ?? ['plaintext', 'markdown', 'git-commit', 'scminput'];
  const clientOptions: LanguageClientOptions = {
    documentSelector: languages.flatMap((language) => [
      { scheme: 'file', language },
      { scheme: 'untitled', language },
      { scheme: 'vscode-scm', language },
    ]),
    initializationOptions: settings(),
    synchronize: { configurationSection: 'tokenlens' },
    middleware: {
      workspace: {
        // The server asks for the `tokenlens` section; answer with the server's own keys.
        configuration: (params) =>
          params.items.map((item) => (item.section === 'tokenlens' ? settings() : null)),
      },
    },
  };
  client = new LanguageClient('tokenlens', 'tokenlens', serverOptions, clientOptions);
  client.registerFeature(new ScoresFeature());
  context.subscriptions.push(
    client.onNotification(SCORES_NOTIFICATION, (message: ScoresMessage) => {
      // Every notification is kept (a stale one too): the next one may repeat its units.
      const params = expandScores(message, lastScores.get(message.uri));
      if (!params) {
        return;
      }
      lastScores.set(params.uri, params);
      for (const editor of vscode.window.visibleTextEditors) {
        if (editor.document.uri.toString() === params.uri) {
          paint(editor);
        }
      }
    }),
  );
  await client.start();
}

async function stop(): Promise<void> {
  if (client) {
    await client.stop();
    client = undefined;
  }
}

async function executeOnServer(command: string, argument?: string): Promise<void> {
  if (!client) {
    return;
  }
  await client.sendRequest('workspace/executeCommand', {
    command,
    arguments: argument === undefined ? [] : [argument],
  });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  createDecorationTypes();
  context.subscriptions.push(
    ...decorationTypes.values(),
    vscode.window.onDidChangeVisibleTextEditors(paintAll),
    vscode.workspace.onDidCloseTextDocument((document) => lastScores.delete(document.uri.toString())),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      // The binary and the document selector are fixed at start; the rest is pulled live.
      if (event.affectsConfiguration('tokenlens.path') || event.affectsConfiguration('tokenlens.languages')) {
        await stop();
        await start(context);
      }
      paintAll();
    }),
    vscode.commands.registerCommand('tokenlens.restart', async () => {
      await stop();
      await start(context);
    }),
    vscode.commands.registerCommand('tokenlens.toggle', () => {
      decorationsOn = !decorationsOn;
      paintAll();
    }),
    vscode.commands.registerCommand('tokenlens.pickTarget', async () => {
      const uri = vscode.window.activeTextEditor?.document.uri.toString();
      const unit = uri ? lastScores.get(uri)?.units[0] : undefined;
      const labels = ['auto', ...(unit?.probs.map((p) => p.label) ?? [])];
      const picked = await vscode.window.showQuickPick(labels, { placeHolder: 'Class to explain' });
      if (picked) {
        await executeOnServer('tokenlens.setTarget', picked);
      }
    }),
    vscode.commands.registerCommand('tokenlens.pickMethod', async () => {
      const picked = await vscode.window.showQuickPick([...METHODS], { placeHolder: 'Relevance method' });
      if (picked) {
        await executeOnServer('tokenlens.setMethod', picked);
      }
    }),
  );
  await start(context);
}

export async function deactivate(): Promise<void> {
  await stop();
}
