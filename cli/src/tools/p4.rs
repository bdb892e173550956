//! `kinopio pub | sub | req | serve --namespace NS`: the same commands on protocol 4
//! (kinopio-hub 3.0.0's messaging, §5 of its reference): the subject argument is the topic,
//! values are JSON (normalised and sent canonically), headers are lower-cased and trimmed on
//! the way out, and nothing is sent unless connected.
//!
//! Exit codes follow the 0.1.1 commands: 2 invalid input (topic, value, header, queue),
//! 3 not connected, 4 timed out (for `req --many`: no reply at all), 5 no responders,
//! 6 the handler reported an error (a kinopio handler with error replies), 1 anything else.

use std::time::Duration;

use kinopio::p4::{self, ErrorCode, HandleOptions, Json, Namespace, RequestOptions, SubscribeOptions};
use kinopio::wire::p4::canonical;
use kinopio::wire::p4::names::{Name, QueueGroup, Topic, TopicPattern};
use serde_json::value::RawValue;

use super::{PayloadArgs, PubArgs, ReqArgs, ServeArgs, Session, SubArgs};
use crate::output::{self, Failure, Fields};

/// A library error as a CLI failure with the exit code of its kind.
fn failure(e: &p4::Error, json: bool) -> Failure {
    let (code, kind) = match e.kind() {
        ErrorCode::InvalidTopic
        | ErrorCode::InvalidName
        | ErrorCode::InvalidValue
        | ErrorCode::ValueTooLarge
        | ErrorCode::InvalidHeaders
        | ErrorCode::InvalidOptions => (2, "invalid-input"),
        ErrorCode::MessageTooLarge => (2, "too-large"),
        ErrorCode::Disconnected | ErrorCode::Closed => (3, "not-connected"),
        ErrorCode::Timeout => (4, "timed-out"),
        ErrorCode::NoResponders => (5, "no-responders"),
        ErrorCode::HandlerError => (6, "remote-error"),
        ErrorCode::PermissionDenied => (1, "permission-denied"),
        _ => (1, "failed"),
    };
    Failure::new(code, kind, e.to_string(), json)
}

fn invalid(message: impl Into<String>, json: bool) -> Failure {
    Failure::new(2, "invalid-input", message, json)
}

/// Checks the namespace name before connecting.
fn check_namespace(name: &str, json: bool) -> Result<(), Failure> {
    Name::new(name).map(|_| ()).map_err(|e| invalid(format!("--namespace {name:?}: {e}"), json))
}

/// The JSON value to send: the argument or the file, which must be JSON in protocol 4.
fn value(payload: &PayloadArgs, json: bool) -> Result<serde_json::Value, Failure> {
    let bytes = payload.payload(json)?;
    serde_json::from_slice(bytes.as_bytes()).map_err(|e| {
        invalid(
            format!(
                "with --namespace the value must be JSON ({e}); quote text as '\"text\"', and use null for nothing"
            ),
            json,
        )
    })
}

/// `NAME:VALUE` headers as given (the library lower-cases names and trims values).
fn headers(payload: &PayloadArgs, json: bool) -> Result<Vec<(String, String)>, Failure> {
    payload
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| Failure::new(2, "invalid-header", format!("header {h:?} is not NAME:VALUE"), json))
        })
        .collect()
}

/// Canonical JSON text of a value, as a raw JSON field.
fn raw(value: &Json) -> Box<RawValue> {
    let text = canonical::encode(value).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_else(|| "null".into());
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

fn text(value: &Json) -> String {
    raw(value).get().to_owned()
}

fn header_list(headers: &p4::Headers) -> Vec<(&str, &str)> {
    headers.entries().iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

async fn open(session: &Session, name: &str, json: bool) -> Result<Namespace, Failure> {
    session.hub.namespace(name).map_err(|e| failure(&e, json))
}

/// Runs `work` with the session, closes the session, returns the result (Ctrl-C ends it
/// with 130).
async fn finish<T>(session: Session, result: Result<T, Failure>) -> Result<T, Failure> {
    session.close().await;
    result
}

pub(super) async fn publish(args: PubArgs, namespace: &str) -> Result<(), Failure> {
    let json = args.connect.json;
    check_namespace(namespace, json)?;
    Topic::new(args.subject.as_str()).map_err(|e| invalid(e.to_string(), json))?;
    let value = value(&args.payload, json)?;
    let headers = headers(&args.payload, json)?;
    let session = args.connect.connect().await?;
    let ns = match open(&session, namespace, json).await {
        Ok(ns) => ns,
        Err(f) => return finish(session, Err(f)).await,
    };
    let sent = async {
        let since = session.checkpoint()?;
        for _ in 0..args.count {
            ns.publish_with_headers(&args.subject, &value, headers.iter().map(|(n, v)| (n, v)))
                .await
                .map_err(|e| failure(&e, json))?;
        }
        session.confirm(&since, if args.count == 1 { "the message" } else { "the messages" }).await
    };
    let result = crate::output::interruptible(sent, "while publishing", json).await;
    if result.is_ok() {
        if json {
            let mut line = Fields::new();
            line.put("published", &args.subject);
            line.put("namespace", namespace);
            line.put("count", args.count);
            line.print();
        } else {
            eprintln!("published {} message(s) to {} in namespace {namespace}", args.count, args.subject);
        }
    }
    finish(session, result).await
}

pub(super) async fn subscribe(args: SubArgs, namespace: &str) -> Result<(), Failure> {
    let json = args.connect.json;
    check_namespace(namespace, json)?;
    TopicPattern::new(args.subject.as_str()).map_err(|e| invalid(e.to_string(), json))?;
    if let Some(q) = &args.queue {
        QueueGroup::new(q.as_str()).map_err(|e| invalid(format!("--queue: {e}"), json))?;
    }
    if args.raw {
        return Err(invalid("--raw has no meaning with --namespace (values are JSON)", json));
    }
    let session = args.connect.connect().await?;
    let ns = match open(&session, namespace, json).await {
        Ok(ns) => ns,
        Err(f) => return finish(session, Err(f)).await,
    };
    let mut options = SubscribeOptions::new();
    if let Some(q) = &args.queue {
        options = options.queue(q);
    }
    let mut sub = match ns.subscribe_with(&args.subject, options).await {
        Ok(sub) => sub,
        Err(e) => return finish(session, Err(failure(&e, json))).await,
    };
    let rejected_before = ns.rejected();
    if json {
        let mut line = Fields::new();
        line.put("event", "subscribed");
        line.put("topic", &args.subject);
        line.put("namespace", namespace);
        line.print();
    } else {
        eprintln!("listening on {} in namespace {namespace}", args.subject);
    }
    let listened = crate::listen::listen(&mut sub, args.count, args.timeout_ms, |m| {
        if json {
            let mut line = Fields::new();
            line.put("topic", m.topic());
            line.put_raw("value", raw(m.json()));
            line.put("headers", header_list(m.headers()));
            if let Some(reply) = m.reply_subject() {
                line.put("reply", reply);
            }
            line.print();
        } else {
            output::text(&format!("[{}] {}", m.topic(), text(m.json())));
        }
    })
    .await;
    let received = listened.received;
    let dropped = sub.dropped();
    let rejected = ns.rejected().saturating_sub(rejected_before);
    drop(sub);
    // Never silent about loss: the totals come last.
    if json {
        let mut line = Fields::new();
        line.put("event", "summary");
        line.put("received", received);
        line.put("dropped", dropped);
        line.put("rejected", rejected);
        line.print();
    } else {
        eprintln!("received {received} message(s); dropped {dropped} (queue full); rejected {rejected} (malformed)");
    }
    let result = listened.check(args.count, args.timeout_ms, "messages", json);
    finish(session, result).await
}

pub(super) async fn request(args: ReqArgs, namespace: &str) -> Result<(), Failure> {
    let json = args.connect.json;
    check_namespace(namespace, json)?;
    Topic::new(args.subject.as_str()).map_err(|e| invalid(e.to_string(), json))?;
    if args.raw {
        return Err(invalid("--raw has no meaning with --namespace (values are JSON)", json));
    }
    let value = value(&args.payload, json)?;
    let mut options = RequestOptions::new().timeout(Duration::from_millis(args.timeout_ms));
    for (n, v) in headers(&args.payload, json)? {
        options = options.header(n, v);
    }
    if let Some(n) = args.max_replies {
        options = options.max_replies(usize::try_from(n).unwrap_or(16));
    }
    let session = args.connect.connect().await?;
    let ns = match open(&session, namespace, json).await {
        Ok(ns) => ns,
        Err(f) => return finish(session, Err(f)).await,
    };
    let print = |reply: &p4::Reply| {
        if json {
            let mut line = Fields::new();
            line.put("topic", &args.subject);
            line.put_raw("value", raw(reply.json()));
            line.put("headers", header_list(reply.headers()));
            line.print();
        } else {
            output::text(&text(reply.json()));
        }
    };
    let work = async {
        if args.many {
            let many = ns.request_many(&args.subject, &value, &options).await.map_err(|e| failure(&e, json))?;
            for reply in &many.replies {
                print(reply);
            }
            if json {
                let mut line = Fields::new();
                line.put("replies", many.replies.len());
                line.put("reason", many.reason.as_str());
                line.print();
            } else {
                eprintln!("{} repl(ies); stopped by {}", many.replies.len(), many.reason.as_str());
            }
            if many.replies.is_empty() {
                return Err(Failure::new(4, "timed-out", format!("no reply in {} ms", args.timeout_ms), json));
            }
        } else {
            let reply = ns.request_with(&args.subject, &value, &options).await.map_err(|e| failure(&e, json))?;
            print(&reply);
        }
        Ok(())
    };
    let result = crate::output::interruptible(work, "while waiting for the reply", json).await;
    finish(session, result).await
}

pub(super) async fn serve(args: ServeArgs, namespace: &str) -> Result<(), Failure> {
    let json = args.connect.json;
    check_namespace(namespace, json)?;
    TopicPattern::new(args.subject.as_str()).map_err(|e| invalid(e.to_string(), json))?;
    if let Some(q) = &args.queue {
        QueueGroup::new(q.as_str()).map_err(|e| invalid(format!("--queue: {e}"), json))?;
    }
    let fixed: Option<serde_json::Value> = match &args.reply {
        Some(r) => Some(serde_json::from_str(r).map_err(|e| invalid(format!("--reply must be JSON ({e})"), json))?),
        None => None,
    };
    let session = args.connect.connect().await?;
    let ns = match open(&session, namespace, json).await {
        Ok(ns) => ns,
        Err(f) => return finish(session, Err(f)).await,
    };
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |m: p4::Message| {
        let reply: serde_json::Value = match &fixed {
            Some(v) => v.clone(),
            None => m.value().unwrap_or(serde_json::Value::Null),
        };
        let done = done_tx.clone();
        async move {
            if json {
                let mut line = Fields::new();
                line.put("topic", m.topic());
                line.put_raw("request", raw(m.json()));
                line.put("headers", header_list(m.headers()));
                line.put("reply", &reply);
                line.print();
            } else {
                output::text(&format!("[{}] {} -> {reply}", m.topic(), text(m.json())));
            }
            let _ = done.send(());
            Ok::<_, String>(reply)
        }
    };
    let mut options = HandleOptions::new();
    if let Some(q) = &args.queue {
        options = options.queue(q);
    }
    let handler = match ns.handle_with(&args.subject, options, handler).await {
        Ok(h) => h,
        Err(e) => return finish(session, Err(failure(&e, json))).await,
    };
    if json {
        let mut line = Fields::new();
        line.put("event", "serving");
        line.put("topic", &args.subject);
        line.put("namespace", namespace);
        line.put("queue", &args.queue);
        line.print();
    } else {
        match &args.queue {
            Some(q) => eprintln!("serving {} in namespace {namespace} (queue group {q})", args.subject),
            None => eprintln!("serving {} in namespace {namespace} (no queue group)", args.subject),
        }
    }
    let mut answered = 0u64;
    let shutdown = crate::signals::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            d = done_rx.recv() => {
                if d.is_none() { break; }
                answered += 1;
                if args.count.is_some_and(|n| answered >= n) { break; }
            }
            () = &mut shutdown => break,
        }
    }
    // Let the last reply go out before closing.
    handler.stop(Duration::from_secs(5)).await;
    finish(session, Ok(())).await
}
