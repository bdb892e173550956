//! Interop with the real Python kinopio-hub 0.1.1 as a peer (`scripts/interop/peer.py`, run
//! with the virtualenv that `scripts/install-deps.sh` creates), in both directions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use futures::StreamExt;
use kinopio::{Hub, HubOptions, Message, RequestErrorKind, SelectionMode, Value};
use kinopio_test_support::NatsServer;

use kinopio_test_support::{ScriptPeer, WAIT, python};

fn spawn_peer(server: &NatsServer, args: &[&str]) -> ScriptPeer {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/peer.py");
    let mut all = vec!["--server".to_owned(), server.url()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    ScriptPeer::spawn(&python(), &script, all)
}

async fn hub(server: &NatsServer) -> Hub {
    Hub::connect(HubOptions::new().servers([server.url()]).unwrap().selection(SelectionMode::Ordered)).await.unwrap()
}

fn ordered(json: &str) -> Value {
    kinopio::decode_value(json.as_bytes())
}

#[tokio::test]
async fn rust_publishes_python_receives() {
    let server = NatsServer::start();
    let mut peer = spawn_peer(&server, &["sub", "interop.rs2py", "12"]);
    assert_eq!(peer.line().await["ready"], true);
    let hub = hub(&server).await;
    let var = hub.scope("interop").unwrap().variable("rs2py").unwrap();
    var.publish(&()).await.unwrap();
    var.publish_text("hello w\u{f6}rld").await.unwrap();
    var.publish(&"123").await.unwrap();
    var.publish(&42).await.unwrap();
    var.publish(&3.25).await.unwrap();
    var.publish(&1e16).await.unwrap();
    var.publish(&true).await.unwrap();
    var.publish_value(&ordered(r#"[1, "two", 3.0, null]"#)).await.unwrap();
    var.publish_value(&ordered(r#"{"a": {"b": [1, {"c": "d"}]}, "é": "ü"}"#)).await.unwrap();
    var.publish_bytes(&b"\xff\x00\x01"[..]).await.unwrap();
    var.publish(&-0.0).await.unwrap();
    var.publish(&u64::MAX).await.unwrap();
    let expected = [
        ("NoneType", "None"),
        ("str", "'hello wörld'"),
        ("str", "'123'"),
        ("int", "42"),
        ("float", "3.25"),
        ("float", "1e+16"),
        ("bool", "True"),
        ("list", "[1, 'two', 3.0, None]"),
        ("dict", "{'a': {'b': [1, {'c': 'd'}]}, 'é': 'ü'}"),
        ("bytes", "b'\\xff\\x00\\x01'"),
        ("float", "-0.0"),
        ("int", "18446744073709551615"),
    ];
    for (ty, repr) in expected {
        let got = peer.line().await;
        assert_eq!((got["type"].as_str().unwrap(), got["repr"].as_str().unwrap()), (ty, repr));
    }
    peer.finish().await;
    hub.close().await;
}

#[tokio::test]
async fn python_publishes_rust_receives() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let mut sub = hub.variable("interop.py2rs").unwrap().subscribe().await.unwrap();
    let cases = [
        "null",
        "text",
        "empty",
        "numeric_text",
        "int",
        "big_int",
        "float",
        "neg_zero",
        "nan",
        "inf",
        "bool",
        "list",
        "nested",
        "bytes",
        "utf8_bytes",
    ];
    let mut args = vec!["pub", "interop.py2rs"];
    args.extend(cases);
    let peer = spawn_peer(&server, &args);
    let mut got = Vec::new();
    for _ in cases {
        let m: Message = tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap();
        got.push(m);
    }
    peer.finish().await;
    let v: Vec<Value> = got.iter().map(Message::value).collect();
    assert_eq!(v[0], Value::Null);
    assert_eq!(v[1], Value::from("hello w\u{f6}rld"));
    assert_eq!(v[2], Value::Null, "Python sends \"\" as the empty payload");
    assert_eq!(v[3], Value::Int(123), "Python sends the str \"123\" unquoted");
    assert_eq!(got[3].decode::<String>().unwrap(), "123", "a String receiver still gets it");
    assert_eq!(v[4], Value::Int(42));
    assert_eq!(v[5].as_f64(), Some(1e20));
    assert_eq!(v[6], Value::Float(3.25));
    assert!(matches!(v[7], Value::Float(z) if z == 0.0 && z.is_sign_negative()));
    assert!(v[8].as_f64().unwrap().is_nan(), "NaN token accepted");
    assert!(got[8].decode::<f64>().unwrap().is_nan());
    assert_eq!(v[9], Value::Float(f64::INFINITY));
    assert_eq!(v[10], Value::Bool(true));
    assert_eq!(v[11], ordered(r#"[1, "two", 3.0, null]"#));
    assert_eq!(v[12], ordered(r#"{"a": {"b": [1, {"c": "d"}]}, "é": "ü"}"#));
    let keys: Vec<&String> = v[12].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "é"], "key order kept");
    assert_eq!(v[13], Value::Bytes(bytes::Bytes::from_static(b"\xff\x00\x01")));
    assert_eq!(v[14], Value::from("abc"), "UTF-8 bytes arrive as text, as in Python");
    hub.close().await;
}

#[tokio::test]
async fn python_requests_rust_serves() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let echo = hub.variable("interop.echo").unwrap();
    echo.serve(|m: Message| async move { Ok::<_, String>(m.value()) }).await.unwrap();
    let fail = hub.variable("interop.fail").unwrap();
    fail.serve(|m: Message| async move { Err::<(), _>(format!("boom {}", m.value())) }).await.unwrap();
    let nothing = hub.variable("interop.nothing").unwrap();
    nothing.serve(|_m: Message| async move { Ok::<_, String>(()) }).await.unwrap();

    for (case, ty, repr) in [
        ("int", "int", "42"),
        ("text", "str", "'hello wörld'"),
        ("nested", "dict", "{'a': {'b': [1, {'c': 'd'}]}, 'é': 'ü'}"),
        ("list", "list", "[1, 'two', 3.0, None]"),
        ("null", "NoneType", "None"),
        ("float", "float", "3.25"),
    ] {
        let mut peer = spawn_peer(&server, &["request", "interop.echo", case]);
        let got = peer.line().await;
        assert_eq!((got["type"].as_str().unwrap(), got["repr"].as_str().unwrap()), (ty, repr), "{case}");
        peer.finish().await;
    }
    let mut peer = spawn_peer(&server, &["request", "interop.fail", "int"]);
    let got = peer.line().await;
    assert_eq!(got["repr"], "{'error': True, 'message': 'boom 42'}");
    peer.finish().await;
    let mut peer = spawn_peer(&server, &["request", "interop.nothing", "int"]);
    assert_eq!(peer.line().await["repr"], "None");
    peer.finish().await;
    hub.close().await;
}

#[tokio::test]
async fn rust_requests_python_serves() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let mut double = spawn_peer(&server, &["serve", "interop.double", "double"]);
    assert_eq!(double.line().await["ready"], true);
    let mut fail = spawn_peer(&server, &["serve", "interop.pyfail", "fail"]);
    assert_eq!(fail.line().await["ready"], true);
    let mut types = spawn_peer(&server, &["serve", "interop.types", "types"]);
    assert_eq!(types.line().await["ready"], true);

    let var = hub.variable("interop.double").unwrap();
    assert_eq!(var.request::<i64, _>(&21).await.unwrap(), 42);
    assert_eq!(var.request::<String, _>(&"ab").await.unwrap(), "abab");
    assert_eq!(var.request::<Vec<i64>, _>(&[1, 2]).await.unwrap(), vec![1, 2, 1, 2]);

    let err = hub.variable("interop.pyfail").unwrap().request::<Value, _>(&21).await.unwrap_err();
    assert_eq!(err.kind(), RequestErrorKind::Remote { message: "boom: 21".into() });

    let kinds = hub.variable("interop.types").unwrap();
    let ty = |r: kinopio::Payload| {
        let kinds = kinds.clone();
        async move { kinds.request_with(r, Default::default()).await.unwrap().decode::<String>().unwrap() }
    };
    assert_eq!(ty(kinopio::Payload::null()).await, "NoneType");
    assert_eq!(ty(kinopio::Payload::text("plain")).await, "str");
    assert_eq!(ty(kinopio::Payload::json("quoted").unwrap()).await, "str");
    assert_eq!(ty(kinopio::Payload::json(&1.5).unwrap()).await, "float");
    assert_eq!(ty(kinopio::Payload::bytes(&b"\xff"[..])).await, "bytes");
    assert_eq!(ty(kinopio::Payload::json(&serde_json::json!({"k": [1]})).unwrap()).await, "dict");

    double.finish().await;
    fail.finish().await;
    types.finish().await;
    hub.close().await;
}

#[tokio::test]
async fn rust_and_python_services_share_the_default_queue_group() {
    let server = NatsServer::start();
    let hub = hub(&server).await;
    let var = hub.variable("interop.shared").unwrap();
    var.serve(|_m: Message| async move { Ok::<_, String>("rust") }).await.unwrap();
    let mut py = spawn_peer(&server, &["serve", "interop.shared", "types"]);
    assert_eq!(py.line().await["ready"], true);
    let client = hub.variable("interop.shared").unwrap();
    let mut rust = 0;
    let mut python = 0;
    for _ in 0..60 {
        match client.request::<String, _>(&1).await.unwrap().as_str() {
            "rust" => rust += 1,
            "int" => python += 1,
            other => panic!("unexpected reply {other}"),
        }
    }
    assert_eq!(rust + python, 60, "every request answered exactly once");
    assert!(rust > 0 && python > 0, "load is shared: rust {rust}, python {python}");
    py.finish().await;
    hub.close().await;
}
