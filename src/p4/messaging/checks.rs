//! The pure rules of messaging: the payload and headers of an outgoing message, a received
//! message or reply checked for delivery (§5.2, §5.5), and the collection state of one
//! `request_many`. No I/O.

use bytes::Bytes;
use serde::Serialize;

use super::{ERROR_HEADER, Reply, RequestOptions};
use crate::p4::value::to_json_encoded;
use crate::p4::{Error, Json};
use crate::wire::p4::ErrorCode;
use crate::wire::p4::canonical::{self, MAX_VALUE_BYTES};
use crate::wire::p4::headers::Headers;
use crate::wire::p4::names::{Subjects, Topic};

/// The payload and headers of an outgoing message: the normalised value's canonical bytes
/// (≤ 64 KiB) and the normalised headers. Value errors are reported like Python's `send`:
/// `MESSAGE_TOO_LARGE` for the size, `INVALID_MESSAGE` for the rest.
pub(super) fn outbound<T, I, K, V>(value: &T, headers: I) -> Result<(Bytes, Headers), Error>
where
    T: Serialize + ?Sized,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let payload = payload_of(value)?;
    let headers = Headers::outbound(headers)?;
    Ok((payload, headers))
}

pub(super) fn payload_of<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    let (_, bytes) = to_json_encoded(value).map_err(|e| {
        let code =
            if e.kind() == ErrorCode::ValueTooLarge { ErrorCode::MessageTooLarge } else { ErrorCode::InvalidMessage };
        Error::new(code).with_detail(format!("the payload is not a valid protocol-4 value: {e}"))
    })?;
    Ok(Bytes::from(bytes))
}

/// `Headers` as a NATS header map (None for an empty set: a plain `PUB`).
pub(super) fn header_map(headers: &Headers) -> Option<async_nats::HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers.entries() {
        map.append(name.as_str(), value.as_str());
    }
    Some(map)
}

/// The headers of a received message, validated: `Status` first for a status line, then
/// every entry (§5.2).
fn inbound_headers(message: &async_nats::Message) -> Result<Headers, Error> {
    let status = message.status.map(|s| ("Status".to_owned(), s.as_u16().to_string()));
    let entries = message.headers.iter().flat_map(|h| {
        h.iter().flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.as_str().to_owned())))
    });
    Ok(Headers::inbound(status.into_iter().chain(entries))?)
}

/// The value of a received payload: ≤ 64 KiB, then the bounded decoder and `value_of`.
/// Errors as Python's receiver names them (`MESSAGE_TOO_LARGE`, `INVALID_MESSAGE`).
fn inbound_value(payload: &[u8]) -> Result<Json, Error> {
    if payload.len() > MAX_VALUE_BYTES {
        return Err(Error::new(ErrorCode::MessageTooLarge)
            .with_detail(format!("payload of {} bytes exceeds 64 KiB", payload.len())));
    }
    let decoded = canonical::decode(payload)?;
    canonical::value_of_decoded(&decoded, payload.len()).map_err(|e| {
        let code =
            if e.code() == ErrorCode::ValueTooLarge { ErrorCode::MessageTooLarge } else { ErrorCode::InvalidMessage };
        Error::new(code).with_detail(e.to_string())
    })
}

/// A received message checked for delivery: its topic, headers and value, and its queue
/// size (payload, header bytes, subject and reply, as Python counts it).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Checked {
    pub(super) topic: Topic,
    pub(super) headers: Headers,
    pub(super) value: Json,
    size: usize,
}

/// The last subject a reader decoded and its topic: a subscription without wildcards sees
/// one subject only, so its topic is decoded once.
pub(super) type TopicCache = Option<(async_nats::Subject, Topic)>;

pub(super) fn check(
    subjects: &Subjects,
    cache: &mut TopicCache,
    message: &async_nats::Message,
) -> Result<Checked, Error> {
    let headers = inbound_headers(message)?;
    if message.payload.len() > MAX_VALUE_BYTES {
        return Err(Error::new(ErrorCode::MessageTooLarge)
            .with_detail(format!("payload of {} bytes exceeds 64 KiB", message.payload.len())));
    }
    let topic = match cache {
        Some((subject, topic)) if *subject == message.subject => topic.clone(),
        _ => {
            let topic = subjects.topic_of(&message.subject)?;
            *cache = Some((message.subject.clone(), topic.clone()));
            topic
        }
    };
    let value = inbound_value(&message.payload)?;
    let size = message.payload.len()
        + headers.byte_size()
        + message.subject.len()
        + message.reply.as_ref().map_or(0, |r| r.len());
    Ok(Checked { topic, headers, value, size })
}

/// A reply checked like Python's requester does (§5.5): status 503 with an empty body is
/// `NO_RESPONDERS`; then headers, size and value. A reply carrying [`ERROR_HEADER`] is the
/// handler's `HANDLER_ERROR`.
pub(super) fn check_reply(message: &async_nats::Message) -> Result<(Reply, usize), Error> {
    if message.payload.is_empty() && message.status.is_some_and(|s| s.as_u16() == 503) {
        return Err(Error::new(ErrorCode::NoResponders).with_detail("nobody handles this topic"));
    }
    let headers = inbound_headers(message)?;
    let value = inbound_value(&message.payload)
        .map_err(|e| Error::new(e.kind()).with_detail(format!("the reply is not a valid protocol-4 message: {e}")))?;
    if let Some(text) = headers.get(ERROR_HEADER) {
        return Err(Error::new(ErrorCode::HandlerError).with_detail(format!("the handler failed: {text}")));
    }
    let size = message.payload.len() + headers.byte_size() + message.subject.len();
    Ok((Reply { value, headers }, size))
}

/// The collection state of one `request_many` (§5.5): replies up to `max_replies` and
/// `max_bytes`, the first invalid reply failing the whole call.
#[derive(Debug)]
pub(super) struct Collector {
    max_replies: usize,
    max_bytes: usize,
    bytes: usize,
    pub(super) replies: Vec<Reply>,
}

/// What a [`Collector`] does after a reply.
#[derive(Debug, PartialEq)]
pub(super) enum Collected {
    /// Keep waiting.
    More,
    /// `max_replies` reached.
    Full,
}

impl Collector {
    pub(super) fn new(options: &RequestOptions) -> Self {
        Collector { max_replies: options.max_replies, max_bytes: options.max_bytes, bytes: 0, replies: Vec::new() }
    }

    pub(super) fn offer(&mut self, message: &async_nats::Message) -> Result<Collected, Error> {
        let (reply, size) = check_reply(message)?;
        if self.bytes + size > self.max_bytes {
            return Err(Error::new(ErrorCode::BufferOverflow)
                .with_detail(format!("the replies exceed the {}-byte collection budget", self.max_bytes)));
        }
        self.bytes += size;
        self.replies.push(reply);
        Ok(if self.replies.len() >= self.max_replies { Collected::Full } else { Collected::More })
    }
}

/// The text of an error reply header: visible ASCII, at most 240 characters.
pub(super) fn error_text(error: &str) -> String {
    let text: String = error.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).take(240).collect();
    if text.trim().is_empty() { "handler failed".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::p4::names::Name;

    fn ns() -> Subjects {
        Subjects::new(&Name::new("workshop").unwrap())
    }

    fn message(subject: &str, payload: &[u8]) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: Bytes::copy_from_slice(payload),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn outbound_payloads_follow_the_reference() {
        let (payload, headers) = outbound(&serde_json::json!({"v": 21.5}), [("X-Trace", " op-42 ")]).unwrap();
        assert_eq!(&payload[..], br#"{"v":21.5}"#);
        assert_eq!(headers.entries(), [("x-trace".to_owned(), "op-42".to_owned())]);
        assert_eq!(&payload_of(&()).unwrap()[..], b"null");
        assert_eq!(&payload_of(&None::<u8>).unwrap()[..], b"null");
        assert_eq!(payload_of(&f64::NAN).unwrap_err().kind(), ErrorCode::InvalidMessage);
        assert_eq!(payload_of(&[1.0, f64::INFINITY]).unwrap_err().kind(), ErrorCode::InvalidMessage);
        assert_eq!(payload_of(&"x".repeat(70_000)).unwrap_err().kind(), ErrorCode::MessageTooLarge);
        assert_eq!(outbound(&1, [("Bad Name", "v")]).unwrap_err().kind(), ErrorCode::InvalidHeaders);
        assert!(header_map(&Headers::default()).is_none());
    }

    #[test]
    fn received_messages_are_checked() {
        let subject = "_msg.v1.776f726b73686f70.73656e736f72.74656d70";
        let ok = check(&ns(), &mut None, &message(subject, br#" {"b":1,"a":2.0} "#)).unwrap();
        assert_eq!(ok.topic.as_str(), "sensor.temp");
        assert_eq!(canonical::encode(&ok.value).unwrap(), br#"{"a":2,"b":1}"#);
        assert_eq!(ok.size, 17 + subject.len());
        for bad in [&b""[..], b"{bad", b"NaN", b"[1e400]", b"9007199254740992"] {
            assert_eq!(
                check(&ns(), &mut None, &message(subject, bad)).unwrap_err().kind(),
                ErrorCode::InvalidMessage,
                "{bad:?}"
            );
        }
        let big = format!("\"{}\"", "x".repeat(65_535));
        assert_eq!(
            check(&ns(), &mut None, &message(subject, big.as_bytes())).unwrap_err().kind(),
            ErrorCode::MessageTooLarge
        );
        assert_eq!(
            check(&ns(), &mut None, &message("_msg.v1.776f726b73686f70.zz", b"1")).unwrap_err().kind(),
            ErrorCode::InvalidMessage
        );
        // A valid-hex foreign subject is delivered with its decoded topic (§2.2).
        assert_eq!(check(&ns(), &mut None, &message("_msg.v1.776f726b73686f70.41", b"1")).unwrap().topic.as_str(), "A");
        let mut with_headers = message(subject, b"1");
        let mut map = async_nats::HeaderMap::new();
        map.append("X-Tag", "a");
        map.append("X-Tag", "b");
        with_headers.headers = Some(map);
        let checked = check(&ns(), &mut None, &with_headers).unwrap();
        assert_eq!(checked.headers.get_all("x-tag").collect::<Vec<_>>(), ["a", "b"]);
        let mut bad_value = message(subject, b"1");
        let mut map = async_nats::HeaderMap::new();
        map.append("x", "\u{e9}");
        bad_value.headers = Some(map);
        assert_eq!(check(&ns(), &mut None, &bad_value).unwrap_err().kind(), ErrorCode::InvalidHeaders);
    }

    #[test]
    fn replies_and_collection() {
        let mut no_responders = message("_INBOX.x", b"");
        no_responders.status = Some(async_nats::StatusCode::NO_RESPONDERS);
        assert_eq!(check_reply(&no_responders).unwrap_err().kind(), ErrorCode::NoResponders);
        assert_eq!(check_reply(&message("_INBOX.x", b"")).unwrap_err().kind(), ErrorCode::InvalidMessage);
        let (reply, _) = check_reply(&message("_INBOX.x", b"[1]")).unwrap();
        assert_eq!(reply.value::<Vec<u8>>().unwrap(), [1]);
        let mut failed = message("_INBOX.x", b"null");
        let mut map = async_nats::HeaderMap::new();
        map.append(ERROR_HEADER, "boom");
        failed.headers = Some(map);
        assert_eq!(check_reply(&failed).unwrap_err().kind(), ErrorCode::HandlerError);

        let mut collector = Collector::new(&RequestOptions::new().max_replies(2));
        assert_eq!(collector.offer(&message("_INBOX.x", b"1")).unwrap(), Collected::More);
        assert_eq!(collector.offer(&message("_INBOX.x", b"2")).unwrap(), Collected::Full);
        let mut small = Collector::new(&RequestOptions::new().max_bytes(20));
        assert_eq!(small.offer(&message("_INBOX.x", b"1")).unwrap(), Collected::More);
        assert_eq!(small.offer(&message("_INBOX.x", b"22222222222")).unwrap_err().kind(), ErrorCode::BufferOverflow);
        assert_eq!(RequestOptions::new().max_replies(17).check_many().unwrap_err().kind(), ErrorCode::InvalidOptions);
        assert_eq!(RequestOptions::new().max_bytes(0).check_many().unwrap_err().kind(), ErrorCode::InvalidOptions);
        assert_eq!(error_text("bad\nthing é"), "bad?thing ?");
    }
}
