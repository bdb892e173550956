//! One trust per namespace: the **namespace CA**, derived from a secured namespace's name and
//! secret, the same on every device.
//!
//! Every member of a secured namespace derives the same CA key from the secret, so whichever
//! device leads serves a certificate that chains to the same root: a client (or a browser
//! that installed the root once) follows the leader from device to device over verified TLS,
//! and a host without the secret cannot produce a certificate, a manifest or a WebSocket
//! endpoint that such a client accepts.
//!
//! The contract (kinopio-only: kinopio-hub 0.1.1 nodes cannot join secured namespaces):
//! - `seed = Argon2id(secret, salt = SHA-256("kinopio-namespace-ca-v1" 0x00 namespace),
//!   m = 19 MiB, t = 2, p = 1, 32 bytes)` — the work factor makes every guess of the secret
//!   cost a memory-hard hash;
//! - the CA key is the P-256 scalar `SHA-256(seed ‖ counter)` for the first counter (from 0)
//!   that gives a valid scalar;
//! - the CA certificate: subject `CN=Kinopio Namespace CA <first 16 hex of SHA-256(namespace)>,
//!   O=kinopio`, CA:TRUE pathlen 0, keyCertSign/cRLSign, valid 2025-01-01 to 2036-01-01,
//!   serial from the same hash, and **name constraints**: it can only vouch for
//!   [`PERMITTED_DNS`] names and private, loopback and link-local addresses. Its key is never
//!   written anywhere;
//! - the LAN token every client must present to a secured leaf (WSS and loopback listeners):
//!   hex of `SHA-256(seed ‖ "kinopio-lan-token-v1")`.
//!
//! Open namespaces have no such CA: each leaf's own CA (see the leaf crate) is trusted per
//! device, and discovery can be pointed at it with a CA file.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree, IsCa, KeyPair,
    KeyUsagePurpose, NameConstraints, SerialNumber,
};
use sha2::{Digest, Sha256};

/// DNS names (and their subdomains) a namespace CA may vouch for.
pub const PERMITTED_DNS: &[&str] = &["local", "localhost", "home.arpa", "internal", "lan"];

/// Address ranges a namespace CA may vouch for: private, loopback, link-local, unique-local.
pub const PERMITTED_NETWORKS: &[(&str, u8)] = &[
    ("10.0.0.0", 8),
    ("172.16.0.0", 12),
    ("192.168.0.0", 16),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("::1", 128),
    ("fc00::", 7),
    ("fe80::", 10),
];

const SALT_LABEL: &[u8] = b"kinopio-namespace-ca-v1\0";

/// A secret (a namespace secret, a password): its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a namespace CA could not be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The secret is empty.
    #[error("the namespace secret is empty")]
    EmptySecret,
    /// The key derivation failed (should not happen with valid parameters).
    #[error("cannot derive the namespace key: {0}")]
    Derive(String),
    /// The certificate could not be built.
    #[error("cannot build the namespace CA certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// A namespace CA: its certificate, and its key for the devices that issue leaf certificates.
pub struct NamespaceCa {
    namespace: String,
    lan_token: String,
    key: KeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl std::fmt::Debug for NamespaceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceCa").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// Two derivations are equal when they are for the same namespace and key (the certificate
/// bytes differ: its ECDSA signature is randomised).
impl PartialEq for NamespaceCa {
    fn eq(&self, other: &Self) -> bool {
        use rcgen::PublicKeyData;
        self.namespace == other.namespace && self.key.der_bytes() == other.key.der_bytes()
    }
}

impl Eq for NamespaceCa {}

impl NamespaceCa {
    /// Derives the CA of `namespace` from its `secret` (takes a memory-hard hash: tens of
    /// milliseconds; do it once).
    ///
    /// # Errors
    /// An empty secret.
    pub fn derive(namespace: &str, secret: &[u8]) -> Result<NamespaceCa, TrustError> {
        if secret.is_empty() {
            return Err(TrustError::EmptySecret);
        }
        let salt = Sha256::new().chain_update(SALT_LABEL).chain_update(namespace.as_bytes()).finalize();
        let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| TrustError::Derive(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut seed = [0u8; 32];
        argon.hash_password_into(secret, &salt, &mut seed).map_err(|e| TrustError::Derive(e.to_string()))?;
        let scalar = (0u32..)
            .map(|counter| Sha256::new().chain_update(seed).chain_update(counter.to_be_bytes()).finalize())
            .find_map(|bytes| p256::SecretKey::from_slice(&bytes).ok())
            .ok_or_else(|| TrustError::Derive("no valid scalar".into()))?;
        let pkcs8 =
            p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&scalar).map_err(|e| TrustError::Derive(e.to_string()))?;
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256)?;

        let id = hex_prefix(&Sha256::digest(namespace.as_bytes()));
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("Kinopio Namespace CA {id}"));
        name.push(DnType::OrganizationName, "kinopio");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = time::macros::datetime!(2025-01-01 00:00 UTC);
        params.not_after = time::macros::datetime!(2036-01-01 00:00 UTC);
        params.serial_number = Some(SerialNumber::from_slice(&Sha256::digest(seed)[..16]));
        params.name_constraints = Some(lan_name_constraints());
        let cert = params.self_signed(&key)?;
        let lan_token = hex_all(&Sha256::new().chain_update(seed).chain_update(b"kinopio-lan-token-v1").finalize());
        Ok(NamespaceCa {
            namespace: namespace.to_owned(),
            lan_token,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The CA certificate (DER). Any derivation of the same namespace and secret gives a
    /// certificate with the same subject, key and constraints.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate (PEM): what a browser or another tool installs, once per namespace.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The token a secured namespace's leaf requires from every client (its LAN WebSocket
    /// listener and its loopback port), derived from the same seed. A secret: kinopio clients
    /// with the namespace secret present it by themselves.
    pub fn lan_token(&self) -> &str {
        &self.lan_token
    }

    /// The CA key (PKCS#8 PEM), for the devices that issue leaf certificates. Keep it in
    /// memory; it is never written to disk.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// Whether a kinopio CA (a namespace CA or a device CA: both carry
/// [`lan_name_constraints`]) may vouch for `host`, a DNS name or an IP address.
pub fn permits(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return PERMITTED_NETWORKS.iter().any(|(net, prefix)| in_network(ip, net, *prefix));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    PERMITTED_DNS.iter().any(|suffix| host == *suffix || host.ends_with(&format!(".{suffix}")))
}

/// The name constraints of every kinopio CA: [`PERMITTED_DNS`] names and
/// [`PERMITTED_NETWORKS`] addresses only.
pub fn lan_name_constraints() -> NameConstraints {
    let mut permitted: Vec<GeneralSubtree> =
        PERMITTED_DNS.iter().map(|name| GeneralSubtree::DnsName((*name).to_owned())).collect();
    for (net, prefix) in PERMITTED_NETWORKS {
        if let Ok(addr) = net.parse::<IpAddr>() {
            permitted.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(addr, *prefix)));
        }
    }
    NameConstraints { permitted_subtrees: permitted, excluded_subtrees: Vec::new() }
}

fn in_network(ip: IpAddr, net: &str, prefix: u8) -> bool {
    match (ip, net.parse::<IpAddr>()) {
        (IpAddr::V4(ip), Ok(IpAddr::V4(net))) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), Ok(IpAddr::V6(net))) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn hex_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_same_namespace_and_secret_give_the_same_ca_key_and_subject() {
        let a = NamespaceCa::derive("studio", b"correct horse").unwrap();
        let b = NamespaceCa::derive("studio", b"correct horse").unwrap();
        assert_eq!(a.key_pem(), b.key_pem());
        let (_, ca) = x509_parser::parse_x509_certificate(a.cert_der()).unwrap();
        let (_, cb) = x509_parser::parse_x509_certificate(b.cert_der()).unwrap();
        assert_eq!(ca.subject().to_string(), cb.subject().to_string());
        assert_eq!(ca.public_key().raw, cb.public_key().raw);
        assert!(ca.subject().to_string().contains("Kinopio Namespace CA"));
        assert!(ca.name_constraints().unwrap().is_some(), "the CA is name-constrained");

        let other_secret = NamespaceCa::derive("studio", b"another secret").unwrap();
        let other_namespace = NamespaceCa::derive("kitchen", b"correct horse").unwrap();
        assert_ne!(a.key_pem(), other_secret.key_pem());
        assert_ne!(a.key_pem(), other_namespace.key_pem());
        assert!(matches!(NamespaceCa::derive("studio", b""), Err(TrustError::EmptySecret)));
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn only_lan_names_and_private_addresses_are_permitted() {
        for ok in [
            "192.168.1.5",
            "10.1.2.3",
            "172.31.0.1",
            "127.0.0.1",
            "::1",
            "fd00::5",
            "[fe80::1]",
            "box.local",
            "localhost",
        ] {
            assert!(permits(ok), "{ok}");
        }
        for bad in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "www.google.com", "local.example.com", "evil-local"] {
            assert!(!permits(bad), "{bad}");
        }
    }
}
