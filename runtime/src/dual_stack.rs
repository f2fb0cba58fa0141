//! Sockets for the bind-address flags. One bound to `[::]` takes IPv4 as well as IPv6 (the
//! socket is made dual-stack, whatever `net.ipv6.bindv6only` says), so one default serves
//! IPv4-only, IPv6-only and dual-stack nodes alike. Where the kernel has no IPv6 at all
//! (booted with `ipv6.disable=1`), `[::]` becomes `0.0.0.0`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};
use tracing::info;

/// A UDP socket bound to `address`.
pub fn udp(address: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let socket = bind(address, Type::DGRAM)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A TCP listener on `address`.
pub fn tcp_listener(address: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = bind(address, Type::STREAM)?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Where to bind instead of `address` on a kernel without IPv6: `0.0.0.0` for `[::]`, nothing
/// for any other address (one the user chose stays as chosen).
pub fn ipv4_fallback(address: SocketAddr) -> Option<SocketAddr> {
    match address {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), v6.port()))
        }
        _ => None,
    }
}

fn bind(address: SocketAddr, kind: Type) -> io::Result<Socket> {
    let socket = match Socket::new(Domain::for_address(address), kind, None) {
        Err(error) if error.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let Some(ipv4) = ipv4_fallback(address) else {
                return Err(error);
            };
            info!(%address, %ipv4, "this kernel has no IPv6: binding IPv4 only");
            return bind(ipv4, kind);
        }
        result => result?,
    };
    if address.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if kind == Type::STREAM {
        // As std and tokio do for listeners: a restarted process binds its port at once.
        socket.set_reuse_address(true)?;
    }
    socket.bind(&address.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ipv6_wildcard_falls_back_to_the_ipv4_one() {
        let fallback = |address: &str| ipv4_fallback(address.parse().unwrap());
        assert_eq!(fallback("[::]:9403"), Some("0.0.0.0:9403".parse().unwrap()));
        assert_eq!(fallback("[2001:db8::11]:9403"), None);
        assert_eq!(fallback("0.0.0.0:9403"), None);
        assert_eq!(fallback("127.0.0.1:9403"), None);
    }

    /// A socket bound to `[::]` is reached over IPv4 as well as IPv6.
    #[tokio::test]
    async fn the_ipv6_wildcard_takes_both_families() {
        let listener = tcp_listener("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        for client in ["127.0.0.1", "::1"] {
            let address = SocketAddr::new(client.parse().unwrap(), port);
            let connected = tokio::net::TcpStream::connect(address).await;
            assert!(connected.is_ok(), "{address}: {connected:?}");
        }
        let socket = udp("[::]:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sender.send_to(b"v4", ("127.0.0.1", port)).await.unwrap();
        let mut buffer = [0; 2];
        let (len, from) = socket.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..len], b"v4");
        assert_eq!(from.port(), sender.local_addr().unwrap().port());
    }
}
