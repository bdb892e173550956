//! Beacon signatures for secured namespaces: key derivation from the namespace secret,
//! HMAC-SHA-256 over the canonical beacon, and the freshness (timestamp window) and replay
//! (per-sender sequence number) checks.
//!
//! Wire form: a signed beacon carries one extra field, written last,
//! `"auth": {"alg": "hmac-sha256", "ts": <unix ms>, "seq": <u64>, "mac": "<64 lowercase hex>"}`.
//!
//! - key = Argon2id(secret, salt = SHA-256(`"kinopio-beacon-key-v2" 0x00 namespace`), m = 19 MiB,
//!   t = 2, p = 1, 32 bytes): a captured beacon lets an attacker test guesses of the secret
//!   offline, and each guess costs a memory-hard hash (v1 was a single HMAC)
//! - mac = HMAC-SHA-256(key, message = `"kinopio-beacon-v1" 0x00 ts 0x00 seq 0x00 canonical`)
//!   where `ts` and `seq` are decimal ASCII and `canonical` is every beacon field except
//!   `auth` as compact JSON with keys sorted by UTF-8 bytes at every level.
//! - `seq` starts at the sender's unix time in ms and grows by at least one per beacon, so it
//!   keeps increasing across restarts.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use kinopio::wire::beacon::{BeaconError, integer_value};
use kinopio::wire::json as wire_json;

type HmacSha256 = Hmac<Sha256>;

/// The only signature algorithm (`auth.alg`).
pub const AUTH_ALG: &str = "hmac-sha256";

const KEY_CONTEXT: &[u8] = b"kinopio-beacon-key-v2";
const MAC_CONTEXT: &[u8] = b"kinopio-beacon-v1";
/// Replay-state entries kept before pruning old ones.
const REPLAY_PRUNE_THRESHOLD: usize = 256;

/// A namespace's shared secret. Its `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct NamespaceSecret(Vec<u8>);

/// The error for an empty namespace secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the namespace secret is empty; give a non-empty secret or run the namespace open")]
pub struct EmptySecret;

impl NamespaceSecret {
    /// Wraps a secret; it must not be empty.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, EmptySecret> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(EmptySecret);
        }
        Ok(NamespaceSecret(secret))
    }

    /// Why this secret is weak, if it is: short, or a single repeated character. The work
    /// factor slows guessing; it does not make a weak secret strong.
    pub fn weakness(&self) -> Option<String> {
        let distinct = self.0.iter().collect::<std::collections::HashSet<_>>().len();
        if self.0.len() < 16 {
            Some(format!(
                "the namespace secret is only {} bytes; anyone who captures one beacon can guess offline: use 16 or more random characters",
                self.0.len()
            ))
        } else if distinct < 6 {
            Some("the namespace secret repeats a few characters; use 16 or more random characters".to_owned())
        } else {
            None
        }
    }

    /// The secret's bytes (to derive the namespace CA).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for NamespaceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NamespaceSecret(..)")
    }
}

/// The per-namespace signing key.
#[derive(Clone)]
pub(crate) struct BeaconKey([u8; 32]);

impl fmt::Debug for BeaconKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BeaconKey(..)")
    }
}

impl BeaconKey {
    pub(crate) fn derive(secret: &NamespaceSecret, namespace: &str) -> BeaconKey {
        use sha2::Digest;
        // Derived keys are remembered per process (keyed by a hash of the inputs), so codecs
        // created again for the same namespace do not pay the work factor again.
        static DERIVED: std::sync::Mutex<Option<HashMap<[u8; 32], [u8; 32]>>> = std::sync::Mutex::new(None);
        let salt: [u8; 32] = Sha256::new()
            .chain_update(KEY_CONTEXT)
            .chain_update([0])
            .chain_update(namespace.as_bytes())
            .finalize()
            .into();
        let memo: [u8; 32] = Sha256::new().chain_update(salt).chain_update(&secret.0).finalize().into();
        let mut derived = DERIVED.lock().unwrap_or_else(|p| p.into_inner());
        let derived = derived.get_or_insert_with(HashMap::new);
        if let Some(key) = derived.get(&memo) {
            return BeaconKey(*key);
        }
        let mut key = [0u8; 32];
        let argon = argon2::Params::new(19 * 1024, 2, 1, Some(32))
            .map(|params| argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params));
        match argon.map(|argon| argon.hash_password_into(&secret.0, &salt, &mut key)) {
            Ok(Ok(())) => {}
            // Fixed, valid parameters: cannot fail; fall back to a keyed hash all the same.
            _ => key = Sha256::new().chain_update(salt).chain_update(&secret.0).finalize().into(),
        }
        derived.insert(memo, key);
        BeaconKey(key)
    }

    fn mac(&self, ts: u64, seq: u64, canonical: &[u8]) -> HmacSha256 {
        let mut mac = new_mac(&self.0);
        mac.update(MAC_CONTEXT);
        mac.update(&[0]);
        mac.update(ts.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(seq.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(canonical);
        mac
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never fails.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA-256 accepts keys of any length"),
    }
}

/// The canonical bytes a MAC covers: `body` (without `auth`) as sorted compact JSON.
pub(crate) fn canonical(body: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    wire_json::write_canonical_object(&mut out, body);
    out
}

/// Signs outgoing beacons with increasing sequence numbers.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    key: BeaconKey,
    last_seq: u64,
}

impl Signer {
    pub(crate) fn new(key: BeaconKey) -> Signer {
        Signer { key, last_seq: 0 }
    }

    /// The `auth` field's JSON text (`{"alg": ..., "ts": ..., "seq": ..., "mac": ...}`, in
    /// that order, Python-formatted) for a beacon whose other fields are `body`.
    pub(crate) fn sign(&mut self, body: &Map<String, Value>, now_unix_ms: u64) -> String {
        let seq = now_unix_ms.max(self.last_seq.saturating_add(1));
        self.last_seq = seq;
        let mac = self.key.mac(now_unix_ms, seq, &canonical(body));
        let entries = [
            ("alg".to_owned(), Value::from(AUTH_ALG)),
            ("ts".to_owned(), Value::from(now_unix_ms)),
            ("seq".to_owned(), Value::from(seq)),
            ("mac".to_owned(), Value::from(hex::encode(mac.finalize().into_bytes()))),
        ];
        wire_json::python_object(&entries)
    }
}

/// Verifies incoming signed beacons and remembers the last accepted sequence number per
/// sender.
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    key: BeaconKey,
    window_ms: u64,
    /// node id → (last accepted seq, our unix ms when accepted).
    last_accepted: HashMap<String, (u64, u64)>,
}

impl Verifier {
    pub(crate) fn new(key: BeaconKey, window_ms: u64) -> Verifier {
        Verifier { key, window_ms, last_accepted: HashMap::new() }
    }

    pub(crate) fn set_window_ms(&mut self, window_ms: u64) {
        self.window_ms = window_ms;
    }

    /// Checks `auth` against the canonical `body` bytes: present, well-formed, MAC valid,
    /// timestamp within the window, sequence number newer than the last accepted one.
    pub(crate) fn verify(
        &mut self,
        node_id: &str,
        canonical_body: &[u8],
        auth: Option<&Value>,
        now_unix_ms: u64,
    ) -> Result<(), BeaconError> {
        let Some(auth) = auth else {
            return Err(BeaconError::Unsigned);
        };
        let Value::Object(auth) = auth else {
            return Err(malformed(format!("it is {}, expected an object", wire_json::type_name(auth))));
        };
        match auth.get("alg") {
            Some(Value::String(alg)) if alg == AUTH_ALG => {}
            Some(Value::String(alg)) => {
                return Err(malformed(format!("unsupported alg {:?}, only {AUTH_ALG:?} is known", truncate(alg))));
            }
            _ => return Err(malformed("`alg` is missing or not a string".into())),
        }
        let number = |name: &'static str| -> Result<u64, BeaconError> {
            let value = auth.get(name).ok_or_else(|| malformed(format!("`{name}` is missing")))?;
            integer_value(name, value)
        };
        let ts = number("ts")?;
        let seq = number("seq")?;
        let mac_bytes = match auth.get("mac") {
            Some(Value::String(mac)) => hex::decode(mac).map_err(|_| malformed("`mac` is not hex".into()))?,
            _ => return Err(malformed("`mac` is missing or not a string".into())),
        };
        self.key.mac(ts, seq, canonical_body).verify_slice(&mac_bytes).map_err(|_| BeaconError::Forged)?;

        let skew_ms = i128::from(ts) - i128::from(now_unix_ms);
        if skew_ms.unsigned_abs() > u128::from(self.window_ms) {
            return Err(BeaconError::Stale {
                skew_ms: i64::try_from(skew_ms).unwrap_or(i64::MAX),
                window_ms: self.window_ms,
            });
        }
        if let Some(&(last, _)) = self.last_accepted.get(node_id)
            && seq <= last
        {
            return Err(BeaconError::Replayed { node_id: node_id.to_owned(), seq, last });
        }
        self.last_accepted.insert(node_id.to_owned(), (seq, now_unix_ms));
        self.prune(now_unix_ms);
        Ok(())
    }

    /// Forgets senders not heard for two windows: any replay of their old beacons is
    /// rejected as stale by then.
    fn prune(&mut self, now_unix_ms: u64) {
        if self.last_accepted.len() <= REPLAY_PRUNE_THRESHOLD {
            return;
        }
        let horizon = now_unix_ms.saturating_sub(self.window_ms.saturating_mul(2));
        self.last_accepted.retain(|_, (_, accepted_at)| *accepted_at >= horizon);
    }
}

fn malformed(reason: String) -> BeaconError {
    BeaconError::MalformedAuth { reason }
}

fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Map<String, Value> {
        match json!({"nodeId": "a", "leaderEpoch": 3, "backboneRttMs": 5.25}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn sign(signer: &mut Signer, now: u64) -> Value {
        let text = signer.sign(&body(), now);
        assert!(text.starts_with(r#"{"alg": "hmac-sha256", "ts": "#), "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn key(secret: &str, ns: &str) -> BeaconKey {
        BeaconKey::derive(&NamespaceSecret::new(secret).unwrap(), ns)
    }

    #[test]
    fn signed_body_verifies_once() {
        let mut signer = Signer::new(key("s3cret", "studio"));
        let mut verifier = Verifier::new(key("s3cret", "studio"), 30_000);
        let now = 1_700_000_000_000;
        let auth = sign(&mut signer, now);
        assert_eq!(auth["seq"], json!(now));
        verifier.verify("a", &canonical(&body()), Some(&auth), now + 5).unwrap();
        assert!(matches!(
            verifier.verify("a", &canonical(&body()), Some(&auth), now + 6),
            Err(BeaconError::Replayed { .. })
        ));
        // The next beacon in the same millisecond still gets a larger seq.
        let next = sign(&mut signer, now);
        assert_eq!(next["seq"], json!(now + 1));
        verifier.verify("a", &canonical(&body()), Some(&next), now + 7).unwrap();
    }

    #[test]
    fn wrong_key_namespace_or_body_is_forged() {
        let now = 1_700_000_000_000;
        let auth = sign(&mut Signer::new(key("s3cret", "studio")), now);
        let mut other_secret = Verifier::new(key("other", "studio"), 30_000);
        let mut other_ns = Verifier::new(key("s3cret", "studio-a"), 30_000);
        assert_eq!(other_secret.verify("a", &canonical(&body()), Some(&auth), now), Err(BeaconError::Forged));
        assert_eq!(other_ns.verify("a", &canonical(&body()), Some(&auth), now), Err(BeaconError::Forged));
        let mut altered = body();
        altered.insert("leaderEpoch".into(), json!(99));
        let mut verifier = Verifier::new(key("s3cret", "studio"), 30_000);
        assert_eq!(verifier.verify("a", &canonical(&altered), Some(&auth), now), Err(BeaconError::Forged));
    }

    #[test]
    fn stale_unsigned_and_malformed_are_rejected() {
        let now = 1_700_000_000_000;
        let auth = sign(&mut Signer::new(key("s", "ns")), now);
        let mut verifier = Verifier::new(key("s", "ns"), 30_000);
        assert!(matches!(
            verifier.verify("a", &canonical(&body()), Some(&auth), now + 30_001),
            Err(BeaconError::Stale { skew_ms: -30_001, .. })
        ));
        assert!(matches!(
            verifier.verify("a", &canonical(&body()), Some(&auth), now - 30_001),
            Err(BeaconError::Stale { .. })
        ));
        assert_eq!(verifier.verify("a", &canonical(&body()), None, now), Err(BeaconError::Unsigned));
        for bad in [
            json!("x"),
            json!({"alg": "md5", "ts": now, "seq": now, "mac": "00"}),
            json!({"alg": AUTH_ALG, "ts": -1, "seq": now, "mac": "00"}),
            json!({"alg": AUTH_ALG, "ts": now, "seq": 1.5, "mac": "00"}),
            json!({"alg": AUTH_ALG, "ts": now, "seq": now, "mac": "zz"}),
            json!({"alg": AUTH_ALG, "ts": now, "seq": now}),
        ] {
            let kind = verifier.verify("a", &canonical(&body()), Some(&bad), now).unwrap_err().kind();
            assert!(
                matches!(
                    kind,
                    kinopio::wire::beacon::BeaconErrorKind::MalformedAuth
                        | kinopio::wire::beacon::BeaconErrorKind::InvalidInteger
                        | kinopio::wire::beacon::BeaconErrorKind::WrongType
                ),
                "{bad}: {kind:?}"
            );
        }
    }

    /// The key costs a memory-hard hash per guess of the secret: it is Argon2id of the
    /// secret (a single HMAC would let a captured beacon be brute-forced quickly).
    #[test]
    fn the_beacon_key_is_an_argon2id_hash_of_the_secret() {
        use sha2::Digest;
        let secret = NamespaceSecret::new("correct horse battery staple").unwrap();
        let salt = Sha256::new().chain_update(b"kinopio-beacon-key-v2\0studio").finalize();
        let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).unwrap();
        let mut expected = [0u8; 32];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(b"correct horse battery staple", &salt, &mut expected)
            .unwrap();
        assert_eq!(BeaconKey::derive(&secret, "studio").0, expected);
        assert_ne!(BeaconKey::derive(&secret, "kitchen").0, expected);
    }

    #[test]
    fn weak_secrets_are_named() {
        assert!(NamespaceSecret::new("hunter2").unwrap().weakness().unwrap().contains("only 7 bytes"));
        assert!(NamespaceSecret::new("aaaaaaaaaaaaaaaaaaaa").unwrap().weakness().is_some());
        assert!(NamespaceSecret::new("Xk3#pQ9v!mT2wL8z").unwrap().weakness().is_none());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let secret = NamespaceSecret::new("hunter2").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(matches!(NamespaceSecret::new(""), Err(EmptySecret)));
    }
}
