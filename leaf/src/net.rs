//! Local networking for the leaf: choosing the LAN address without contacting anything
//! outside this machine, writing hosts into URLs and `host:port` strings (IPv6 in
//! brackets), and checking that a listener port is free or accepting.
//!
//! The reference ([protocol notes](kinopio::wire::protocol#discovering-the-lan-address)) "connects" a UDP socket to `8.8.8.8` to learn
//! the route's source address; here the interfaces are listed instead ([`lan_address`](crate::net::lan_address)) and
//! ranked by the pure [`choose_lan_address`](crate::net::choose_lan_address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Operational state of an interface, as far as the platform reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// Up and running.
    Up,
    /// The platform does not say (common for virtual interfaces that work).
    Unknown,
    /// Down, dormant, testing or absent.
    Down,
}

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// Interface name (`eth0`, `wlan0`, `docker0`, ...).
    pub name: String,
    /// The address.
    pub ip: IpAddr,
    /// Operational state.
    pub link: LinkState,
}

/// Interface name prefixes of container and VM bridges; their addresses are only used when
/// nothing else is available.
const VIRTUAL_PREFIXES: [&str; 8] = ["docker", "br-", "veth", "virbr", "cni", "flannel", "vboxnet", "vmnet"];

/// Picks the address other devices on the LAN most likely reach this one at: the first
/// IPv4 address that is not loopback, link-local, unspecified, multicast or broadcast, on
/// an interface that is not down; interfaces reported up beat unknown ones, physical beat
/// container/VM bridges, private (RFC 1918) beat other addresses, then the listed order.
/// `None` when no address qualifies. Pure.
pub fn choose_lan_address(interfaces: &[InterfaceAddress]) -> Option<IpAddr> {
    interfaces
        .iter()
        .enumerate()
        .filter_map(|(index, interface)| {
            let IpAddr::V4(ip) = interface.ip else { return None };
            let unusable = ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_broadcast()
                || interface.link == LinkState::Down;
            if unusable {
                return None;
            }
            let link_rank = u8::from(interface.link != LinkState::Up);
            let is_virtual = VIRTUAL_PREFIXES.iter().any(|prefix| interface.name.starts_with(prefix));
            let not_private = !ip.is_private();
            Some(((link_rank, is_virtual, not_private, index), interface.ip))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, ip)| ip)
}

/// The addresses of this machine's interfaces (empty when they cannot be listed).
pub fn interface_addresses() -> Vec<InterfaceAddress> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .into_iter()
            .map(|interface| {
                let link = match interface.oper_status {
                    if_addrs::IfOperStatus::Up => LinkState::Up,
                    if_addrs::IfOperStatus::Unknown => LinkState::Unknown,
                    _ => LinkState::Down,
                };
                InterfaceAddress { ip: interface.ip(), name: interface.name, link }
            })
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "could not list the network interfaces");
            Vec::new()
        }
    }
}

/// This machine's LAN address per [`choose_lan_address`], else `127.0.0.1` (then only this
/// machine can reach the leaf; pass `--lan-bind-address` to choose).
pub fn lan_address() -> IpAddr {
    match choose_lan_address(&interface_addresses()) {
        Some(ip) => ip,
        None => {
            tracing::warn!("found no LAN address on any interface; using 127.0.0.1 (only this machine can connect)");
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
    }
}

/// Every non-loopback, non-link-local address of an interface that is not down (for the
/// certificate SANs of a leaf bound to a wildcard address).
pub fn all_lan_addresses(interfaces: &[InterfaceAddress]) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    for interface in interfaces {
        let ip = interface.ip;
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        if interface.link != LinkState::Down
            && !ip.is_loopback()
            && !ip.is_unspecified()
            && !ip.is_multicast()
            && !link_local
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

/// A host as it appears in a URL or a `host:port` string: IPv6 literals in brackets,
/// anything else (IPv4, DNS names, already bracketed literals) unchanged. Pure.
pub fn url_host(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<Ipv6Addr>().is_ok() { format!("[{bare}]") } else { host.to_owned() }
}

/// `host:port` with IPv6 literals bracketed. Pure.
pub fn host_port(host: &str, port: u16) -> String {
    format!("{}:{port}", url_host(host))
}

/// The address to connect to when checking a listener bound to `bind`: loopback of the
/// same family for the wildcard addresses, else `bind` itself. Pure.
pub fn connect_address(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// True when a TCP connection to `addr` succeeds within `timeout`.
///
/// # Cancel safety
///
/// Cancel-safe: the connection attempt is abandoned.
pub async fn accepts(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// True when a TLS handshake with `addr` completes within `timeout`. The server's
/// certificate is **not** verified: this only checks that a TLS listener answers (a bare
/// TCP probe would make nats-server log a handshake error on every check). Never send
/// data over such a connection.
///
/// # Cancel safety
///
/// Cancel-safe: the connection attempt is abandoned.
pub async fn accepts_tls(addr: SocketAddr, timeout: Duration) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let connector = tokio_rustls::TlsConnector::from(probe_tls_config()?);
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, stream).await.ok()?;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Some(())
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(())))
}

fn probe_tls_config() -> Option<std::sync::Arc<rustls::ClientConfig>> {
    static CONFIG: std::sync::OnceLock<Option<std::sync::Arc<rustls::ClientConfig>>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let verifier = std::sync::Arc::new(AnyServerCert(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Some(std::sync::Arc::new(config))
        })
        .clone()
}

/// Accepts any server certificate but still checks the handshake signatures, so the
/// probe completes only against a working TLS server. Used by [`accepts_tls`] only.
#[derive(Debug)]
struct AnyServerCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Binds `addr` and releases it at once: `Ok` when the port is free right now, else the
/// bind error (`AddrInUse`, `AddrNotAvailable`, ...). Used to report a taken port by name
/// before nats-server fails on it; nats-server binds for real afterwards.
pub fn check_bindable(addr: SocketAddr) -> std::io::Result<()> {
    std::net::TcpListener::bind(addr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, ip: &str, link: LinkState) -> InterfaceAddress {
        InterfaceAddress { name: name.to_owned(), ip: ip.parse().unwrap(), link }
    }

    #[test]
    fn chooses_private_ipv4_of_an_up_physical_interface() {
        let interfaces = [
            iface("lo", "127.0.0.1", LinkState::Unknown),
            iface("docker0", "172.17.0.1", LinkState::Up),
            iface("eth0", "fe80::1", LinkState::Up),
            iface("eth1", "169.254.3.4", LinkState::Up),
            iface("eth2", "203.0.113.9", LinkState::Up),
            iface("wlan0", "192.168.1.23", LinkState::Up),
            iface("wlan1", "192.168.1.24", LinkState::Up),
        ];
        assert_eq!(choose_lan_address(&interfaces), Some("192.168.1.23".parse().unwrap()));
    }

    #[test]
    fn up_beats_unknown_and_down_is_skipped() {
        let interfaces = [
            iface("eth0", "10.0.0.5", LinkState::Down),
            iface("tun0", "10.8.0.2", LinkState::Unknown),
            iface("eth1", "198.51.100.7", LinkState::Up),
        ];
        assert_eq!(choose_lan_address(&interfaces), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(choose_lan_address(&interfaces[..2]), Some("10.8.0.2".parse().unwrap()));
        assert_eq!(choose_lan_address(&interfaces[..1]), None);
    }

    #[test]
    fn bridges_are_a_last_resort() {
        let interfaces = [iface("docker0", "172.17.0.1", LinkState::Up), iface("lo", "127.0.0.1", LinkState::Up)];
        assert_eq!(choose_lan_address(&interfaces), Some("172.17.0.1".parse().unwrap()));
    }

    #[test]
    fn all_lan_addresses_skip_loopback_link_local_and_duplicates() {
        let interfaces = [
            iface("lo", "::1", LinkState::Up),
            iface("eth0", "10.0.0.5", LinkState::Up),
            iface("eth0", "fe80::2", LinkState::Up),
            iface("eth0", "2001:db8::5", LinkState::Up),
            iface("eth1", "10.0.0.5", LinkState::Up),
            iface("eth2", "10.9.9.9", LinkState::Down),
        ];
        let expected: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()];
        assert_eq!(all_lan_addresses(&interfaces), expected);
    }

    #[test]
    fn hosts_are_bracketed_only_when_ipv6() {
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("[fe80::1]"), "[fe80::1]");
        assert_eq!(url_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(url_host("leaf.local"), "leaf.local");
        assert_eq!(host_port("2001:db8::1", 4222), "[2001:db8::1]:4222");
        assert_eq!(host_port("127.0.0.1", 4222), "127.0.0.1:4222");
    }

    #[test]
    fn wildcard_binds_are_checked_on_loopback() {
        assert_eq!(connect_address("0.0.0.0".parse().unwrap()), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(connect_address("::".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(connect_address("10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn check_bindable_reports_a_taken_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = check_bindable(taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(taken);
        assert!(check_bindable("127.0.0.1:0".parse().unwrap()).is_ok());
    }
}
