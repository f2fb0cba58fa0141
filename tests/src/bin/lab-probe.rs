//! The lab's traffic: from the client, an HTTP request to `ADDRESS:PORT` every `INTERVAL_MS`
//! on a new connection (so every request goes through the LAN's neighbour resolution and
//! kube-proxy afresh), each given up after `TIMEOUT_MS`. Prints one line per request:
//! `<sent µs> <done µs> ok <response body>` or `<sent µs> <done µs> fail <why>`, with times in
//! microseconds since the Unix epoch, so that another process can line them up with the moment
//! it failed a node.
//!
//! `lab-probe ADDRESS PORT INTERVAL_MS TIMEOUT_MS`; runs in the client's network namespace
//! until killed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use herald_tests::lab::now_micros;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{MissedTickBehavior, interval, timeout};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [address, port, every, limit] => (|| {
            let address: IpAddr = address.parse().ok()?;
            let port: u16 = port.parse().ok()?;
            Some((
                SocketAddr::new(address, port),
                Duration::from_millis(every.parse().ok()?),
                Duration::from_millis(limit.parse().ok()?),
            ))
        })(),
        _ => None,
    };
    let Some((target, every, limit)) = parsed else {
        eprintln!("usage: lab-probe ADDRESS PORT INTERVAL_MS TIMEOUT_MS");
        std::process::exit(2);
    };
    let mut ticks = interval(every);
    // Requests keep their schedule: a slow one never delays the next.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        tokio::spawn(async move {
            let sent = now_micros();
            let outcome = match timeout(limit, request(target)).await {
                Ok(Ok(body)) => format!("ok {}", body.trim()),
                Ok(Err(e)) => format!("fail {e}"),
                Err(_) => "fail timed out".to_string(),
            };
            println!("{sent} {} {outcome}", now_micros());
        });
    }
}

async fn request(target: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(target).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other("not an HTTP 200 response")),
    }
}
