//! The lab's backend "pod": an HTTP server on port 8080 (IPv4 and IPv6) that answers every
//! request with who it is and the address the caller's packets came from, so a client sees
//! whether its own address reached the pod (`externalTrafficPolicy: Local`) or a node's did.
//!
//! `lab-echo POD NODE`; runs in the pod's network namespace.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pod, node] = args.as_slice() else {
        eprintln!("usage: lab-echo POD NODE");
        std::process::exit(2);
    };
    // `[::]` takes IPv4 too (mapped), as the sysctl default bindv6only=0 has it.
    let listener = TcpListener::bind("[::]:8080")
        .await
        .unwrap_or_else(|e| panic!("lab-echo {pod}: binding [::]:8080: {e}"));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let body = format!("{pod} on {node} saw {}\n", peer.ip().to_canonical());
        tokio::spawn(answer(stream, body));
    }
}

/// Reads the request head and writes one small response; the client closes after it.
async fn answer(mut stream: TcpStream, body: String) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
