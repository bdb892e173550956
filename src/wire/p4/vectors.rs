//! The protocol-4 rules checked against vectors computed by kinopio-hub 3.0.0's own functions
//! (`scripts/interop/p4_vectors.py` writes `tests/vectors/p4/*.json`).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical::{self, DecodeError};
use super::headers::Headers;
use super::names::{Name, QueueGroup, Subjects, Topic, TopicPattern};
use super::record::{Counter, Record, Version};

fn load(stem: &str) -> Vec<Value> {
    let path = format!("{}/tests/vectors/p4/{stem}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let generator = file["generator"].as_str().unwrap_or_default();
    assert!(generator.contains("kinopio-hub 3.0.0"), "{path} was not generated from kinopio-hub 3.0.0: {generator}");
    match &file["vectors"] {
        Value::Array(rows) => rows.clone(),
        other => vec![other.clone()],
    }
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_else(|| panic!("vector without {key}: {row}"))
}

fn workshop() -> Subjects {
    Subjects::new(&Name::new("workshop").unwrap())
}

#[test]
fn names_and_subjects() {
    let file = load("names").remove(0);
    let ns = workshop();
    let mut checked = 0;
    for row in file["name"].as_array().unwrap() {
        let result = Name::new(text(row, "input"));
        match row.get("token") {
            Some(token) => assert_eq!(result.unwrap().token(), token.as_str().unwrap(), "{row}"),
            None => assert_eq!(result.unwrap_err().code().as_str(), text(row, "error"), "{row}"),
        }
        checked += 1;
    }
    for row in file["record"].as_array().unwrap() {
        assert_eq!(text(row, "namespace"), "workshop");
        let result = Name::new(text(row, "name")).map(|name| ns.record(&name));
        match row.get("subject") {
            Some(subject) => assert_eq!(result.unwrap(), subject.as_str().unwrap(), "{row}"),
            None => assert_eq!(result.unwrap_err().code().as_str(), text(row, "error"), "{row}"),
        }
        checked += 1;
    }
    for row in file["queue"].as_array().unwrap() {
        let result = QueueGroup::new(text(row, "queue")).map(|queue| ns.queue(&queue));
        match row.get("subject") {
            Some(subject) => assert_eq!(result.unwrap(), subject.as_str().unwrap(), "{row}"),
            None => assert_eq!(result.unwrap_err().code().as_str(), text(row, "error"), "{row}"),
        }
        checked += 1;
    }
    for row in file["control"].as_array().unwrap() {
        let subjects = Subjects::new(&Name::new(text(row, "namespace")).unwrap());
        assert_eq!(subjects.control(), text(row, "prefix"));
        checked += 1;
    }
    for row in file["message"].as_array().unwrap() {
        let topic = text(row, "topic");
        let result = if row["pattern"].as_bool().unwrap() {
            TopicPattern::new(topic).map(|p| ns.message_pattern(&p))
        } else {
            Topic::new(topic).map(|t| ns.message(&t))
        };
        match row.get("subject") {
            Some(subject) => {
                let subject = subject.as_str().unwrap();
                assert_eq!(result.unwrap(), subject, "{row}");
                // The receiving side reads concrete topics back.
                if !subject.contains(['*', '>']) {
                    assert_eq!(ns.topic_of(subject).unwrap().as_str(), topic, "{row}");
                }
            }
            None => assert_eq!(result.unwrap_err().code().as_str(), text(row, "error"), "{row}"),
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} name vectors");
}

fn sha256_hex(bytes: &[u8]) -> String {
    super::names::hex(&Sha256::digest(bytes))
}

#[test]
fn canonical_json() {
    let rows = load("canonical");
    assert!(rows.len() > 500, "only {} canonical vectors", rows.len());
    for row in &rows {
        let input = match row.get("input_parts") {
            Some(parts) => {
                let times = usize::try_from(parts[2].as_u64().unwrap()).unwrap();
                format!(
                    "{}{}{}",
                    parts[0].as_str().unwrap(),
                    parts[1].as_str().unwrap().repeat(times),
                    parts[3].as_str().unwrap()
                )
            }
            None => text(row, "input").to_owned(),
        };
        let hashed = row.get("input_parts").is_some();
        let decoded = canonical::decode(input.as_bytes());
        if let Some(code) = row.get("decode_error") {
            assert_eq!(decoded.unwrap_err().code().as_str(), code.as_str().unwrap(), "{row}");
            continue;
        }
        let decoded = match decoded {
            Ok(decoded) => decoded,
            // Deliberate difference: lone surrogates are refused while decoding; Python
            // accepts them there and fails to encode them.
            Err(DecodeError::Syntax { .. }) if row.get("stringify").is_none() && row.get("value_of").is_none() => {
                continue;
            }
            Err(e) => panic!("{row}: {e}"),
        };
        let encoded = canonical::encode(&decoded);
        match (row.get("stringify"), row.get("stringify_sha256")) {
            (Some(expected), _) => {
                assert_eq!(String::from_utf8(encoded.unwrap()).unwrap(), expected.as_str().unwrap(), "{row}")
            }
            (None, Some(digest)) => assert_eq!(sha256_hex(&encoded.unwrap()), digest.as_str().unwrap(), "{row}"),
            (None, None) => assert!(encoded.is_err(), "{row}"),
        }
        let normalised = canonical::value_of(&decoded);
        if let Some(code) = row.get("value_of_error") {
            assert_eq!(normalised.unwrap_err().code().as_str(), code.as_str().unwrap(), "{row}");
            continue;
        }
        let bytes = canonical::encode(&normalised.unwrap()).unwrap();
        if hashed {
            assert_eq!(sha256_hex(&bytes), text(row, "value_of_sha256"), "{row}");
        } else {
            assert_eq!(String::from_utf8(bytes).unwrap(), text(row, "value_of"), "{row}");
        }
    }
}

#[test]
fn records_and_version_order() {
    let file = load("records").remove(0);
    for row in file["records"].as_array().unwrap() {
        let result = Record::decode(text(row, "input").as_bytes());
        match row.get("encoded") {
            Some(encoded) => {
                assert_eq!(String::from_utf8(result.unwrap().encode()).unwrap(), encoded.as_str().unwrap(), "{row}")
            }
            None => assert_eq!(result.unwrap_err().code().as_str(), text(row, "error"), "{row}"),
        }
    }
    let version = |pair: &Value| Version {
        counter: Counter::new(pair[0].as_str().unwrap()).unwrap(),
        writer: super::names::Id::new(pair[1].as_str().unwrap()).unwrap(),
    };
    let comparisons = file["compare"].as_array().unwrap();
    assert!(comparisons.len() > 100);
    for row in comparisons {
        let ordering = version(&row["a"]).cmp(&version(&row["b"]));
        assert_eq!(ordering as i64, row["compare"].as_i64().unwrap(), "{row}");
    }
}

#[test]
fn headers() {
    let rows = load("headers");
    assert!(rows.len() > 20);
    let pairs = |value: &Value| -> Vec<(String, String)> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_str().unwrap().to_owned(), pair[1].as_str().unwrap().to_owned()))
            .collect()
    };
    for row in &rows {
        let input = pairs(&row["input"]);
        match row.get("outbound") {
            Some(expected) => assert_eq!(Headers::outbound(input.clone()).unwrap().entries(), pairs(expected), "{row}"),
            None => assert_eq!(
                Headers::outbound(input.clone()).unwrap_err().code().as_str(),
                text(row, "outbound_error"),
                "{row}"
            ),
        }
        match row.get("inbound") {
            Some(expected) => {
                let headers = Headers::inbound(input).unwrap();
                assert_eq!(headers.entries(), pairs(expected), "{row}");
                assert_eq!(headers.byte_size() as u64, row["byte_size"].as_u64().unwrap(), "{row}");
            }
            None => {
                assert_eq!(Headers::inbound(input).unwrap_err().code().as_str(), text(row, "inbound_error"), "{row}")
            }
        }
    }
}

#[test]
fn health_reports() {
    use super::report::{self, encode_report, error_message};
    let file = load("reports").remove(0);
    let rows = file["reports"].as_array().unwrap();
    for row in rows {
        let result = report::receive(text(row, "input").as_bytes(), text(row, "instance"), text(row, "namespace"));
        match row.get("status") {
            Some(status) => {
                let received = result.unwrap_or_else(|e| panic!("{e}: {row}"));
                let stored = String::from_utf8(canonical::encode(&received.status).unwrap()).unwrap();
                assert_eq!(stored, status.as_str().unwrap(), "{row}");
                assert_eq!(received.interval_ms, row["interval"].as_u64().unwrap(), "{row}");
            }
            None => assert_eq!(result.unwrap_err().code().as_str(), text(row, "error"), "{row}"),
        }
    }
    // The report kinopio builds is byte for byte the one Python accepted above.
    let ours = String::from_utf8(encode_report(&report::tests::sample(), 5000).unwrap()).unwrap();
    assert_eq!(ours, text(&rows[0], "input"));
    assert!(rows[0].get("status").is_some());
    for row in file["error_messages"].as_array().unwrap() {
        assert_eq!(error_message(text(row, "input"), &[]), text(row, "message"), "{row}");
    }
}
