//! Who answers each request for an address while something changes: a host asks for it at a
//! steady pace (ARP requests for IPv4, Neighbor Solicitations for IPv6) and captures, both ways,
//! every request and every answer addressed to it. Two MACs answering one request is two nodes
//! answering at once; a request nobody answered is a gap.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lan::{Capture, ETH, Host, advert_flags};

/// The pace of the requests.
const EVERY: Duration = Duration::from_millis(50);

/// Requests for one address going out of a host, and the capture of what answers them.
pub struct AnswerWatch {
    ip: IpAddr,
    host_mac: String,
    capture: Capture,
    asking: Asking,
}

/// What sends the requests: one `arping` for IPv4; `ndisc6` after `ndisc6` for IPv6 (it sends
/// one solicitation per run).
enum Asking {
    Arping(Child),
    Ndisc6 {
        stop: Arc<AtomicBool>,
        thread: JoinHandle<()>,
    },
}

impl Host {
    /// Starts asking for `ip` every 50 ms from `eth0`, until [`AnswerWatch::stop`].
    pub fn watch_answers(&self, ip: IpAddr) -> AnswerWatch {
        let filter = match ip {
            IpAddr::V4(_) => "arp".to_owned(),
            IpAddr::V6(_) => "icmp6 and (ip6[40] == 135 or ip6[40] == 136)".to_owned(),
        };
        let capture = Capture::start_with(self, &["-Q", "inout", "-e"], &filter);
        let every = format!("{:.3}", EVERY.as_secs_f64());
        let asking = match ip {
            IpAddr::V4(_) => {
                let mut command = self.command("arping");
                command
                    .args(["-i", ETH, "-W", &every, "-c", "1000000", &ip.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Asking::Arping(crate::spawn_tied(command).expect("starting arping"))
            }
            IpAddr::V6(_) => {
                let stop = Arc::new(AtomicBool::new(false));
                let host = self.clone();
                let stopped = stop.clone();
                let wait = EVERY.as_millis().to_string();
                let thread = std::thread::spawn(move || {
                    while !stopped.load(Ordering::Relaxed) {
                        let _ = host
                            .command("ndisc6")
                            .args(["-n", "-m", "-r", "1", "-w", &wait, &ip.to_string(), ETH])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status();
                    }
                });
                Asking::Ndisc6 { stop, thread }
            }
        };
        AnswerWatch {
            ip,
            host_mac: self.mac.clone(),
            capture,
            asking,
        }
    }
}

impl AnswerWatch {
    /// Stops asking and returns, for every request sent, the MACs that answered it, in order.
    pub fn stop(mut self) -> Vec<BTreeSet<String>> {
        match self.asking {
            Asking::Arping(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Asking::Ndisc6 { stop, thread } => {
                stop.store(true, Ordering::Relaxed);
                thread.join().expect("the ndisc6 loop");
            }
        }
        // The last answers may still be on their way through tcpdump.
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.capture.read_line(deadline) {}
        answers(&self.capture.text, self.ip, &self.host_mac)
    }
}

/// The MACs that answered each request for `ip` in tcpdump's `-e -v` output, in order: a
/// request opens a window, and every answer addressed to `host_mac` until the next request
/// belongs to it. Gratuitous announcements are no answers.
pub fn answers(tcpdump: &str, ip: IpAddr, host_mac: &str) -> Vec<BTreeSet<String>> {
    let mut windows: Vec<BTreeSet<String>> = Vec::new();
    let mut lines = tcpdump.lines();
    while let Some(line) = lines.next() {
        let Some((source, destination)) = ethernet(line) else {
            continue;
        };
        let answered_by = match ip {
            IpAddr::V4(v4) => {
                if line.contains(&format!("Request who-has {v4} ")) && source == host_mac {
                    windows.push(BTreeSet::new());
                    continue;
                }
                line.split_once(&format!("Reply {v4} is-at "))
                    .and_then(|(_, rest)| rest.split(',').next())
                    .map(str::to_owned)
            }
            IpAddr::V6(v6) => {
                if line.contains(&format!("neighbor solicitation, length 32, who has {v6}"))
                    && source == host_mac
                {
                    windows.push(BTreeSet::new());
                    continue;
                }
                // The advertised MAC is on the option line that follows.
                match line.split_once("neighbor advertisement, ") {
                    Some((_, advert)) if advert_flags(advert) == Some((v6, true, true)) => lines
                        .next()
                        .and_then(|option| option.split_once("destination link-address option"))
                        .and_then(|(_, mac)| mac.rsplit(": ").next())
                        .map(|mac| mac.trim().to_owned()),
                    _ => None,
                }
            }
        };
        if let Some(mac) = answered_by
            && destination == host_mac
            && let Some(window) = windows.last_mut()
        {
            window.insert(mac.to_ascii_lowercase());
        }
    }
    windows
}

/// The source and destination MACs of a `tcpdump -e` line.
fn ethernet(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once(' ')?;
    let (source, rest) = rest.split_once(" > ")?;
    let (destination, _) = rest.split_once(',')?;
    Some((source, destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "02:00:00:00:00:64";

    #[test]
    fn each_arp_request_gets_the_replies_that_follow_it_and_gratuitous_ones_do_not_count() {
        let tcpdump = "\
14:23:24.866932 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 58: Ethernet (len 6), IPv4 (len 4), Request who-has 192.0.2.10 tell 192.0.2.100, length 44
14:23:24.866969 02:00:00:00:00:0a > 02:00:00:00:00:64, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), Reply 192.0.2.10 is-at 02:00:00:00:00:0a, length 28
14:23:24.866990 02:00:00:00:00:0b > 02:00:00:00:00:64, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), Reply 192.0.2.10 is-at 02:00:00:00:00:0b, length 28
14:23:24.900000 02:00:00:00:00:0b > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), Reply 192.0.2.10 is-at 02:00:00:00:00:0b, length 28
14:23:24.917916 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 58: Ethernet (len 6), IPv4 (len 4), Request who-has 192.0.2.10 tell 192.0.2.100, length 44
14:23:24.967916 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 58: Ethernet (len 6), IPv4 (len 4), Request who-has 192.0.2.10 tell 192.0.2.100, length 44
14:23:24.967941 02:00:00:00:00:0b > 02:00:00:00:00:64, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), Reply 192.0.2.10 is-at 02:00:00:00:00:0B, length 28
14:23:25.096729 02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 58: Ethernet (len 6), IPv4 (len 4), Request who-has 192.0.2.10 (ff:ff:ff:ff:ff:ff) tell 192.0.2.10, length 44
";
        let a = "02:00:00:00:00:0a".to_owned();
        let b = "02:00:00:00:00:0b".to_owned();
        assert_eq!(
            answers(tcpdump, "192.0.2.10".parse().unwrap(), CLIENT),
            vec![
                BTreeSet::from([a, b.clone()]),
                BTreeSet::new(),
                BTreeSet::from([b]),
            ]
        );
    }

    #[test]
    fn each_solicitation_gets_the_solicited_advertisements_that_follow_it() {
        let tcpdump = "\
14:23:25.010304 02:00:00:00:00:64 > 33:33:ff:00:00:10, ethertype IPv6 (0x86dd), length 86: (flowlabel 0xbb434, hlim 255, next-header ICMPv6 (58) payload length: 32) fe80::ff:fe00:64 > ff02::1:ff00:10: [icmp6 sum ok] ICMP6, neighbor solicitation, length 32, who has 2001:db8::10
\t  source link-address option (1), length 8 (1): 02:00:00:00:00:64
14:23:25.010335 02:00:00:00:00:0a > 02:00:00:00:00:64, ethertype IPv6 (0x86dd), length 86: (hlim 255, next-header ICMPv6 (58) payload length: 32) 2001:db8::10 > fe80::ff:fe00:64: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::10, Flags [solicited, override]
\t  destination link-address option (2), length 8 (1): 02:00:00:00:00:0a
14:23:25.010400 02:00:00:00:00:0b > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86: (hlim 255, next-header ICMPv6 (58) payload length: 32) 2001:db8::10 > ff02::1: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is 2001:db8::10, Flags [override]
\t  destination link-address option (2), length 8 (1): 02:00:00:00:00:0b
14:23:25.060304 02:00:00:00:00:64 > 33:33:ff:00:00:10, ethertype IPv6 (0x86dd), length 86: (flowlabel 0xbb434, hlim 255, next-header ICMPv6 (58) payload length: 32) fe80::ff:fe00:64 > ff02::1:ff00:10: [icmp6 sum ok] ICMP6, neighbor solicitation, length 32, who has 2001:db8::10
\t  source link-address option (1), length 8 (1): 02:00:00:00:00:64
";
        assert_eq!(
            answers(tcpdump, "2001:db8::10".parse().unwrap(), CLIENT),
            vec![
                BTreeSet::from(["02:00:00:00:00:0a".to_owned()]),
                BTreeSet::new()
            ]
        );
    }
}
