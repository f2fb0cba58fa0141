//! A LAN for BGP tests: a top-of-rack router running BIRD 2 ([`Router`]), nodes running FRR
//! ([`FrrNode`]) on the router's LAN, and a client on a network of its own behind the router,
//! so that it reaches the nodes' addresses only through the routes the router learnt.
//! Documentation addresses only: the LAN is `192.0.2.0/24` and `2001:db8::/64` (router `.1` and
//! `::1`, node `n` at `192.0.2.<10+n>` and `2001:db8::<10+n>`), the client's network
//! `198.51.100.0/24` and `2001:db8:100::/64` (router `.1` and `::1`, client `.100` and `::100`).
//! The router peers with every node over both families.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Process;
use crate::frr::FrrNode;
use crate::lan::{self, Host, Lan};
use crate::router::{BirdNeighbor, Router, bird_config};

/// The router's AS, and the nodes'.
pub const ROUTER_ASN: u32 = 64500;
pub const NODE_ASN: u32 = 64512;
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The router's IPv6 address on the LAN: the nodes' IPv6 peer.
pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x100);
/// The router's address on the client's IPv6 network.
const CLIENT_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The TCP port of [`serve`].
pub const PORT: &str = "8080";

pub struct BgpLan {
    // Dropped in this order: the processes before the namespaces they run in.
    pub nodes: Vec<FrrNode>,
    pub router: Router,
    pub client: Host,
    pub lan: Lan,
}

impl BgpLan {
    /// A router peering with `node_count` nodes (`node1`...), each running FRR with an empty
    /// configuration; `neighbor_options` go into each of the router's BGP neighbors (`bfd on;`).
    pub fn new(name: &str, node_count: u8, neighbor_options: &str) -> BgpLan {
        let mut lan = Lan::new(name);
        let hosts: Vec<Host> = (1..=node_count)
            .map(|n| lan.add_host(&format!("node{n}"), 10 + n))
            .collect();
        let (router, client) = add_router(&mut lan, &hosts, "client", neighbor_options);
        let nodes = hosts.iter().map(FrrNode::start).collect();
        BgpLan {
            nodes,
            router,
            client,
            lan,
        }
    }

    /// The router's IPv4 neighbor for each node host: protocol `<host>`, in [`NODE_ASN`].
    pub fn neighbors(hosts: &[Host], options: &str) -> Vec<BirdNeighbor> {
        hosts
            .iter()
            .map(|host| neighbor(host.name.clone(), IpAddr::V4(host.ipv4), options))
            .collect()
    }

    /// The router's IPv6 neighbor for each node host: protocol `<host>v6`
    /// ([`ipv6_protocol`]), in [`NODE_ASN`].
    pub fn ipv6_neighbors(hosts: &[Host], options: &str) -> Vec<BirdNeighbor> {
        hosts
            .iter()
            .map(|host| neighbor(ipv6_protocol(&host.name), IpAddr::V6(host.ipv6), options))
            .collect()
    }

    pub fn node(&self, name: &str) -> &FrrNode {
        self.nodes
            .iter()
            .find(|n| n.host.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut FrrNode {
        self.nodes
            .iter_mut()
            .find(|n| n.host.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}

fn neighbor(name: String, address: IpAddr, options: &str) -> BirdNeighbor {
    BirdNeighbor {
        name,
        address,
        asn: NODE_ASN,
        options: options.to_string(),
    }
}

/// The router's BIRD protocol for its IPv6 session with node host `host`.
pub fn ipv6_protocol(host: &str) -> String {
    format!("{host}v6")
}

/// Adds the router (host 1) peering with the node `hosts` over IPv4 and IPv6, their default
/// routes of both families going through it, and a client `client` behind it, ready;
/// `neighbor_options` go into each of the router's BGP neighbors (`bfd on;`).
pub fn add_router(
    lan: &mut Lan,
    hosts: &[Host],
    client: &str,
    neighbor_options: &str,
) -> (Router, Host) {
    let router_host = lan.add_host("router", 1);
    let client_netns = lan.add_behind(&router_host, client, "eth1");
    router_host.run("ip", &["address", "add", "198.51.100.1/24", "dev", "eth1"]);
    router_host.run(
        "ip",
        &[
            "address",
            "add",
            &format!("{CLIENT_GATEWAY_V6}/64"),
            "dev",
            "eth1",
            "nodad",
        ],
    );
    router_host.run("ip", &["link", "set", "eth1", "up"]);
    lan::sysctl(
        &router_host.netns,
        &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
    );
    let client = Host {
        name: client.into(),
        netns: client_netns,
        ipv4: CLIENT,
        ..router_host.clone()
    };
    client.run(
        "ip",
        &["address", "add", &format!("{CLIENT}/24"), "dev", "eth0"],
    );
    client.run(
        "ip",
        &[
            "address",
            "add",
            &format!("{CLIENT_V6}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    client.run("ip", &["link", "set", "eth0", "up"]);
    client.run("ip", &["route", "add", "default", "via", "198.51.100.1"]);
    client.run(
        "ip",
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &CLIENT_GATEWAY_V6.to_string(),
        ],
    );
    for host in hosts {
        // Answers to the client go back through the router.
        host.run(
            "ip",
            &["route", "add", "default", "via", &ROUTER.to_string()],
        );
        host.run(
            "ip",
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_V6.to_string(),
            ],
        );
    }
    let router = Router::start(
        &router_host,
        &bird_config(
            ROUTER,
            ROUTER_ASN,
            &[
                BgpLan::neighbors(hosts, neighbor_options),
                BgpLan::ipv6_neighbors(hosts, neighbor_options),
            ]
            .concat(),
        ),
    );
    (router, client)
}

/// Puts `address` (IPv4 or IPv6) on the node's loopback and serves TCP on it, answering with
/// the node's name.
pub fn serve(node: &FrrNode, address: &str) -> Process {
    let ip: IpAddr = address.parse().expect("an IP address");
    let (length, listen) = match ip {
        IpAddr::V4(_) => (32, "TCP4-LISTEN"),
        IpAddr::V6(_) => (128, "TCP6-LISTEN"),
    };
    node.host.run(
        "ip",
        &[
            "address",
            "add",
            &format!("{address}/{length}"),
            "dev",
            "lo",
        ],
    );
    let mut command = node.host.command("socat");
    command.args([
        &format!("{listen}:{PORT},bind={},reuseaddr,fork", socat_host(ip)),
        &format!("SYSTEM:echo {}", node.host.name),
    ]);
    // In FRR's folder: removed with it.
    let log = node.dir().join("socat.log");
    Process::spawn(&format!("socat on {}", node.host.name), command, log)
}

/// Which node answered the client's TCP connection to `address`, if one did.
pub fn client_reaches(client: &Host, address: &str) -> Option<String> {
    let output = client
        .command("socat")
        .args([
            "-T",
            "2",
            "-",
            &format!(
                "TCP:{}:{PORT},connect-timeout=2",
                socat_host(address.parse().expect("an IP address"))
            ),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running socat");
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !said.is_empty()).then_some(said)
}

/// `ip` as socat takes a host in an address: IPv6 in brackets.
fn socat_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}
