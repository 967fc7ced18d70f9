//! A small JSON-RPC client that drives the real `tokenlens lsp` binary over stdio, for the
//! protocol tests and the latency benchmark. It answers the server's own requests
//! (`workspace/configuration`, progress creation, refreshes) and records every notification.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Generous: the tests wait for events, they never time them.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn tiny_model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden/tiny-bert")
        .display()
        .to_string()
}

/// A message from the server, received at `at`.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Value,
    pub at: Instant,
}

pub struct LspClient {
    child: Child,
    /// `None` once closed with [`LspClient::close_input`].
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    incoming: Receiver<Received>,
    /// Notifications and server requests seen so far and not yet consumed by a wait.
    backlog: VecDeque<Received>,
    /// Every server→client request, for assertions on progress and configuration pulls.
    pub server_requests: Arc<Mutex<Vec<Value>>>,
    /// What `workspace/configuration` answers with (the `tokenlens` section).
    pub configuration: Arc<Mutex<Value>>,
    /// Whether server→client requests are answered (a client that hangs does not).
    pub answers_server_requests: Arc<AtomicBool>,
    next_id: i64,
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn write_message(stdin: &Mutex<Option<ChildStdin>>, message: &Value) {
    write_body(stdin, &message.to_string());
}

fn write_body(stdin: &Mutex<Option<ChildStdin>>, body: &str) {
    let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    // One lock per message keeps the test thread's and the reader thread's messages whole.
    let mut stdin = stdin.lock().unwrap();
    // A server that has exited closes the pipe; the test then fails on the missing reply.
    if let Some(stdin) = stdin.as_mut() {
        let _ = stdin.write_all(framed.as_bytes());
        let _ = stdin.flush();
    }
}

impl LspClient {
    /// Starts `tokenlens lsp` with extra arguments.
    pub fn start(args: &[&str]) -> LspClient {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenlens"))
            .arg("lsp")
            .args(args)
            .env_remove("TOKENLENS_MODEL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tokenlens lsp");
        let stdin = Arc::new(Mutex::new(Some(child.stdin.take().expect("stdin"))));
        let stdout = child.stdout.take().expect("stdout");
        let (sender, incoming): (Sender<Received>, _) = channel();
        let server_requests = Arc::new(Mutex::new(Vec::new()));
        let configuration = Arc::new(Mutex::new(json!({})));
        let answers_server_requests = Arc::new(AtomicBool::new(true));
        // Server requests are answered from the reader thread.
        let replies = stdin.clone();
        {
            let requests = server_requests.clone();
            let configuration = configuration.clone();
            let replies = replies.clone();
            let answers = answers_server_requests.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                while let Some(message) = read_message(&mut reader) {
                    let is_server_request =
                        message.get("method").is_some() && message.get("id").is_some();
                    if is_server_request {
                        requests.lock().unwrap().push(message.clone());
                    }
                    if is_server_request && answers.load(Ordering::SeqCst) {
                        let result = match message["method"].as_str() {
                            Some("workspace/configuration") => {
                                let items =
                                    message["params"]["items"].as_array().map_or(1, Vec::len);
                                let section = configuration.lock().unwrap().clone();
                                Value::Array(vec![section; items])
                            }
                            _ => Value::Null,
                        };
                        let reply =
                            json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                        write_message(&replies, &reply);
                    }
                    if sender
                        .send(Received {
                            message,
                            at: Instant::now(),
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        LspClient {
            child,
            stdin,
            incoming,
            backlog: VecDeque::new(),
            server_requests,
            configuration,
            answers_server_requests,
            next_id: 1,
        }
    }

    /// Sends `body` framed as it is, valid JSON-RPC or not.
    pub fn send_raw(&mut self, body: &str) {
        write_body(&self.stdin, body);
    }

    /// Closes the server's stdin, as an editor that crashed does.
    pub fn close_input(&mut self) {
        self.stdin.lock().unwrap().take();
    }

    pub fn send(&mut self, message: Value) {
        write_message(&self.stdin, &message);
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its id without waiting.
    pub fn request_async(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// The whole response (`result` or `error`) to request `id`.
    pub fn response(&mut self, id: i64) -> Value {
        self.wait_for(|m| m.get("method").is_none() && m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no response to request {id}"))
            .message
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.request_async(method, params);
        let response = self.response(id);
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// The first message (oldest first, seen before or arriving within [`WAIT`]) matching.
    pub fn wait_for(&mut self, mut matches: impl FnMut(&Value) -> bool) -> Option<Received> {
        if let Some(i) = self.backlog.iter().position(|r| matches(&r.message)) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(received) if matches(&received.message) => return Some(received),
                Ok(other) => self.backlog.push_back(other),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None;
                }
            }
        }
    }

    /// The next notification `method` (params) satisfying `matches`.
    pub fn notification(&mut self, method: &str, mut matches: impl FnMut(&Value) -> bool) -> Value {
        self.wait_for(|m| m["method"] == method && m.get("id").is_none() && matches(&m["params"]))
            .unwrap_or_else(|| panic!("no {method} notification arrived"))
            .message["params"]
            .clone()
    }

    /// Every message received so far (drains the channel without waiting).
    pub fn drain(&mut self) -> Vec<Value> {
        self.drain_received()
            .iter()
            .map(|r| r.message.clone())
            .collect()
    }

    /// [`LspClient::drain`] with each message's arrival time, oldest first.
    pub fn drain_received(&mut self) -> &VecDeque<Received> {
        while let Ok(received) = self.incoming.try_recv() {
            self.backlog.push_back(received);
        }
        &self.backlog
    }

    /// `initialize` + `initialized` with the given client capabilities and options.
    pub fn initialize(&mut self, capabilities: Value, options: Value) -> Value {
        let result = self.request(
            "initialize",
            json!({
                "processId": null,
                "rootUri": null,
                "capabilities": capabilities,
                "initializationOptions": options,
            }),
        );
        self.notify("initialized", json!({}));
        result
    }

    /// Initializes with the tiny test model and waits until it is loaded.
    pub fn ready(&mut self, capabilities: Value, mut options: Value) -> Value {
        if options.get("model").is_none() {
            options["model"] = json!(tiny_model());
        }
        let result = self.initialize(capabilities, options);
        self.wait_model_loaded();
        result
    }

    pub fn wait_model_loaded(&mut self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let stats = self.request("tokenlens/stats", json!(null));
            if stats["model"].get("ready").is_some() {
                return;
            }
            assert!(
                stats["model"].get("failed").is_none(),
                "model failed: {stats}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        panic!("the model did not load");
    }

    pub fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        );
    }

    pub fn change_full(&mut self, uri: &str, version: i32, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    pub fn change_range(&mut self, uri: &str, version: i32, range: Value, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version},
                   "contentChanges": [{"range": range, "text": text}]}),
        );
    }

    /// The diagnostics published for `uri` at `version`.
    pub fn diagnostics(&mut self, uri: &str, version: i32) -> Vec<Value> {
        let params = self.notification("textDocument/publishDiagnostics", |p| {
            p["uri"] == uri && p["version"] == version
        });
        params["diagnostics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn stats(&mut self) -> Value {
        self.request("tokenlens/stats", json!(null))
    }

    /// `shutdown` then `exit`; the process's exit status.
    pub fn shutdown(mut self) -> ExitStatus {
        let result = self.request("shutdown", json!(null));
        assert_eq!(result, Value::Null);
        self.notify("exit", json!(null));
        self.wait_exit()
    }

    pub fn wait_exit(mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Byte offset of an LSP position in `text`, counted independently of the server's code.
pub fn offset_of(text: &str, position: &Value, encoding: &str) -> usize {
    let line = position["line"].as_u64().unwrap() as usize;
    let character = position["character"].as_u64().unwrap() as usize;
    let mut start = 0;
    for _ in 0..line {
        let rest = &text[start..];
        let newline = rest
            .find(['\n', '\r'])
            .expect("position past the last line");
        let width = if rest[newline..].starts_with("\r\n") {
            2
        } else {
            1
        };
        start += newline + width;
    }
    if encoding == "utf-8" {
        return start + character;
    }
    let mut units = 0;
    for (i, c) in text[start..].char_indices() {
        if units >= character {
            return start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

/// The text a range covers.
pub fn slice<'a>(text: &'a str, range: &Value, encoding: &str) -> &'a str {
    &text[offset_of(text, &range["start"], encoding)..offset_of(text, &range["end"], encoding)]
}

pub fn position(line: u32, character: u32) -> Value {
    json!({"line": line, "character": character})
}

pub fn range(start: (u32, u32), end: (u32, u32)) -> Value {
    json!({"start": position(start.0, start.1), "end": position(end.0, end.1)})
}
