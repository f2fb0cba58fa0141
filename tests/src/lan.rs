//! A LAN made of Linux network namespaces, for layer-2 tests: a switch namespace holding a
//! bridge, and hosts joined to it by veth pairs, probed with the kernel's own clients (`ping`,
//! `arping`, `ndisc6`, `ip neigh`).
//!
//! Namespaces are named `hl-<pid>-<lan>-<host>` (the switch is `hl-<pid>-<lan>-sw`), so that
//! tests running in parallel never meet as long as their LANs have different names. A [`Lan`]
//! deletes its namespaces when dropped, also when its test panics, and [`Lan::new`] deletes those
//! left by processes that died before they could.
//!
//! Host `n` has `192.0.2.<n>/24` and `2001:db8::<n>/64` on its `eth0` (only the latter on an
//! IPv6-only LAN): documentation addresses only, and nothing is configured outside the
//! namespaces made here.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{ChildStderr, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The start of every namespace name made here; the owner's PID follows.
const PREFIX: &str = "hl-";
/// A host's end of its veth pair.
pub(crate) const ETH: &str = "eth0";
/// How long a capture may lag behind the tool whose packets it watches.
const CAPTURE_LAG: Duration = Duration::from_secs(2);

/// A switch namespace holding a Linux bridge, and hosts each joined to it by a veth pair (the
/// host end is `eth0` in the host's namespace, the switch end `v<n>` in the switch's).
pub struct Lan {
    prefix: String,
    switch: String,
    family: Family,
    hosts: Vec<Host>,
    /// Every namespace made so far, deleted on drop.
    namespaces: Vec<String>,
}

/// Which addresses the hosts of a [`Lan`] have on `eth0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// An IPv4 and an IPv6 address.
    DualStack,
    /// Only an IPv6 address (and link-local ones), as on the nodes of an IPv6-only cluster.
    Ipv6Only,
}

/// A host on a [`Lan`]: a network namespace with `eth0` on the LAN.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub netns: String,
    /// `02:00:00:00:00:<n in hex>`, lowercase as `ip`, `arping` and `ndisc6` print it.
    pub mac: String,
    /// On `eth0` only if `family` is [`Family::DualStack`].
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub family: Family,
}

/// A neighbour advertisement for the address a host solicited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborAdvert {
    /// The target link-layer address it carries.
    pub mac: String,
    pub solicited: bool,
    pub override_: bool,
}

/// A host's neighbour cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// None while the address is being resolved or has failed to.
    pub mac: Option<String>,
    /// As `ip neigh` prints it: `REACHABLE`, `STALE`, `FAILED`...
    pub state: String,
}

impl Lan {
    /// An empty LAN. `name` (letters, digits, `-`) must be unique among the LANs of this process.
    pub fn new(name: &str) -> Lan {
        Lan::with_family(name, Family::DualStack)
    }

    /// An empty LAN whose hosts get the addresses of `family`.
    pub fn with_family(name: &str, family: Family) -> Lan {
        check_name(name);
        remove_leftovers();
        let prefix = format!("{PREFIX}{}-{name}-", std::process::id());
        let mut lan = Lan {
            switch: format!("{prefix}sw"),
            prefix,
            family,
            hosts: Vec::new(),
            namespaces: Vec::new(),
        };
        let switch = lan.switch.clone();
        lan.add_netns(&switch);
        // The switch only forwards frames: without IPv6 its ports send no router solicitations
        // or MLD reports into the hosts' captures.
        sysctl(
            &switch,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        // Without multicast snooping the bridge floods every solicitation to every port, as a
        // plain switch does, whichever multicast groups the hosts have joined.
        ip_n(&switch, "link add br0 type bridge mcast_snooping 0");
        ip_n(&switch, "link set br0 up");
        lan
    }

    /// Adds host `n` (1 to 254, unique on the LAN): `eth0` up with `192.0.2.<n>/24` (unless the
    /// LAN is IPv6-only), `2001:db8::<n>/64` (n's decimal digits, as in the IPv4 address) and MAC
    /// `02:00:00:00:00:<n in hex>`, loopback up. IPv6 duplicate address detection is off on
    /// `eth0`, so that addresses are usable at once, and addresses stay while the link is down;
    /// everything else is as the kernel has it.
    pub fn add_host(&mut self, name: &str, n: u8) -> Host {
        check_name(name);
        assert!(
            name != "sw" && self.hosts.iter().all(|h| h.name != name),
            "{}: host name {name:?} is taken",
            self.prefix
        );
        assert!(
            (1..=254).contains(&n) && self.hosts.iter().all(|h| h.ipv4.octets()[3] != n),
            "{}: host number {n} is out of 1..=254 or taken",
            self.prefix
        );
        let v6_suffix = u16::from_str_radix(&n.to_string(), 16).expect("at most 3 hex digits");
        let host = Host {
            name: name.to_string(),
            netns: format!("{}{name}", self.prefix),
            mac: format!("02:00:00:00:00:{n:02x}"),
            ipv4: Ipv4Addr::new(192, 0, 2, n),
            ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, v6_suffix),
            family: self.family,
        };
        self.add_netns(&host.netns);
        let port = format!("v{n}");
        let veth = format!(
            "link add {port} type veth peer name {ETH} address {}",
            host.mac
        );
        ip_n(&self.switch, &format!("{veth} netns {}", host.netns));
        ip_n(&self.switch, &format!("link set {port} master br0 up"));
        // By default the kernel drops a link's IPv6 addresses when it goes down; keeping them
        // lets link_up restore the host as it was.
        sysctl(
            &host.netns,
            &[
                "net.ipv6.conf.eth0.accept_dad=0",
                "net.ipv6.conf.eth0.keep_addr_on_down=1",
            ],
        );
        ip_n(&host.netns, "link set lo up");
        if self.family == Family::DualStack {
            host.add_address(&format!("{}/24", host.ipv4));
        }
        host.add_address(&format!("{}/64", host.ipv6));
        host.link_up();
        self.hosts.push(host.clone());
        host
    }

    /// Adds a namespace `name` (unique on the LAN) behind `host`, not on the LAN itself: a veth
    /// pair joins its `eth0` to `port` in the host's namespace; both ends are down and without
    /// addresses, loopback is up. For the networks a host routes to, such as a node's pods.
    /// Returns the namespace's name; it is deleted with the LAN.
    pub fn add_behind(&mut self, host: &Host, name: &str, port: &str) -> String {
        check_name(name);
        let netns = format!("{}{name}", self.prefix);
        assert!(
            !self.namespaces.contains(&netns),
            "{}: name {name:?} is taken",
            self.prefix
        );
        self.add_netns(&netns);
        ip_n(
            &host.netns,
            &format!("link add {port} type veth peer name {ETH} netns {netns}"),
        );
        ip_n(&netns, "link set lo up");
        netns
    }

    /// Joins `host` to the switch by one more interface, `eth<k>` (k from 1 to 9), up and
    /// without addresses of its own, with MAC `02:00:00:00:0<k>:<n in hex>`; returns the MAC.
    /// For nodes with two links on one segment, or an interface an advertisement names.
    pub fn add_interface(&mut self, host: &Host, interface: &str) -> String {
        let k: u8 = interface
            .strip_prefix("eth")
            .and_then(|k| k.parse().ok())
            .filter(|k| (1..=9).contains(k))
            .unwrap_or_else(|| panic!("interface {interface:?} is not eth1 to eth9"));
        let n = host.ipv4.octets()[3];
        let mac = format!("02:00:00:00:{k:02x}:{n:02x}");
        let port = format!("v{n}-{interface}");
        ip_n(
            &self.switch,
            &format!(
                "link add {port} type veth peer name {interface} address {mac} netns {}",
                host.netns
            ),
        );
        ip_n(&self.switch, &format!("link set {port} master br0 up"));
        sysctl(
            &host.netns,
            &[
                &format!("net.ipv6.conf.{interface}.accept_dad=0"),
                &format!("net.ipv6.conf.{interface}.keep_addr_on_down=1"),
            ],
        );
        host.interface_up(interface);
        mac
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("{}: no host {name:?}", self.prefix))
    }

    fn add_netns(&mut self, netns: &str) {
        // The first `ip netns add` makes /run/netns a mount point; two first ones at once can
        // stack two mounts and hide the namespaces made under the lower one.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        run(Command::new("ip").args(["netns", "add", netns]), netns);
        self.namespaces.push(netns.to_string());
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth ends and the bridge with it.
        for netns in self.namespaces.iter().rev() {
            if let Err(e) = remove_netns(netns) {
                eprintln!("removing network namespace {netns}: {e}");
            }
        }
    }
}

impl Host {
    /// `program` run in this host's namespace (`ip netns exec <netns> program`); add arguments.
    pub fn command(&self, program: &str) -> Command {
        netns_exec(&self.netns, program)
    }

    /// Runs `program args` in this host's namespace and returns its stdout; panics with its
    /// stderr if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        run(self.command(program).args(args), &self.netns)
    }

    /// Adds an address to `eth0`, e.g. `"192.0.2.100/24"`; the host answers ARP and NDP for it.
    pub fn add_address(&self, cidr: &str) {
        ip_n(&self.netns, &format!("address add {cidr} dev {ETH}"));
    }

    pub fn link_down(&self) {
        self.interface_down(ETH);
    }

    pub fn link_up(&self) {
        self.interface_up(ETH);
    }

    /// Takes one of the host's interfaces down (`eth0`, or one from [`Lan::add_interface`]).
    pub fn interface_down(&self, interface: &str) {
        ip_n(&self.netns, &format!("link set {interface} down"));
    }

    pub fn interface_up(&self, interface: &str) {
        ip_n(&self.netns, &format!("link set {interface} up"));
    }

    /// The MACs that answered `arping -c count -w timeout ip` from `eth0`, in order, with
    /// repeats: one per reply, so two hosts answering for `ip` show as two MACs. Thomas Habets'
    /// arping sends `count` requests and reports every reply until `timeout`; iputils' stops
    /// after `count` replies (and waits whole seconds).
    pub fn arping(&self, ip: Ipv4Addr, count: u32, timeout: Duration) -> Vec<String> {
        let mut command = self.command("arping");
        match arping_variant() {
            Arping::Habets => {
                command.args(["-i", ETH, "-w", &format!("{:.3}", timeout.as_secs_f64())])
            }
            Arping::Iputils => {
                let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
                command.args(["-I", ETH, "-w", &seconds.max(1).to_string()])
            }
        };
        command.args(["-c", &count.to_string(), &ip.to_string()]);
        let output = output(&mut command, &self.netns);
        // Both exit with 1, and say nothing on stderr, when fewer replies came than hoped for.
        assert!(
            output.status.success() || output.stderr.is_empty(),
            "{command:?} in {} failed ({}): {}",
            self.netns,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        parse_arping(&String::from_utf8_lossy(&output.stdout))
    }

    /// The neighbour advertisements `ndisc6` received for `ip` on `eth0` within `timeout`
    /// (one solicitation, every answer), with their target link-layer address and S/O flags;
    /// empty when nothing answered.
    pub fn ndisc(&self, ip: Ipv6Addr, timeout: Duration) -> Vec<NeighborAdvert> {
        // ndisc6 prints only the target link-layer address: the flags come from a capture of
        // the same advertisements.
        let mut capture = Capture::start(self, "icmp6 and ip6[40] == 136");
        let mut command = self.command("ndisc6");
        command.args(["-n", "-m", "-r", "1", "-w"]);
        command.args([
            timeout.as_millis().to_string(),
            ip.to_string(),
            ETH.to_string(),
        ]);
        let output = output(&mut command, &self.netns);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() || stdout.contains("No response."),
            "{command:?} in {} failed ({}): {} {}",
            self.netns,
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let macs = parse_ndisc6(&stdout);
        let deadline = Instant::now() + CAPTURE_LAG;
        loop {
            let captured = parse_adverts(&capture.text, ip);
            if let Some(adverts) = pair(&macs, &captured) {
                return adverts;
            }
            assert!(
                capture.read_line(deadline),
                "in {}: ndisc6 saw advertisements from {macs:?} for {ip}, tcpdump only \
                 {captured:?}:\n{}",
                self.netns,
                capture.text
            );
        }
    }

    /// This host's neighbour entry for `ip` on `eth0`, if it has one.
    pub fn neighbour(&self, ip: IpAddr) -> Option<Neighbour> {
        let json = ip_n(&self.netns, &format!("-j neighbour show {ip} dev {ETH}"));
        parse_neighbour(&json).unwrap_or_else(|e| panic!("ip neigh in {}: {e}: {json}", self.netns))
    }

    /// Empties this host's neighbour cache (but for permanent entries).
    pub fn flush_neighbours(&self) {
        ip_n(&self.netns, &format!("neighbour flush dev {ETH}"));
    }
}

/// A running `tcpdump` on a host's `eth0`, killed when dropped.
pub(crate) struct Capture {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    /// What it printed so far.
    pub(crate) text: String,
    // Kept open: tcpdump would die of SIGPIPE writing to a closed stderr.
    stderr: BufReader<ChildStderr>,
}

impl Capture {
    /// Starts capturing the packets that `filter` selects among those `eth0` receives, and
    /// returns once tcpdump listens.
    fn start(host: &Host, filter: &str) -> Capture {
        Capture::start_with(host, &["-Q", "in"], filter)
    }

    /// As [`Capture::start`], with more tcpdump `options` (`-Q inout`, `-e`...).
    pub(crate) fn start_with(host: &Host, options: &[&str], filter: &str) -> Capture {
        let mut command = host.command("tcpdump");
        command
            .args(format!("-i {ETH} -l -n -v --immediate-mode").split(' '))
            .args(options)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("{command:?}");
        let mut child =
            crate::spawn_tied(command).unwrap_or_else(|e| panic!("{shown} in {}: {e}", host.netns));
        let stdout = child.stdout.take().expect("a piped stdout");
        let stderr = child.stderr.take().expect("a piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut capture = Capture {
            child,
            lines,
            text: String::new(),
            stderr: BufReader::new(stderr),
        };
        // tcpdump says so once its filter is in place; when it fails, it says why and exits.
        let mut said = String::new();
        while !said.contains("listening on") {
            let read = capture.stderr.read_line(&mut said).unwrap_or(0);
            assert!(read > 0, "{shown} in {}: {said}", host.netns);
        }
        capture
    }

    /// Appends the next line tcpdump prints to `text`; false if none came before `deadline`.
    pub(crate) fn read_line(&mut self, deadline: Instant) -> bool {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.text.push_str(&line);
                self.text.push('\n');
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // `ip netns exec` execs tcpdump: the child is tcpdump itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Arping {
    Habets,
    Iputils,
}

/// Which arping is installed: Debian's `arping` package is Thomas Habets', `iputils-arping`
/// the other; their options and output differ.
fn arping_variant() -> &'static Arping {
    static VARIANT: OnceLock<Arping> = OnceLock::new();
    VARIANT.get_or_init(|| {
        // `-V` prints iputils' version; Habets' arping wants a VLAN after it and prints usage.
        let output = Command::new("arping")
            .arg("-V")
            .output()
            .unwrap_or_else(|e| panic!("running arping -V: {e}"));
        let said =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        if said.contains("Habets") {
            Arping::Habets
        } else if said.contains("iputils") {
            Arping::Iputils
        } else {
            panic!("arping -V: neither Habets' nor iputils' arping: {said}")
        }
    })
}

/// The replying MACs, lowercase, one per reply.
fn parse_arping(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| {
            if let Some((_, reply)) = line.split_once(" reply from ") {
                // iputils: "Unicast reply from 192.0.2.2 [02:00:00:00:00:0A]  0.537ms"
                let (_, mac) = reply.split_once('[')?;
                Some(mac.split_once(']')?.0.to_ascii_lowercase())
            } else {
                // Habets: "42 bytes from 02:00:00:00:00:0a (192.0.2.2): index=0 time=8.900 usec"
                let (_, reply) = line.split_once(" bytes from ")?;
                Some(reply.split_whitespace().next()?.to_ascii_lowercase())
            }
        })
        .collect()
}

/// The target link-layer addresses ndisc6 printed, lowercase, in order.
fn parse_ndisc6(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("Target link-layer address: "))
        .map(|mac| mac.trim().to_ascii_lowercase())
        .collect()
}

/// The advertisements for `target` in `tcpdump -v` output that carry a target link-layer
/// address (the ones ndisc6 reports).
fn parse_adverts(tcpdump: &str, target: Ipv6Addr) -> Vec<NeighborAdvert> {
    let mut adverts = Vec::new();
    // The flags of an advertisement for target whose address option has not come yet.
    let mut flags: Option<(bool, bool)> = None;
    for line in tcpdump.lines() {
        if let Some((_, advert)) = line.split_once("neighbor advertisement, ") {
            flags = advert_flags(advert)
                .filter(|(tgt, ..)| *tgt == target)
                .map(|(_, s, o)| (s, o));
        } else if let Some((_, mac)) = line.split_once("destination link-address option (2)")
            && let Some((solicited, override_)) = flags.take()
        {
            // ", length 8 (1): 02:00:00:00:00:02"
            let mac = mac.rsplit(": ").next().unwrap_or_default();
            adverts.push(NeighborAdvert {
                mac: mac.trim().to_ascii_lowercase(),
                solicited,
                override_,
            });
        }
    }
    adverts
}

/// The target and S/O flags in "length 32, tgt is 2001:db8::2, Flags [solicited, override]".
pub(crate) fn advert_flags(advert: &str) -> Option<(Ipv6Addr, bool, bool)> {
    let (_, rest) = advert.split_once("tgt is ")?;
    let (target, rest) = rest.split_once(',')?;
    let (_, names) = rest.split_once("Flags [")?;
    let names = names.split_once(']')?.0;
    let target = target.parse().ok()?;
    Some((
        target,
        names.contains("solicited"),
        names.contains("override"),
    ))
}

/// The captured advertisements that ndisc6's `macs` were, in ndisc6's order; None while some
/// of them have not been captured.
fn pair(macs: &[String], captured: &[NeighborAdvert]) -> Option<Vec<NeighborAdvert>> {
    let mut left = captured.to_vec();
    macs.iter()
        .map(|mac| {
            let i = left.iter().position(|a| &a.mac == mac)?;
            Some(left.remove(i))
        })
        .collect()
}

/// The entry in `ip -j neighbour show <ip> dev <dev>` output, if any.
fn parse_neighbour(json: &str) -> Result<Option<Neighbour>, String> {
    let entries: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let Some(entry) = entries.as_array().and_then(|a| a.first()) else {
        return Ok(None);
    };
    let states: Vec<&str> = entry["state"]
        .as_array()
        .ok_or("an entry without a state")?
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    Ok(Some(Neighbour {
        mac: entry["lladdr"].as_str().map(str::to_ascii_lowercase),
        state: states.join(","),
    }))
}

fn check_name(name: &str) {
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{name:?}: LAN and host names are letters, digits and '-'"
    );
}

pub(crate) fn netns_exec(netns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns, program]);
    command
}

/// `ip -n <netns> <args>`, `args` split on spaces (`-n` is cheaper than `ip netns exec`: no
/// mount namespace).
pub(crate) fn ip_n(netns: &str, args: &str) -> String {
    run(
        Command::new("ip")
            .args(["-n", netns])
            .args(args.split_whitespace()),
        netns,
    )
}

pub(crate) fn sysctl(netns: &str, settings: &[&str]) {
    run(netns_exec(netns, "sysctl").arg("-qw").args(settings), netns);
}

/// Runs `command`, which acts in `netns`, and returns its stdout; panics with its stderr if it
/// fails.
fn run(command: &mut Command, netns: &str) -> String {
    let output = output(command, netns);
    assert!(
        output.status.success(),
        "{command:?} in {netns} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn output(command: &mut Command, netns: &str) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} in {netns}: {e}"))
}

/// The network namespaces that exist, by name.
fn netns_list() -> Vec<String> {
    run(
        Command::new("ip").args(["netns", "list"]),
        "the root namespace",
    )
    .lines()
    // "hl-42-lan-sw (id: 3)"
    .filter_map(|line| line.split_whitespace().next())
    .map(str::to_string)
    .collect()
}

/// Deletes the namespaces made here by processes that are gone (a crashed or killed test run).
/// Deletes the namespaces (and kills the processes in them) that LANs of processes that are
/// gone left behind.
pub fn remove_leftovers() {
    for netns in netns_list() {
        if owner(&netns).is_none() || owner_alive(&netns) {
            continue;
        }
        // Not a reason to fail this test's LAN; and another process may be removing the same
        // leftover.
        if let Err(e) = remove_netns(&netns)
            && netns_list().contains(&netns)
        {
            eprintln!("removing leftover network namespace {netns}: {e}");
        }
    }
}

/// Whether a name made here (a namespace's, or a lab node's named after it) belongs to a
/// process that is still running; names not made here count as alive, never to be removed.
pub fn owner_alive(name: &str) -> bool {
    owner(name).is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// The PID in a namespace name made here.
fn owner(netns: &str) -> Option<u32> {
    netns.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn remove_netns(netns: &str) -> Result<(), String> {
    // A process left inside (a server a failing test started, say) would keep the namespace
    // alive, unnamed, for as long as it runs.
    let pids = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .map_err(|e| format!("ip netns pids: {e}"))?;
    let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !pids.is_empty() {
        // Some may have exited since: what matters is that none is left.
        let _ = Command::new("kill").arg("-KILL").args(&pids).output();
    }
    let deleted = Command::new("ip")
        .args(["netns", "delete", netns])
        .output()
        .map_err(|e| format!("ip netns delete: {e}"))?;
    if deleted.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&deleted.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn habets_arping_replies() {
        let stdout = "ARPING 192.0.2.100
42 bytes from 02:00:00:00:00:03 (192.0.2.100): index=0 time=9.020 usec
42 bytes from 02:00:00:00:00:0A (192.0.2.100): index=1 time=47.510 usec

--- 192.0.2.100 statistics ---
2 packets transmitted, 2 packets received,   0% unanswered (0 extra)
rtt min/avg/max/std-dev = 0.005/0.022/0.048/0.017 ms
";
        assert_eq!(
            parse_arping(stdout),
            ["02:00:00:00:00:03", "02:00:00:00:00:0a"]
        );
    }

    #[test]
    fn habets_arping_without_replies() {
        let stdout = "ARPING 192.0.2.77
Timeout
Timeout

--- 192.0.2.77 statistics ---
2 packets transmitted, 0 packets received, 100% unanswered (0 extra)
";
        assert!(parse_arping(stdout).is_empty());
    }

    #[test]
    fn iputils_arping_replies() {
        let stdout = "ARPING 192.0.2.100 from 192.0.2.1 eth0
Unicast reply from 192.0.2.100 [02:00:00:00:00:AB]  0.537ms
Unicast reply from 192.0.2.100 [02:00:00:00:00:02]  0.543ms
Sent 1 probes (1 broadcast(s))
Received 2 response(s)
";
        assert_eq!(
            parse_arping(stdout),
            ["02:00:00:00:00:ab", "02:00:00:00:00:02"]
        );
        let silent = "ARPING 192.0.2.77 from 192.0.2.1 eth0
Sent 2 probes (2 broadcast(s))
Received 0 response(s)
";
        assert!(parse_arping(silent).is_empty());
    }

    #[test]
    fn ndisc6_answers() {
        let two = "Soliciting 2001:db8::100 (2001:db8::100) on eth0...
Target link-layer address: 02:00:00:00:00:03
 from 2001:db8::100
Target link-layer address: 02:00:00:00:00:0A
 from 2001:db8::100
";
        assert_eq!(
            parse_ndisc6(two),
            ["02:00:00:00:00:03", "02:00:00:00:00:0a"]
        );
        let none = "Soliciting 2001:db8::77 (2001:db8::77) on eth0...
Timed out.
No response.
";
        assert!(parse_ndisc6(none).is_empty());
    }

    /// `tcpdump -v` output: two answers for 2001:db8::100, one for another target, an
    /// unsolicited one.
    const TCPDUMP: &str = "\
00:38:12.705948 IP6 (hlim 255, next-header ICMPv6 (58) payload length: 32) 2001:db8::100 > fe80::ff:fe00:1: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::100, Flags [solicited, override]
\t  destination link-address option (2), length 8 (1): 02:00:00:00:00:03
00:38:12.705956 IP6 (hlim 255, next-header ICMPv6 (58) payload length: 32) 2001:db8::100 > fe80::ff:fe00:1: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::100, Flags [solicited]
\t  destination link-address option (2), length 8 (1): 02:00:00:00:00:02
00:40:11.925012 IP6 (hlim 255, next-header ICMPv6 (58) payload length: 32) fe80::ff:fe00:2 > fe80::ff:fe00:1: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is fe80::ff:fe00:2, Flags [solicited, override]
\t  destination link-address option (2), length 8 (1): 02:00:00:00:00:02
00:40:12.000000 IP6 (hlim 255, next-header ICMPv6 (58) payload length: 32) 2001:db8::100 > ff02::1: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::100, Flags [override]
\t  destination link-address option (2), length 8 (1): 02:00:00:00:00:04
";

    fn advert(mac: &str, solicited: bool, override_: bool) -> NeighborAdvert {
        NeighborAdvert {
            mac: mac.to_string(),
            solicited,
            override_,
        }
    }

    #[test]
    fn tcpdump_adverts_for_a_target() {
        assert_eq!(
            parse_adverts(TCPDUMP, "2001:db8::100".parse().unwrap()),
            [
                advert("02:00:00:00:00:03", true, true),
                advert("02:00:00:00:00:02", true, false),
                advert("02:00:00:00:00:04", false, true),
            ]
        );
        assert!(parse_adverts(TCPDUMP, "2001:db8::2".parse().unwrap()).is_empty());
    }

    #[test]
    fn ndisc6_answers_are_paired_with_captured_ones() {
        let captured = parse_adverts(TCPDUMP, "2001:db8::100".parse().unwrap());
        let macs = [
            "02:00:00:00:00:02".to_string(),
            "02:00:00:00:00:03".to_string(),
        ];
        assert_eq!(
            pair(&macs, &captured),
            Some(vec![
                advert("02:00:00:00:00:02", true, false),
                advert("02:00:00:00:00:03", true, true),
            ])
        );
        // A second answer from the same MAC that the capture has not shown yet.
        let twice = [macs[0].clone(), macs[0].clone()];
        assert_eq!(pair(&twice, &captured), None);
        assert_eq!(pair(&[], &captured), Some(vec![]));
    }

    #[test]
    fn neighbour_entries() {
        assert_eq!(
            parse_neighbour(
                r#"[{"dst":"192.0.2.2","lladdr":"02:00:00:00:00:0A","state":["REACHABLE"]}]"#
            ),
            Ok(Some(Neighbour {
                mac: Some("02:00:00:00:00:0a".to_string()),
                state: "REACHABLE".to_string()
            }))
        );
        assert_eq!(
            parse_neighbour(r#"[{"dst":"2001:db8::77","state":["FAILED"]}]"#),
            Ok(Some(Neighbour {
                mac: None,
                state: "FAILED".to_string()
            }))
        );
        assert_eq!(parse_neighbour("[]\n"), Ok(None));
    }

    #[test]
    fn owners_of_namespace_names() {
        assert_eq!(owner("hl-4242-fail-over-sw"), Some(4242));
        assert_eq!(owner("hl-x-sw"), None);
        assert_eq!(owner("other-4242"), None);
    }
}
