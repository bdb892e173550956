//! Turns beacons into datagrams and back for one node in one namespace: stamps the lease
//! timestamps, signs and verifies in secured namespaces, and drops looped-back, foreign and
//! malformed datagrams with a typed [`BeaconError`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::auth::{BeaconKey, NamespaceSecret, Signer, Verifier, canonical};
use kinopio::wire::beacon::{Beacon, BeaconError, MAX_BEACON_BYTES, field, parse_object, port_for_namespace};
use kinopio::wire::json as wire_json;

/// Default accepted clock difference for signed beacons.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(30);
/// Default lease written into `leaseExpiresAt`/`expiresAt` (now + 2 s, like 0.1.1).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(2);

/// Why a beacon could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded beacon does not fit one datagram.
    #[error(
        "encoded beacon is {len} bytes, more than the {max}-byte datagram limit; shorten the \
         advertised URLs or the backbone server list"
    )]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit ([`MAX_BEACON_BYTES`]).
        max: usize,
    },
}

/// Encodes and decodes one node's beacons for one namespace.
///
/// Open namespaces (no secret) write exactly what kinopio-hub 0.1.1 writes and accept
/// unsigned beacons. Secured namespaces sign every beacon and accept only beacons that carry
/// a valid, fresh, not-replayed signature (see [`NamespaceSecret`](super::NamespaceSecret)).
///
/// ```
/// use std::time::SystemTime;
/// use kinopio_leaf::election::{BeaconCodec}; use kinopio::wire::beacon::{Beacon, BeaconError, Role, State};
///
/// let mut alice = BeaconCodec::open("studio", "kinopio-alice");
/// let mut bob = BeaconCodec::open("studio", "kinopio-bob");
/// let beacon = Beacon::candidate("kinopio-alice", "studio", 0, "", None, Role::Candidate, State::Discovering);
/// let datagram = alice.encode(&beacon, SystemTime::now()).unwrap();
/// assert_eq!(bob.decode(&datagram, SystemTime::now()).unwrap().node_id, "kinopio-alice");
/// assert_eq!(alice.decode(&datagram, SystemTime::now()), Err(BeaconError::OwnBeacon));
/// ```
#[derive(Debug, Clone)]
pub struct BeaconCodec {
    namespace: String,
    node_id: String,
    lease: Duration,
    security: Option<Security>,
}

#[derive(Debug, Clone)]
struct Security {
    signer: Signer,
    verifier: Verifier,
}

impl BeaconCodec {
    /// A codec for an open (unsigned) namespace.
    pub fn open(namespace: &str, node_id: &str) -> BeaconCodec {
        BeaconCodec {
            namespace: namespace.to_owned(),
            node_id: node_id.to_owned(),
            lease: DEFAULT_LEASE,
            security: None,
        }
    }

    /// A codec for a namespace secured with `secret` (replay window
    /// [`DEFAULT_REPLAY_WINDOW`]).
    pub fn secured(namespace: &str, node_id: &str, secret: &NamespaceSecret) -> BeaconCodec {
        let key = BeaconKey::derive(secret, namespace);
        BeaconCodec {
            security: Some(Security {
                signer: Signer::new(key.clone()),
                verifier: Verifier::new(key, duration_ms(DEFAULT_REPLAY_WINDOW)),
            }),
            ..BeaconCodec::open(namespace, node_id)
        }
    }

    /// Sets the accepted clock difference for signed beacons (no effect when open).
    pub fn with_replay_window(mut self, window: Duration) -> BeaconCodec {
        if let Some(security) = &mut self.security {
            security.verifier.set_window_ms(duration_ms(window));
        }
        self
    }

    /// Sets the lease written into `leaseExpiresAt`/`expiresAt`.
    pub fn with_lease(mut self, lease: Duration) -> BeaconCodec {
        self.lease = lease;
        self
    }

    /// `true` when beacons are signed and verified.
    pub fn is_secured(&self) -> bool {
        self.security.is_some()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The namespace's UDP port ([`port_for_namespace`]).
    pub fn port(&self) -> u16 {
        port_for_namespace(&self.namespace)
    }

    /// Encodes `beacon` into one datagram: stamps `leaseExpiresAt`/`expiresAt` with
    /// `now + lease` (UTC, `YYYY-MM-DDTHH:MM:SSZ`), writes it like Python's `json.dumps`, and
    /// appends the `auth` field when secured.
    pub fn encode(&mut self, beacon: &Beacon, now: SystemTime) -> Result<Vec<u8>, EncodeError> {
        let now_ms = unix_ms(now);
        let mut stamped = beacon.clone();
        let lease_expiry = format_utc_seconds(now_ms.saturating_add(duration_ms(self.lease)));
        stamped.lease_expires_at.clone_from(&lease_expiry);
        stamped.expires_at = lease_expiry;
        let body = stamped.to_python_json();
        let text = match &mut self.security {
            None => body,
            Some(security) => {
                // Sign what receivers will parse: the body re-read from its own text.
                let parsed: Map<String, Value> = serde_json::from_str(&body).unwrap_or_default();
                let auth = security.signer.sign(&parsed, now_ms);
                let mut text = body;
                text.pop(); // the closing brace
                text.push_str(", ");
                text.push_str(&wire_json::python_value(&Value::from(field::AUTH)));
                text.push_str(": ");
                text.push_str(&auth);
                text.push('}');
                text
            }
        };
        if text.len() > MAX_BEACON_BYTES {
            return Err(EncodeError::TooLarge { len: text.len(), max: MAX_BEACON_BYTES });
        }
        Ok(text.into_bytes())
    }

    /// Decodes one received datagram. Checks, in order: size, UTF-8, JSON object, field
    /// types, own node id, namespace, and (when secured) the signature, its freshness and
    /// replay. Never panics.
    pub fn decode(&mut self, datagram: &[u8], now: SystemTime) -> Result<Beacon, BeaconError> {
        let mut map = parse_object(datagram)?;
        let auth = map.remove(field::AUTH);
        let canonical_body = self.security.as_ref().map(|_| canonical(&map));
        let beacon = Beacon::from_json_object(map)?;
        if beacon.node_id == self.node_id {
            return Err(BeaconError::OwnBeacon);
        }
        if beacon.discovery_namespace != self.namespace {
            return Err(BeaconError::ForeignNamespace { found: beacon.discovery_namespace.chars().take(64).collect() });
        }
        if let (Some(security), Some(body)) = (&mut self.security, canonical_body) {
            security.verifier.verify(&beacon.node_id, &body, auth.as_ref(), unix_ms(now))?;
        }
        Ok(beacon)
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(duration_ms).unwrap_or(0)
}

/// Formats unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (seconds truncated, like Python's
/// `time.gmtime`).
pub(crate) fn format_utc_seconds(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinopio::wire::beacon::{BeaconErrorKind, Role, State};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    const NOW: u64 = 1_795_336_141_500; // 2026-11-22T08:29:01.5Z

    fn beacon(node: &str, ns: &str) -> Beacon {
        Beacon::candidate(node, ns, 4, "10.0.0.2", Some(12.345), Role::Follower, State::FollowingLeader)
    }

    #[test]
    fn lease_is_stamped_like_python() {
        assert_eq!(format_utc_seconds(NOW), "2026-11-22T08:29:01Z");
        let mut codec = BeaconCodec::open("studio", "a");
        let bytes = codec.encode(&beacon("a", "studio"), at(NOW)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(r#""leaseExpiresAt": "2026-11-22T08:29:03Z", "expiresAt": "2026-11-22T08:29:03Z""#),
            "{text}"
        );
        assert!(!text.contains("auth"));
        assert!(text.contains(r#""backboneRttMs": 12.345"#));
    }

    #[test]
    fn open_codec_filters_own_and_foreign() {
        let mut a = BeaconCodec::open("studio", "a");
        let mut b = BeaconCodec::open("studio", "b");
        let mut other = BeaconCodec::open("studio-a", "c");
        let bytes = a.encode(&beacon("a", "studio"), at(NOW)).unwrap();
        let decoded = b.decode(&bytes, at(NOW)).unwrap();
        assert_eq!(decoded.leader_epoch, 4);
        assert_eq!(decoded.backbone_rtt_ms, Some(12.345));
        assert_eq!(a.decode(&bytes, at(NOW)), Err(BeaconError::OwnBeacon));
        assert_eq!(other.decode(&bytes, at(NOW)).unwrap_err().kind(), BeaconErrorKind::ForeignNamespace);
    }

    #[test]
    fn secured_codec_signs_verifies_and_rejects() {
        let secret = NamespaceSecret::new("s3cret").unwrap();
        let mut a = BeaconCodec::secured("studio", "a", &secret);
        let mut b = BeaconCodec::secured("studio", "b", &secret);
        let mut open_a = BeaconCodec::open("studio", "a");
        let wrong = NamespaceSecret::new("guess").unwrap();
        let mut forger = BeaconCodec::secured("studio", "a", &wrong);

        let signed = a.encode(&beacon("a", "studio"), at(NOW)).unwrap();
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(text.contains(r#", "auth": {"alg": "hmac-sha256", "ts": "#), "{text}");
        assert_eq!(b.decode(&signed, at(NOW + 10)).unwrap().node_id, "a");
        // Replay of the same datagram.
        assert_eq!(b.decode(&signed, at(NOW + 20)).unwrap_err().kind(), BeaconErrorKind::Replayed);
        // An open codec accepts signed beacons (the auth field is ignored).
        assert!(BeaconCodec::open("studio", "z").decode(&signed, at(NOW)).is_ok());
        // Unsigned, forged, stale.
        let unsigned = open_a.encode(&beacon("a", "studio"), at(NOW + 30)).unwrap();
        assert_eq!(b.decode(&unsigned, at(NOW + 40)), Err(BeaconError::Unsigned));
        let forged = forger.encode(&beacon("a", "studio"), at(NOW + 50)).unwrap();
        assert_eq!(b.decode(&forged, at(NOW + 60)), Err(BeaconError::Forged));
        let later = a.encode(&beacon("a", "studio"), at(NOW + 70)).unwrap();
        assert_eq!(b.decode(&later, at(NOW + 70 + 30_001)).unwrap_err().kind(), BeaconErrorKind::Stale);
        // Tampering with a signed datagram breaks the MAC.
        let tampered = text.replace(r#""leaderEpoch": 4"#, r#""leaderEpoch": 400"#);
        let mut c = BeaconCodec::secured("studio", "c", &secret);
        assert_eq!(c.decode(tampered.as_bytes(), at(NOW)), Err(BeaconError::Forged));
        // Same secret, other namespace: the derived key differs.
        let mut ns_b = BeaconCodec::secured("studio-b", "b", &secret);
        let mut ns_a = BeaconCodec::secured("studio-b", "a", &secret);
        let mut cross = beacon("a", "studio-b");
        cross.discovery_namespace = "studio-b".into();
        let cross_bytes = ns_a.encode(&cross, at(NOW)).unwrap();
        assert!(ns_b.decode(&cross_bytes, at(NOW)).is_ok());
        let reused = String::from_utf8(signed)
            .unwrap()
            .replace(r#""discoveryNamespace": "studio""#, r#""discoveryNamespace": "studio-b""#);
        let mut ns_c = BeaconCodec::secured("studio-b", "c", &secret);
        assert_eq!(ns_c.decode(reused.as_bytes(), at(NOW)), Err(BeaconError::Forged));
    }

    #[test]
    fn seq_keeps_increasing_across_restarts() {
        let secret = NamespaceSecret::new("s3cret").unwrap();
        let mut receiver = BeaconCodec::secured("studio", "r", &secret);
        let mut first = BeaconCodec::secured("studio", "a", &secret);
        for i in 0..5 {
            let bytes = first.encode(&beacon("a", "studio"), at(NOW + i)).unwrap();
            receiver.decode(&bytes, at(NOW + i)).unwrap();
        }
        // A restarted sender (fresh codec) a second later is still accepted.
        let mut restarted = BeaconCodec::secured("studio", "a", &secret);
        let bytes = restarted.encode(&beacon("a", "studio"), at(NOW + 1000)).unwrap();
        receiver.decode(&bytes, at(NOW + 1000)).unwrap();
    }

    #[test]
    fn oversized_beacons_are_refused() {
        let mut codec = BeaconCodec::open("studio", "a");
        let mut big = beacon("a", "studio");
        big.advertised_hostname = "h".repeat(MAX_BEACON_BYTES);
        assert!(matches!(codec.encode(&big, at(NOW)), Err(EncodeError::TooLarge { .. })));
    }
}
