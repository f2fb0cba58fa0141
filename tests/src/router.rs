//! A top-of-rack router on a LAN host: BIRD 2 (Debian's `bird2`) peering over BGP with the
//! nodes, installing what it learns in its namespace's kernel (equal routes merged into one
//! multipath route), with BFD; read back with `birdc` and `ip route`. Its configuration,
//! control socket and log live in a folder of its own, removed with it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Process;
use crate::lan::Host;

const STARTUP: Duration = Duration::from_secs(10);

/// A BGP neighbor of the router.
#[derive(Debug, Clone)]
pub struct BirdNeighbor {
    /// The BIRD protocol's name (letters and digits).
    pub name: String,
    pub address: IpAddr,
    pub asn: u32,
    /// More options of its `protocol bgp` block (`password "x";`, `bfd on;`).
    pub options: String,
}

/// A BIRD protocol as `birdc show protocols` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdProtocol {
    pub name: String,
    /// `up`, `start`, `down`.
    pub state: String,
    /// When it last changed state.
    pub since: String,
    /// BGP's state (`Established`, `Active`) and the last error, if any.
    pub info: String,
}

pub struct Router {
    pub host: Host,
    bird: Process,
    dir: tempfile::TempDir,
}

/// The configuration of a router `local` in AS `asn` peering with `neighbors`: BGP routes into
/// the kernel, equal ones as one multipath route; BFD at 100 ms x 3 for the neighbors that turn
/// it on; graceful restart helper for all.
pub fn bird_config(local: Ipv4Addr, asn: u32, neighbors: &[BirdNeighbor]) -> String {
    let mut config = format!(
        "router id {local};
protocol device {{ scan time 1; }}
protocol bfd {{
  interface \"*\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
}}
protocol kernel {{ ipv4 {{ export all; import none; }}; merge paths on; }}
protocol kernel {{ ipv6 {{ export all; import none; }}; merge paths on; }}
"
    );
    for n in neighbors {
        // An IPv6 neighbor takes its source address from the interface.
        let (family, local_line) = match n.address {
            IpAddr::V4(_) => ("ipv4", format!("local {local} as {asn};")),
            IpAddr::V6(_) => ("ipv6", format!("local as {asn};")),
        };
        config.push_str(&format!(
            "protocol bgp {} {{
  {local_line}
  neighbor {} as {};
  {family} {{ import all; export none; }};
  hold time 9;
  connect retry time 1;
  error wait time 1, 5;
  graceful restart on;
  {}
}}
",
            n.name, n.address, n.asn, n.options
        ));
    }
    config
}

impl Router {
    /// Starts BIRD in `host`'s namespace with `config`; returns once it answers on its socket.
    pub fn start(host: &Host, config: &str) -> Router {
        let dir = tempfile::Builder::new()
            .prefix(&format!("herald-bird-{}-", host.name))
            .tempdir()
            .expect("a temporary folder");
        let path = dir.path();
        std::fs::write(path.join("bird.conf"), config).expect("writing bird.conf");
        let mut command = host.command("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(path.join("bird.conf"))
            .arg("-s")
            .arg(path.join("bird.ctl"))
            .arg("-P")
            .arg(path.join("bird.pid"));
        let bird = Process::spawn(
            &format!("bird on {}", host.name),
            command,
            path.join("bird.log"),
        );
        let router = Router {
            host: host.clone(),
            bird,
            dir,
        };
        let deadline = Instant::now() + STARTUP;
        while !router.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "bird in {} made no control socket within {STARTUP:?}",
                host.netns
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        router
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("bird.ctl")
    }

    /// The folder of its configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the configuration and makes BIRD take it (`birdc configure`).
    pub fn reconfigure(&self, config: &str) {
        std::fs::write(self.dir.path().join("bird.conf"), config).expect("writing bird.conf");
        let said = self.birdc(&["configure"]);
        // Protocols that must restart for the change make it "in progress".
        assert!(
            said.contains("Reconfigured") || said.contains("Reconfiguration in progress"),
            "birdc configure: {said}"
        );
    }

    /// Runs `birdc args` and returns what it printed.
    pub fn birdc(&self, args: &[&str]) -> String {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running birdc: {e}"));
        assert!(
            output.status.success(),
            "birdc {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Every protocol BIRD runs.
    pub fn protocols(&self) -> Vec<BirdProtocol> {
        parse_protocols(&self.birdc(&["show", "protocols"]))
    }

    pub fn protocol(&self, name: &str) -> BirdProtocol {
        self.protocols()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("BIRD has no protocol {name}"))
    }

    /// The gateways of the router's kernel route to `prefix` (several for a multipath route);
    /// empty when it has none.
    pub fn kernel_gateways(&self, prefix: &str) -> Vec<IpAddr> {
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        let json = self
            .host
            .run("ip", &[family, "-j", "route", "show", prefix]);
        parse_gateways(&json)
    }

    /// The destinations of the routes BIRD put in the router's kernel, IPv4 then IPv6.
    pub fn kernel_routes(&self) -> Vec<String> {
        let mut routes = Vec::new();
        for family in ["-4", "-6"] {
            let json = self
                .host
                .run("ip", &[family, "-j", "route", "show", "proto", "bird"]);
            let parsed: serde_json::Value =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("ip -j route: {e}: {json}"));
            routes.extend(
                parsed
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|route| Some(route["dst"].as_str()?.to_string())),
            );
        }
        routes
    }

    /// The prefixes BIRD learnt from its protocol `name` (one BGP session), sorted.
    pub fn routes_from(&self, name: &str) -> Vec<String> {
        parse_route_prefixes(&self.birdc(&["show", "route", "protocol", name]))
    }

    /// `bird` stays up for the whole test: a failure to start shows in its log.
    pub fn log_tail(&self) -> String {
        self.bird.log_tail(40)
    }
}

/// `birdc show protocols`: "name proto table state since info", the header and banner skipped.
fn parse_protocols(text: &str) -> Vec<BirdProtocol> {
    text.lines()
        .skip_while(|line| !line.starts_with("Name"))
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 {
                return None;
            }
            Some(BirdProtocol {
                name: fields[0].to_string(),
                state: fields[3].to_string(),
                since: fields[4].to_string(),
                info: fields[5..].join(" "),
            })
        })
        .collect()
}

/// The prefixes of `birdc show route`: each route's first line starts with its prefix; its next
/// hops are indented, tables and the banner are headed by words.
fn parse_route_prefixes(text: &str) -> Vec<String> {
    let mut prefixes: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with(char::is_whitespace))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|first| first.contains('/'))
        .map(str::to_string)
        .collect();
    prefixes.sort();
    prefixes
}

/// The gateways of `ip -j route show <prefix>`: `gateway`, or each of `nexthops`.
fn parse_gateways(json: &str) -> Vec<IpAddr> {
    let routes: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("ip -j route: {e}: {json}"));
    let mut gateways: Vec<IpAddr> = routes
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|route| match route["nexthops"].as_array() {
            Some(hops) => hops.iter().map(|h| h["gateway"].clone()).collect(),
            None => vec![route["gateway"].clone()],
        })
        .filter_map(|gateway| gateway.as_str()?.parse().ok())
        .collect();
    gateways.sort();
    gateways
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_protocols() {
        let text = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     14:22:59.864  
n1         BGP        ---        up     14:23:09.070  Established   
asbad      BGP        ---        start  14:24:43.484  Idle          BGP Error: Bad peer AS
";
        let protocols = parse_protocols(text);
        assert_eq!(protocols.len(), 3);
        assert_eq!(
            protocols[2],
            BirdProtocol {
                name: "asbad".into(),
                state: "start".into(),
                since: "14:24:43.484".into(),
                info: "Idle BGP Error: Bad peer AS".into(),
            }
        );
        assert_eq!(protocols[1].info, "Established");
    }

    #[test]
    fn route_prefixes() {
        let text = "BIRD 2.0.12 ready.
Table master6:
2001:db8:ff::100/128 unicast [node0v6 10:41:07.377] * (100) [AS64512i]
	via 2001:db8::11 on eth0
Table master4:
203.0.113.100/32     unicast [node0 10:41:06.912] * (100) [AS64512i]
	via 192.0.2.11 on eth0
";
        assert_eq!(
            parse_route_prefixes(text),
            ["2001:db8:ff::100/128", "203.0.113.100/32"]
        );
        assert!(parse_route_prefixes("BIRD 2.0.12 ready.\n").is_empty());
    }

    #[test]
    fn multipath_and_single_routes() {
        let multipath = r#"[{"dst":"203.0.113.10","protocol":"bird","metric":32,"flags":[],"nexthops":[{"gateway":"192.0.2.12","dev":"eth0","weight":1,"flags":[]},{"gateway":"192.0.2.11","dev":"eth0","weight":1,"flags":[]}]}]"#;
        assert_eq!(
            parse_gateways(multipath),
            [
                "192.0.2.11".parse::<IpAddr>().unwrap(),
                "192.0.2.12".parse().unwrap()
            ]
        );
        let single = r#"[{"dst":"203.0.113.10","gateway":"192.0.2.11","dev":"eth0","protocol":"bird","metric":32,"flags":[]}]"#;
        assert_eq!(
            parse_gateways(single),
            ["192.0.2.11".parse::<IpAddr>().unwrap()]
        );
        assert!(parse_gateways("[]").is_empty());
    }
}
