//! The UDP multicast transport of the election: one receive socket bound to the namespace's
//! port with group membership on every selected interface, and one send socket that sends
//! each beacon out of every selected interface. Interfaces are chosen by the pure
//! [`select_interfaces`] and re-scanned by [`MulticastTransport::rescan`].
//!
//! Sockets (wire-compatible with kinopio-hub 0.1.1, [Election transport](kinopio::wire::protocol#election-transport)):
//! - receive: IPv4 UDP, `SO_REUSEADDR` + `SO_REUSEPORT` (several processes per host), bound
//!   to `0.0.0.0:<port>`, `IP_ADD_MEMBERSHIP` of `239.255.71.71` on each selected interface
//!   (0.1.1 joins only on the default interface, [0.1.1 weakness E9](kinopio::wire::protocol#known-weaknesses-of-011-that-kinopio-fixes)), and on Linux `IP_MULTICAST_ALL = 0`
//!   so it sees only the memberships it joined itself;
//! - send: IPv4 UDP, TTL 1, loop on (other processes on this host hear us), non-blocking;
//!   `IP_MULTICAST_IF` is set to each interface's address before sending on it.
//!
//! Sending never waits: a full socket buffer drops that beacon (counted in
//! [`SendStats`]); the next heartbeat follows within half a second.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::net::LinkState;
use kinopio::wire::beacon::{MULTICAST_GROUP, MULTICAST_TTL};

/// Receive buffer size: larger than any UDP datagram over IPv4, so oversized datagrams are
/// read whole and dropped by the codec's size check instead of being truncated.
pub(crate) const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// Name prefixes of interfaces skipped by default: container and VM bridges, virtual
/// Ethernet pairs, tunnels and VPNs.
pub(crate) const SKIPPED_PREFIXES: [&str; 22] = [
    "docker",
    "veth",
    "br-",
    "virbr",
    "vboxnet",
    "vmnet",
    "cni",
    "flannel",
    "cali",
    "vxlan",
    "kube",
    "lxc",
    "lxd",
    "tun",
    "tap",
    "wg",
    "utun",
    "ppp",
    "tailscale",
    "zt",
    "ipsec",
    "gif",
];

/// Which interfaces the election uses.
///
/// With an empty `include` list: every up, multicast-capable interface with an IPv4 address
/// that is not loopback, link-local, point-to-point or named like a container bridge,
/// tunnel or VPN (docker, bridge, tunnel and VPN name prefixes); when none qualifies, loopback (so a single-host run
/// still works). With `include`: exactly the listed interfaces (names like `eth0`, IPv4
/// addresses, or `lo`/`loopback` for loopback), even virtual ones. `exclude` (names or
/// addresses) always wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceFilter {
    /// Interfaces to use (names or IPv4 addresses); empty: choose automatically.
    pub include: Vec<String>,
    /// Interfaces never to use (names or IPv4 addresses).
    pub exclude: Vec<String>,
}

impl InterfaceFilter {
    /// Automatic selection.
    pub fn automatic() -> InterfaceFilter {
        InterfaceFilter::default()
    }

    /// Exactly these interfaces.
    pub fn only<I, S>(names: I) -> InterfaceFilter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        InterfaceFilter { include: names.into_iter().map(Into::into).collect(), exclude: Vec::new() }
    }

    /// Loopback only (single-host runs and tests).
    pub fn loopback() -> InterfaceFilter {
        InterfaceFilter::only(["lo"])
    }

    fn matches(entries: &[String], candidate: &CandidateInterface) -> bool {
        entries.iter().any(|entry| {
            let entry = entry.trim();
            entry == candidate.name
                || entry.parse::<Ipv4Addr>().is_ok_and(|ip| ip == candidate.ip)
                || (candidate.ip.is_loopback() && (entry == "lo" || entry == "loopback"))
        })
    }
}

/// One interface address as seen by the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateInterface {
    /// Interface name.
    pub name: String,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Operational state.
    pub link: LinkState,
    /// Point-to-point link (typical of VPNs and tunnels).
    pub point_to_point: bool,
    /// `IFF_MULTICAST`, when the platform says (`None`: unknown, assumed capable).
    pub multicast: Option<bool>,
}

impl CandidateInterface {
    /// The IPv4 addresses of this machine's interfaces, with their flags.
    pub fn list() -> Vec<CandidateInterface> {
        let interfaces = match if_addrs::get_if_addrs() {
            Ok(interfaces) => interfaces,
            Err(err) => {
                tracing::warn!(error = %err, "could not list the network interfaces");
                return Vec::new();
            }
        };
        interfaces
            .into_iter()
            .filter_map(|interface| {
                let IpAddr::V4(ip) = interface.ip() else { return None };
                let link = match interface.oper_status {
                    if_addrs::IfOperStatus::Up => LinkState::Up,
                    if_addrs::IfOperStatus::Unknown => LinkState::Unknown,
                    _ => LinkState::Down,
                };
                Some(CandidateInterface {
                    multicast: multicast_flag(&interface.name),
                    point_to_point: interface.is_p2p,
                    name: interface.name,
                    ip,
                    link,
                })
            })
            .collect()
    }
}

/// `IFF_MULTICAST` from `/sys/class/net/<name>/flags` (Linux); `None` elsewhere or when
/// unreadable.
fn multicast_flag(name: &str) -> Option<bool> {
    if !cfg!(target_os = "linux") || name.contains('/') || name.contains("..") {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()?;
    const IFF_MULTICAST: u32 = 0x1000;
    Some(flags & IFF_MULTICAST != 0)
}

/// An interface the transport has joined the group on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JoinedInterface {
    /// Interface name.
    pub name: String,
    /// The address membership and sending use.
    pub ip: Ipv4Addr,
}

impl fmt::Display for JoinedInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.ip)
    }
}

/// Picks the interfaces to join per `filter` (see [`InterfaceFilter`]). Pure; the result is
/// sorted and has no duplicate addresses.
pub fn select_interfaces(candidates: &[CandidateInterface], filter: &InterfaceFilter) -> Vec<JoinedInterface> {
    let excluded = |c: &CandidateInterface| InterfaceFilter::matches(&filter.exclude, c);
    let pick = |c: &CandidateInterface| JoinedInterface { name: c.name.clone(), ip: c.ip };
    let mut chosen: Vec<JoinedInterface> = if filter.include.is_empty() {
        let automatic: Vec<JoinedInterface> = candidates
            .iter()
            .filter(|c| {
                !c.ip.is_loopback()
                    && !c.ip.is_link_local()
                    && !c.ip.is_unspecified()
                    && c.link != LinkState::Down
                    && !c.point_to_point
                    && c.multicast != Some(false)
                    && !SKIPPED_PREFIXES.iter().any(|prefix| c.name.starts_with(prefix))
                    && !excluded(c)
            })
            .map(pick)
            .collect();
        if automatic.is_empty() {
            candidates.iter().filter(|c| c.ip.is_loopback() && !excluded(c)).map(pick).collect()
        } else {
            automatic
        }
    } else {
        candidates
            .iter()
            .filter(|c| InterfaceFilter::matches(&filter.include, c) && c.link != LinkState::Down && !excluded(c))
            .map(pick)
            .collect()
    };
    chosen.sort();
    chosen.dedup_by(|a, b| a.ip == b.ip);
    chosen
}

/// Counters of the send side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams dropped because the socket buffer was full or the interface refused them.
    pub failed: u64,
}

crate::error::error_with_kind! {
    /// Why the transport could not be set up.
    #[derive(Debug, thiserror::Error)]
    pub enum TransportError => TransportErrorKind {
        /// A socket could not be created or configured.
        #[error("cannot {action} for the election on UDP port {port}: {source}")]
        Socket {
            /// What failed.
            action: &'static str,
            /// The namespace's port.
            port: u16,
            /// The OS error.
            #[source]
            source: io::Error,
        },
        /// The group could not be joined on any interface.
        #[error(
            "cannot join multicast group {group} on any interface ({tried}); check that the \
             interfaces are up and multicast-capable, or pick others in the interface filter"
        )]
        NoMembership {
            /// The group.
            group: Ipv4Addr,
            /// What was tried and why it failed.
            tried: String,
        },
        /// No interface matches the filter.
        #[error("no usable IPv4 interface matches the interface filter {wanted}; available: {available}")]
        NoInterface {
            /// The requested interfaces.
            wanted: String,
            /// The interfaces found.
            available: String,
        },
    }
}

/// The election's multicast sockets for one namespace port.
#[derive(Debug)]
pub struct MulticastTransport {
    port: u16,
    group: SocketAddrV4,
    receive: UdpSocket,
    send: Socket,
    filter: InterfaceFilter,
    joined: Vec<JoinedInterface>,
    stats: SendStats,
}

impl MulticastTransport {
    /// Binds the namespace's `port` and joins the group on the interfaces `filter` selects
    /// now. Fails when none can be joined. Must run inside a tokio runtime.
    pub fn bind(port: u16, filter: InterfaceFilter) -> Result<MulticastTransport, TransportError> {
        let socket_error = |action, source| TransportError::Socket { action, port, source };
        let receive = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| socket_error("create the receive socket", e))?;
        receive.set_reuse_address(true).map_err(|e| socket_error("set SO_REUSEADDR", e))?;
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        receive.set_reuse_port(true).map_err(|e| socket_error("set SO_REUSEPORT", e))?;
        #[cfg(target_os = "linux")]
        receive.set_multicast_all_v4(false).map_err(|e| socket_error("set IP_MULTICAST_ALL", e))?;
        receive.set_nonblocking(true).map_err(|e| socket_error("make the receive socket non-blocking", e))?;
        let bind_addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        receive.bind(&bind_addr.into()).map_err(|e| socket_error("bind the receive socket", e))?;
        let receive =
            UdpSocket::from_std(receive.into()).map_err(|e| socket_error("register the receive socket", e))?;

        let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| socket_error("create the send socket", e))?;
        send.set_multicast_ttl_v4(MULTICAST_TTL).map_err(|e| socket_error("set IP_MULTICAST_TTL", e))?;
        send.set_multicast_loop_v4(true).map_err(|e| socket_error("set IP_MULTICAST_LOOP", e))?;
        send.set_nonblocking(true).map_err(|e| socket_error("make the send socket non-blocking", e))?;

        let mut transport = MulticastTransport {
            port,
            group: SocketAddrV4::new(MULTICAST_GROUP, port),
            receive,
            send,
            filter,
            joined: Vec::new(),
            stats: SendStats::default(),
        };
        let candidates = CandidateInterface::list();
        let wanted = select_interfaces(&candidates, &transport.filter);
        if wanted.is_empty() {
            let available = candidates.iter().map(|c| format!("{} ({})", c.name, c.ip)).collect::<Vec<_>>();
            return Err(TransportError::NoInterface {
                wanted: if transport.filter.include.is_empty() {
                    "(automatic)".to_owned()
                } else {
                    transport.filter.include.join(", ")
                },
                available: if available.is_empty() { "none".to_owned() } else { available.join(", ") },
            });
        }
        let failures = transport.apply(wanted);
        if transport.joined.is_empty() {
            return Err(TransportError::NoMembership { group: MULTICAST_GROUP, tried: failures.join("; ") });
        }
        Ok(transport)
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The interfaces joined right now.
    pub fn joined(&self) -> &[JoinedInterface] {
        &self.joined
    }

    /// Send counters.
    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Lists the interfaces again, joins new ones and leaves those whose address vanished
    /// (an interface that merely lost its link stays joined). Returns `true` when the joined
    /// set changed. Cheap enough to run every few seconds.
    pub fn rescan(&mut self) -> bool {
        let candidates = CandidateInterface::list();
        let mut wanted = select_interfaces(&candidates, &self.filter);
        // A joined interface whose link only went down keeps its membership (its address is
        // still there), so beacons flow again the moment the link returns.
        for joined in &self.joined {
            let still_there = candidates.iter().any(|c| {
                c.name == joined.name && c.ip == joined.ip && !InterfaceFilter::matches(&self.filter.exclude, c)
            });
            if still_there && !wanted.contains(joined) {
                wanted.push(joined.clone());
            }
        }
        let before = self.joined.clone();
        for failure in self.apply(wanted) {
            tracing::debug!(failure, "multicast membership not (re)joined");
        }
        before != self.joined
    }

    /// Joins what is wanted and not joined, leaves what is joined and not wanted. Returns a
    /// description of each failed join.
    fn apply(&mut self, wanted: Vec<JoinedInterface>) -> Vec<String> {
        let mut failures = Vec::new();
        let group = MULTICAST_GROUP;
        let gone: Vec<JoinedInterface> = self.joined.iter().filter(|j| !wanted.contains(j)).cloned().collect();
        for interface in gone {
            // The kernel drops the membership itself when the address vanishes.
            let _ = self.receive.leave_multicast_v4(group, interface.ip);
            tracing::info!(interface = %interface, "left the election multicast group");
            self.joined.retain(|j| *j != interface);
        }
        for interface in wanted {
            if self.joined.contains(&interface) {
                continue;
            }
            match self.receive.join_multicast_v4(group, interface.ip) {
                Ok(()) => {
                    tracing::info!(interface = %interface, port = self.port, "joined the election multicast group");
                    self.joined.push(interface);
                }
                Err(err) if err.kind() == io::ErrorKind::AddrInUse => self.joined.push(interface),
                Err(err) => failures.push(format!("{interface}: {err}")),
            }
        }
        self.joined.sort();
        failures
    }

    /// Sends one datagram to the group out of every joined interface. Never waits.
    pub fn send(&mut self, datagram: &[u8]) {
        let target = SocketAddr::V4(self.group).into();
        for interface in &self.joined {
            let result =
                self.send.set_multicast_if_v4(&interface.ip).and_then(|()| self.send.send_to(datagram, &target));
            match result {
                Ok(_) => self.stats.sent = self.stats.sent.saturating_add(1),
                Err(err) => {
                    self.stats.failed = self.stats.failed.saturating_add(1);
                    tracing::debug!(interface = %interface, error = %err, "beacon not sent");
                }
            }
        }
    }

    /// Waits for the next datagram. Returns its length and sender; the bytes are in
    /// `buf[..len]`. A datagram larger than `buf` is cut to its size.
    ///
    /// # Errors
    ///
    /// The socket's I/O error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no datagram is lost when the future is dropped.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.receive.recv_from(buf).await
    }
}

impl Drop for MulticastTransport {
    fn drop(&mut self) {
        for interface in &self.joined {
            let _ = self.receive.leave_multicast_v4(MULTICAST_GROUP, interface.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, ip: &str) -> CandidateInterface {
        CandidateInterface {
            name: name.into(),
            ip: ip.parse().unwrap(),
            link: LinkState::Up,
            point_to_point: false,
            multicast: Some(true),
        }
    }

    fn names(joined: &[JoinedInterface]) -> Vec<&str> {
        joined.iter().map(|j| j.name.as_str()).collect()
    }

    #[test]
    fn automatic_selection_skips_virtual_vpn_loopback_and_link_local() {
        let mut down = candidate("eth2", "10.0.2.5");
        down.link = LinkState::Down;
        let mut p2p = candidate("corp0", "10.8.0.2");
        p2p.point_to_point = true;
        let mut no_multicast = candidate("eth3", "10.0.3.5");
        no_multicast.multicast = Some(false);
        let all = vec![
            candidate("lo", "127.0.0.1"),
            candidate("eth0", "192.168.1.20"),
            candidate("wlan0", "192.168.2.20"),
            candidate("docker0", "172.17.0.1"),
            candidate("veth12ab", "172.18.0.1"),
            candidate("br-5f2", "172.19.0.1"),
            candidate("wg0", "10.9.0.1"),
            candidate("tun0", "10.10.0.1"),
            candidate("eth1", "169.254.3.4"),
            down,
            p2p,
            no_multicast,
        ];
        assert_eq!(names(&select_interfaces(&all, &InterfaceFilter::automatic())), ["eth0", "wlan0"]);
        let filter = InterfaceFilter { include: vec![], exclude: vec!["wlan0".into()] };
        assert_eq!(names(&select_interfaces(&all, &filter)), ["eth0"]);
    }

    #[test]
    fn loopback_is_the_fallback_and_can_be_asked_for() {
        let only_lo = vec![candidate("lo", "127.0.0.1"), candidate("docker0", "172.17.0.1")];
        assert_eq!(names(&select_interfaces(&only_lo, &InterfaceFilter::automatic())), ["lo"]);
        let all = vec![candidate("lo", "127.0.0.1"), candidate("eth0", "192.168.1.20")];
        assert_eq!(names(&select_interfaces(&all, &InterfaceFilter::loopback())), ["lo"]);
        assert_eq!(names(&select_interfaces(&all, &InterfaceFilter::only(["127.0.0.1"]))), ["lo"]);
        // Explicit include takes even skipped kinds; exclude still wins.
        let all = vec![candidate("docker0", "172.17.0.1"), candidate("eth0", "192.168.1.20")];
        assert_eq!(names(&select_interfaces(&all, &InterfaceFilter::only(["docker0"]))), ["docker0"]);
        let filter = InterfaceFilter { include: vec!["docker0".into()], exclude: vec!["172.17.0.1".into()] };
        assert!(select_interfaces(&all, &filter).is_empty());
        assert!(select_interfaces(&all, &InterfaceFilter::only(["eth9"])).is_empty());
    }
}
