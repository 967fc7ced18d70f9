//! The stdio framing between the editor and `tower_lsp_server`, with the protocol errors it does
//! not survive answered here. Its reader stops for good at the first message it cannot decode
//! (invalid JSON, a wrong `jsonrpc` version, a fractional id), which would end the session for
//! one bad byte from a plugin; and it never answers a `$/` request, which the protocol says must
//! get MethodNotFound. So every message is checked before it reaches the server, and the answer
//! to a bad one is written between the server's own whole messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tower_lsp_server::jsonrpc::{Request, Response};

/// One framed message, or why its header could not be read.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A header block without a usable `Content-Length`; its body cannot be found.
    BadHeader(String),
}

/// Reads the next frame; `None` at the end of the input.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<Frame>> {
    let mut length: Option<Result<usize, String>> = None;
    let mut saw_header = false;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&line);
        let mut line = line.trim_end_matches(['\r', '\n']);
        // After a frame whose length was unknown, its body runs into the next header line:
        // resynchronise at the header.
        if let Some(at) = line.to_ascii_lowercase().find("content-length:")
            && at > 0
        {
            line = &line[at..];
            length = None;
        }
        if line.is_empty() {
            if saw_header {
                break;
            }
            // Blank lines between messages carry nothing.
            continue;
        }
        saw_header = true;
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = Some(match value.trim().parse::<usize>() {
                Ok(n) if n <= MAX_MESSAGE_BYTES => Ok(n),
                Ok(n) => Err(format!(
                    "Content-Length {n} is larger than the {MAX_MESSAGE_BYTES} bytes a message may have"
                )),
                Err(_) => Err(format!("Content-Length {:?} is not a number", value.trim())),
            });
        }
    }
    match length {
        Some(Ok(length)) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await?;
            Ok(Some(Frame::Message(body)))
        }
        Some(Err(message)) => Ok(Some(Frame::BadHeader(message))),
        None => Ok(Some(Frame::BadHeader(
            "a message header without Content-Length".into(),
        ))),
    }
}

/// The largest message accepted; a larger `Content-Length` is a broken header, not a request
/// to allocate that much.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Custom methods of this server that take no parameters.
const NO_PARAMS_METHODS: &[&str] = &["tokenlens/stats"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;

fn error_response(id: Value, code: i64, message: &str) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    framed(body.to_string().as_bytes())
}

/// What to do with one incoming message.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Hand it to the server unchanged.
    Forward,
    /// Hand this body to the server instead.
    Rewrite(Vec<u8>),
    /// Answer it with this framed error response instead.
    Answer(Vec<u8>),
}

/// Checks one message body the way the server would decode it.
pub fn check(body: &[u8]) -> Verdict {
    let value: Value = match std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
    {
        Ok(value) => value,
        Err(e) => {
            return Verdict::Answer(error_response(
                Value::Null,
                PARSE_ERROR,
                &format!("invalid JSON: {e}"),
            ));
        }
    };
    // The id to answer with: only one the client could match (an integer or a string).
    let id = match value.get("id") {
        Some(id @ Value::String(_)) => id.clone(),
        Some(Value::Number(n)) if n.is_i64() => Value::Number(n.clone()),
        _ => Value::Null,
    };
    let is_request = value.get("method").is_some();
    let decodes = if is_request {
        serde_json::from_value::<Request>(value.clone()).is_ok()
    } else {
        serde_json::from_value::<Response>(value.clone()).is_ok()
    };
    if !decodes {
        return Verdict::Answer(error_response(
            id,
            INVALID_REQUEST,
            "not a JSON-RPC 2.0 message: expected an object with \"jsonrpc\": \"2.0\", a \
             string \"method\" and an integer or string \"id\" (or a response)",
        ));
    }
    let method = value.get("method").and_then(Value::as_str).unwrap_or("");
    // tower-lsp-server refuses any `params` for a method that takes none, even an empty object,
    // which clients send by habit.
    if NO_PARAMS_METHODS.contains(&method)
        && value
            .get("params")
            .is_some_and(|p| p.as_object().is_some_and(|o| o.is_empty()) || p == &json!([]))
    {
        let mut value = value.clone();
        if let Some(object) = value.as_object_mut() {
            object.remove("params");
        }
        return Verdict::Rewrite(value.to_string().into_bytes());
    }
    if method.starts_with("$/") && value.get("id").is_some() {
        return Verdict::Answer(error_response(
            id,
            METHOD_NOT_FOUND,
            &format!("unknown request {method:?}"),
        ));
    }
    Verdict::Forward
}

/// Copies checked messages from `input` to the server, answering bad ones on `output`. Returns
/// at the end of the input (the server then sees its input end) or when the server is gone.
///
/// `shutdown_seen` is set when a `shutdown` request passes: the server may handle an `exit` that
/// follows at once before it has run its `shutdown` handler, and the exit code must still be 0.
pub async fn filter_input<R, S, W>(
    input: R,
    mut to_server: S,
    output: Arc<Mutex<W>>,
    shutdown_seen: Arc<AtomicBool>,
) where
    R: AsyncRead + Unpin,
    S: AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(input);
    loop {
        let frame = match read_frame(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        let answer = match frame {
            Frame::Message(body) => match check(&body) {
                verdict @ (Verdict::Forward | Verdict::Rewrite(_)) => {
                    let body = match verdict {
                        Verdict::Rewrite(rewritten) => rewritten,
                        _ => body,
                    };
                    if is_shutdown_request(&body) {
                        shutdown_seen.store(true, Ordering::SeqCst);
                    }
                    if to_server.write_all(&framed(&body)).await.is_err() {
                        break;
                    }
                    continue;
                }
                Verdict::Answer(answer) => answer,
            },
            Frame::BadHeader(message) => error_response(Value::Null, PARSE_ERROR, &message),
        };
        let mut output = output.lock().await;
        if output.write_all(&answer).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
    let _ = to_server.shutdown().await;
}

fn is_shutdown_request(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v.get("method") == Some(&json!("shutdown")) && v.get("id").is_some())
}

/// Copies the server's messages to `output` whole, so that answers written by [`filter_input`]
/// never land inside one. Returns when the server closes its output.
pub async fn forward_output<R, W>(from_server: R, output: Arc<Mutex<W>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(from_server);
    while let Ok(Some(Frame::Message(body))) = read_frame(&mut reader).await {
        let mut output = output.lock().await;
        if output.write_all(&framed(&body)).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Value {
        match check(body.as_bytes()) {
            Verdict::Answer(framed) => {
                let text = String::from_utf8(framed).unwrap();
                let (_, json) = text.split_once("\r\n\r\n").unwrap();
                serde_json::from_str(json).unwrap()
            }
            Verdict::Forward | Verdict::Rewrite(_) => panic!("{body} was forwarded"),
        }
    }

    #[test]
    fn good_requests_notifications_and_responses_are_forwarded() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tokenlens/stats"}"#,
            r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#,
            r#"{"jsonrpc":"2.0","id":0,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":0,"error":{"code":-1,"message":"no"}}"#,
        ] {
            assert_eq!(check(body.as_bytes()), Verdict::Forward, "{body}");
        }
    }

    #[test]
    fn bad_messages_get_the_protocol_error_with_their_id() {
        let parse = answer("{not json}");
        assert_eq!(
            (parse["id"].clone(), parse["error"]["code"].clone()),
            (Value::Null, json!(-32700))
        );
        for (body, id) in [
            ("[1]", Value::Null),
            (r#""x""#, Value::Null),
            ("{}", Value::Null),
            (r#"{"jsonrpc":"1.0","id":3,"method":"x"}"#, json!(3)),
            (r#"{"id":4,"method":"x"}"#, json!(4)),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#, Value::Null),
        ] {
            let reply = answer(body);
            assert_eq!(reply["error"]["code"], -32600, "{body}");
            assert_eq!(reply["id"], id, "{body}");
        }
        let stats = r#"{"jsonrpc":"2.0","id":5,"method":"tokenlens/stats","params":{}}"#;
        assert_eq!(
            check(stats.as_bytes()),
            Verdict::Rewrite(br#"{"jsonrpc":"2.0","id":5,"method":"tokenlens/stats"}"#.to_vec())
        );
        let dollar = answer(r#"{"jsonrpc":"2.0","id":"q","method":"$/unknownRequest"}"#);
        assert_eq!(
            (dollar["id"].clone(), dollar["error"]["code"].clone()),
            (json!("q"), json!(-32601))
        );
    }

    #[tokio::test]
    async fn frames_are_read_past_blank_lines_and_bad_headers() {
        let input: &[u8] = b"Content-Length: 2\r\n\r\n{}\r\nX-Other: 1\r\n\r\n\
            content-length: 3\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n[1]\
            Content-Lenght: 2\r\n\r\n{}Content-Length: 2\r\n\r\n[]\
            Content-Length: 18446744073709551615\r\n\r\n{}Content-Length: 1\r\n\r\n1";
        let mut reader = BufReader::new(input);
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut reader).await.unwrap() {
            frames.push(frame);
        }
        let message = |body: &[u8]| Frame::Message(body.to_vec());
        assert_eq!(frames[0], message(b"{}"));
        assert!(matches!(frames[1], Frame::BadHeader(_)));
        assert_eq!(frames[2], message(b"[1]"));
        // A misspelt header: its body runs into the next header, which is found again.
        assert!(matches!(frames[3], Frame::BadHeader(_)));
        assert_eq!(frames[4], message(b"[]"));
        // A length no message can have is a bad header, not an allocation.
        assert!(matches!(&frames[5], Frame::BadHeader(m) if m.contains("larger")));
        assert_eq!(frames[6], message(b"1"));
        assert_eq!(frames.len(), 7);
    }
}
