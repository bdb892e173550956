//! Where a leaf listens: the LAN bind address and advertised host (with the certificate
//! names that follow from them), and the port checks that turn a taken port into a
//! [`LeafError::PortInUse`] naming the port and its listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::{LeafError, ListenerKind};
use super::options::LeafOptions;
use crate::net;
use crate::process::{self, ProcessError};

/// The hosts the leaf listens and advertises on, resolved from the options.
#[derive(Debug, Clone)]
pub(crate) struct Hosts {
    /// Bind address of the WSS and discovery listeners.
    pub(crate) lan_bind: IpAddr,
    /// Host in the LAN URLs and the certificate CN.
    pub(crate) advertised: String,
    /// Every name the certificate carries (besides loopback).
    pub(crate) san_hosts: Vec<String>,
}

/// Resolves the bind address (given or detected), the advertised host and the SAN list.
pub(crate) fn resolve_hosts(options: &LeafOptions) -> Result<Hosts, LeafError> {
    let lan_bind = options.lan_bind_address.unwrap_or_else(net::lan_address);
    let interfaces = if lan_bind.is_unspecified() { net::interface_addresses() } else { Vec::new() };
    let advertised = match options.advertised_host.as_deref().map(str::trim) {
        Some(host) => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if bare.is_empty() || bare.chars().any(|c| c.is_whitespace() || "/?#@".contains(c)) {
                return Err(LeafError::InvalidOption {
                    option: "advertised host",
                    reason: format!("{host:?} is not a host name or address"),
                });
            }
            bare.to_owned()
        }
        None if lan_bind.is_unspecified() => net::choose_lan_address(&interfaces)
            .unwrap_or(match lan_bind {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            })
            .to_string(),
        None => lan_bind.to_string(),
    };
    let mut san_hosts = vec![advertised.clone()];
    if lan_bind.is_unspecified() {
        san_hosts.extend(net::all_lan_addresses(&interfaces).into_iter().map(|ip| ip.to_string()));
    } else {
        san_hosts.push(lan_bind.to_string());
    }
    Ok(Hosts { lan_bind, advertised, san_hosts })
}

/// Refuses the same port for two listeners.
pub(crate) fn check_distinct_ports(ports: &[(ListenerKind, Option<u16>)]) -> Result<(), LeafError> {
    for (index, (kind, port)) in ports.iter().enumerate() {
        let Some(port) = port.filter(|port| *port != 0) else { continue };
        if let Some((other, _)) = ports[index + 1..].iter().find(|(_, other)| *other == Some(port)) {
            return Err(LeafError::SamePort { port, first: *kind, second: *other });
        }
    }
    Ok(())
}

/// Fails with [`LeafError::PortInUse`] when a given port is taken right now.
pub(crate) fn precheck_port(listener: ListenerKind, host: IpAddr, port: Option<u16>) -> Result<(), LeafError> {
    let Some(port) = port.filter(|port| *port != 0) else { return Ok(()) };
    let addr = SocketAddr::new(host, port);
    net::check_bindable(addr).map_err(|source| bind_error(listener, addr, source))
}

/// `PortInUse` for `EADDRINUSE`, else `Bind`.
pub(crate) fn bind_error(listener: ListenerKind, addr: SocketAddr, source: std::io::Error) -> LeafError {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        LeafError::PortInUse { listener, addr }
    } else {
        LeafError::Bind { listener, addr, source }
    }
}

/// Maps nats-server's "address already in use" exit to [`LeafError::PortInUse`].
pub(crate) fn start_error(err: ProcessError, given: &[(ListenerKind, IpAddr, Option<u16>)]) -> LeafError {
    if let ProcessError::Exited { log_tail, .. } = &err {
        for port in process::ports_in_use(log_tail) {
            if let Some((listener, host, _)) = given.iter().find(|(_, _, given)| *given == Some(port)) {
                return LeafError::PortInUse { listener: *listener, addr: SocketAddr::new(*host, port) };
            }
        }
    }
    LeafError::Start(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_ports_are_refused() {
        let ports =
            [(ListenerKind::Client, Some(4222)), (ListenerKind::Monitor, None), (ListenerKind::Websocket, Some(4222))];
        let err = check_distinct_ports(&ports).unwrap_err();
        assert!(
            matches!(
                err,
                LeafError::SamePort { port: 4222, first: ListenerKind::Client, second: ListenerKind::Websocket }
            ),
            "{err}"
        );
        assert!(check_distinct_ports(&[(ListenerKind::Client, Some(0)), (ListenerKind::Monitor, Some(0))]).is_ok());
    }

    #[test]
    fn nats_port_in_use_exit_maps_to_the_listener() {
        let err = ProcessError::Exited {
            status: "exit status: 1".into(),
            log_tail: "[FTL] Can't start monitoring: can't listen to the monitor port: listen tcp 127.0.0.1:8222: bind: address already in use".into(),
        };
        let given = [
            (ListenerKind::Client, IpAddr::V4(Ipv4Addr::LOCALHOST), None),
            (ListenerKind::Monitor, IpAddr::V4(Ipv4Addr::LOCALHOST), Some(8222)),
        ];
        match start_error(err, &given) {
            LeafError::PortInUse { listener, addr } => {
                assert_eq!(listener, ListenerKind::Monitor);
                assert_eq!(addr.port(), 8222);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn explicit_hosts_are_advertised_and_put_into_the_certificate() {
        let options = LeafOptions::new().lan_bind_address("127.0.0.1".parse().unwrap());
        let hosts = resolve_hosts(&options).unwrap();
        assert_eq!(hosts.advertised, "127.0.0.1");
        assert_eq!(hosts.san_hosts, ["127.0.0.1", "127.0.0.1"]);
        let options = options.advertised_host("[::1]");
        let hosts = resolve_hosts(&options).unwrap();
        assert_eq!(hosts.advertised, "::1");
        assert!(resolve_hosts(&LeafOptions::new().advertised_host("a b")).is_err());
    }
}
