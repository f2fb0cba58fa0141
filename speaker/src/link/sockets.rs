//! The raw sockets the speaker answers on: an AF_PACKET socket for ARP and a raw ICMPv6 socket
//! for NDP, one of each per interface; and the netlink socket that says when an interface
//! changed. Both are filtered in the kernel, non-promiscuous,
//! non-blocking inside tokio's `AsyncFd` (no busy loop) and closed when dropped.
//!
//! Sockets of our own rather than `pnet_datalink`'s channel: its socket takes every EtherType
//! (ETH_P_ALL) with no kernel filter, so the kernel copies every frame of the interface up to
//! the speaker, and its receiver blocks in poll(2), a thread per interface. These see only what
//! their filters pass, and wait in tokio.
//!
//! The one module with `unsafe`: socket2 has no safe way to bind an AF_PACKET socket to an
//! interface (a `sockaddr_ll`) or a netlink socket to its groups (a `sockaddr_nl`), to set ICMP6_FILTER or to read ancillary data; each block says
//! why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{
    Domain, MaybeUninitSlice, MsgHdrMut, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket,
    Type,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::packet::NDP_HOP_LIMIT;

const ETH_P_ARP: u16 = 0x0806;
const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Large enough for any Ethernet frame or ICMPv6 message we care about.
pub const BUFFER: usize = 1600;

/// ARP frames (whole Ethernet frames) on one interface.
pub struct ArpSocket {
    fd: AsyncFd<Socket>,
}

impl ArpSocket {
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))),
        )?;
        // Classic BPF: keep ARP over Ethernet/IPv4 (htype 1, ptype 0x0800), drop the rest in
        // the kernel. Offsets are into the Ethernet frame.
        let filter = [
            SockFilter::new(0x28, 0, 0, 12),          // ldh [12]: EtherType
            SockFilter::new(0x15, 0, 5, 0x0806),      // jeq ARP, else drop
            SockFilter::new(0x28, 0, 0, 14),          // ldh [14]: hardware type
            SockFilter::new(0x15, 0, 3, 1),           // jeq Ethernet, else drop
            SockFilter::new(0x28, 0, 0, 16),          // ldh [16]: protocol type
            SockFilter::new(0x15, 0, 1, 0x0800),      // jeq IPv4, else drop
            SockFilter::new(0x06, 0, 0, 0x0004_0000), // ret: accept
            SockFilter::new(0x06, 0, 0, 0),           // ret: drop
        ];
        socket.attach_filter(&filter)?;
        // Not our own transmissions (Linux 4.20+); older kernels just deliver them too.
        let _ = set_int_option(&socket, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
        socket.bind(&packet_address(ifindex, ETH_P_ARP))?;
        socket.set_nonblocking(true)?;
        Ok(ArpSocket {
            fd: register(socket)?,
        })
    }

    /// The next ARP frame that arrives, read into `buf` (no allocation on the reply path).
    pub async fn recv<'b>(&self, buf: &'b mut [u8; BUFFER]) -> io::Result<&'b [u8]> {
        let n = self
            .fd
            .async_io(Interest::READABLE, |s| s.recv(uninit(buf)))
            .await?;
        Ok(&buf[..n])
    }

    /// Sends a whole Ethernet frame out of the interface.
    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |s| s.send(frame))
            .await
            .map(drop)
    }
}

/// Whole Ethernet frames out of one interface (it receives nothing: protocol 0). NDP goes out
/// this way when it must come from an address the interface does not hold.
pub struct FrameSocket {
    fd: AsyncFd<Socket>,
}

impl FrameSocket {
    pub fn open(ifindex: u32) -> io::Result<FrameSocket> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        socket.bind(&packet_address(ifindex, 0))?;
        socket.set_nonblocking(true)?;
        Ok(FrameSocket {
            fd: register(socket)?,
        })
    }

    pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |s| s.send(frame))
            .await
            .map(drop)
    }
}

/// Neighbor Solicitations and Advertisements on one interface, and the solicited-node
/// multicast groups of the addresses answered for.
pub struct NdpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

impl NdpSocket {
    pub fn open(interface: &str, ifindex: u32) -> io::Result<NdpSocket> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        set_icmp6_filter(
            &socket,
            &[ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT],
        )?;
        // RFC 4861: NDP messages are sent with hop limit 255, so receivers know they are local.
        socket.set_unicast_hops_v6(u32::from(NDP_HOP_LIMIT))?;
        socket.set_multicast_hops_v6(u32::from(NDP_HOP_LIMIT))?;
        // ... and received ones with another are discarded: the kernel strips the IPv6 header,
        // so have it pass the hop limit beside each message (IPV6_HOPLIMIT ancillary data).
        socket.set_recv_hoplimit_v6(true)?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_nonblocking(true)?;
        Ok(NdpSocket {
            fd: register(socket)?,
            ifindex,
        })
    }

    /// Joins a multicast group (an address's solicited-node group), so the NIC passes its
    /// solicitations up. The kernel counts joins per socket, so callers join each group once.
    pub fn join(&self, group: Ipv6Addr) -> io::Result<()> {
        self.fd.get_ref().join_multicast_v6(&group, self.ifindex)
    }

    pub fn leave(&self, group: Ipv6Addr) -> io::Result<()> {
        self.fd.get_ref().leave_multicast_v6(&group, self.ifindex)
    }

    /// The next ICMPv6 message (the kernel strips the IPv6 header), read into `buf`, with the
    /// source address and hop limit of its IPv6 header. The hop limit is 0, which no NDP
    /// message is accepted with, should the kernel ever leave it out.
    pub async fn recv<'b>(
        &self,
        buf: &'b mut [u8; BUFFER],
    ) -> io::Result<(&'b [u8], Ipv6Addr, u8)> {
        let (n, source, hop_limit) = self
            .fd
            .async_io(Interest::READABLE, |s| {
                let mut from = empty_address();
                let mut control = Control([0; CONTROL_LEN]);
                let mut buffers = [MaybeUninitSlice::new(uninit(buf))];
                let mut message = MsgHdrMut::new()
                    .with_addr(&mut from)
                    .with_buffers(&mut buffers)
                    .with_control(uninit(&mut control.0));
                let n = s.recvmsg(&mut message, 0)?;
                let control_len = message.control_len();
                let source = from
                    .as_socket_ipv6()
                    .map(|a| *a.ip())
                    .unwrap_or(Ipv6Addr::UNSPECIFIED);
                Ok((n, source, hop_limit(&control, control_len).unwrap_or(0)))
            })
            .await?;
        Ok((&buf[..n], source, hop_limit))
    }

    /// Sends an ICMPv6 message; the kernel fills in the IPv6 header and the checksum.
    pub async fn send(&self, message: &[u8], to: Ipv6Addr) -> io::Result<()> {
        let scope = if is_link_local_scope(&to) {
            self.ifindex
        } else {
            0
        };
        let address = SockAddr::from(SocketAddrV6::new(to, 0, 0, scope));
        self.fd
            .async_io(Interest::WRITABLE, |s| s.send_to(message, &address))
            .await
            .map(drop)
    }
}

/// The kernel's link events (RTM_NEWLINK, RTM_DELLINK: an interface added, removed, up, down,
/// its carrier, its master, renamed). Only their arrival matters: the interfaces are then read
/// again from `/sys/class/net`, so no message is parsed.
pub struct LinkEvents {
    fd: AsyncFd<Socket>,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_ROUTE)),
        )?;
        let mut storage = SockAddrStorage::zeroed();
        let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: SockAddrStorage is large enough and suitably aligned for any socket address,
        // sockaddr_nl included; every field written is a plain integer.
        unsafe {
            let address = storage.view_as::<libc::sockaddr_nl>();
            address.nl_family = libc::AF_NETLINK as u16;
            address.nl_groups = libc::RTMGRP_LINK as u32;
        }
        // SAFETY: the storage holds an initialised sockaddr_nl of `len` bytes.
        socket.bind(&unsafe { SockAddr::new(storage, len) })?;
        socket.set_nonblocking(true)?;
        Ok(LinkEvents {
            fd: register(socket)?,
        })
    }

    /// Waits for link events and reads every one queued. An overrun (ENOBUFS: events were
    /// lost) counts as an event too: what changed is read again anyway.
    pub async fn next(&self) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let mut guard = self.fd.readable().await?;
        loop {
            match guard.get_inner().recv(uninit(&mut buf)) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open for as long as it is
    // registered and is deregistered before it is closed.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

fn is_link_local_scope(ip: &Ipv6Addr) -> bool {
    ip.is_multicast() || ip.segments()[0] & 0xffc0 == 0xfe80
}

/// `buf` as socket2's receive functions take it.
fn uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: MaybeUninit<u8> has u8's layout, and recv only ever writes initialised bytes into
    // it, so `buf` stays initialised.
    unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) }
}

/// Room for the ancillary data an NDP socket asks for (one IPV6_HOPLIMIT int, 24 bytes on
/// 64-bit Linux, with slack), aligned as the `cmsghdr`s the kernel writes into it must be.
const CONTROL_LEN: usize = 64;
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

/// The hop limit in the first `len` bytes of `control`, the ancillary data of one `recvmsg`;
/// `None` if it holds no IPV6_HOPLIMIT.
fn hop_limit(control: &Control, len: usize) -> Option<u8> {
    // SAFETY: all zero is a valid msghdr; only its control fields are used, by the CMSG macros.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_control = control.0.as_ptr().cast_mut().cast();
    header.msg_controllen = len.min(CONTROL_LEN);
    // SAFETY: the CMSG macros only return headers that lie within the first `len` bytes of the
    // (aligned) control buffer, which the kernel filled with whole cmsghdrs and their data.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&header) };
    while !cmsg.is_null() {
        // SAFETY: as above, `cmsg` points to a whole header within the buffer.
        let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT {
            // SAFETY: IPV6_HOPLIMIT data is one int, within the header's cmsg_len.
            let value = unsafe { libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned() };
            return u8::try_from(value).ok();
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&header, cmsg) };
    }
    None
}

/// An address for `recvmsg` to write the sender's into.
fn empty_address() -> SockAddr {
    let len = size_of::<SockAddrStorage>() as libc::socklen_t;
    // SAFETY: zeroed storage of its full size is a valid (AF_UNSPEC) address to overwrite.
    unsafe { SockAddr::new(SockAddrStorage::zeroed(), len) }
}

/// A `sockaddr_ll` for binding a packet socket to one interface and EtherType.
fn packet_address(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: SockAddrStorage is large enough and suitably aligned for any socket address,
    // sockaddr_ll included; every field written is a plain integer.
    unsafe {
        let address = storage.view_as::<libc::sockaddr_ll>();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol.to_be();
        address.sll_ifindex = ifindex as i32;
    }
    // SAFETY: the storage holds an initialised sockaddr_ll of `len` bytes.
    unsafe { SockAddr::new(storage, len) }
}

/// ICMP6_FILTER: pass only the given ICMPv6 types to this socket (RFC 3542's filter is a
/// bitmap of 256 types, a set bit meaning "block").
fn set_icmp6_filter(socket: &Socket, pass: &[u8]) -> io::Result<()> {
    let mut blocked = [u32::MAX; 8];
    for t in pass {
        blocked[usize::from(*t >> 5)] &= !(1 << (t & 31));
    }
    // SAFETY: the option value is the 32-byte bitmap the kernel expects, valid for the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            1, // ICMP6_FILTER
            blocked.as_ptr().cast(),
            size_of::<[u32; 8]>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int_option(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is an int that lives for the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
