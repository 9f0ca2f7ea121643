//! Network faults between nodes: a TCP proxy in front of every node.
//!
//! A node started through a [`Net`] advertises its proxy's address, so
//! every peer call to it crosses the proxy, and it calls its peers from its
//! own loopback source address (`127.0.1.<id>`, `--peer-source-ip`), so
//! the proxy knows which node a connection comes from. Clients (anything
//! calling from another address) are never faulted.
//!
//! Per direction of a link (`from` → `to`) the proxy can:
//! - **block** it: bytes from `from` to `to` are held, not delivered, on
//!   every connection between the two (old and new), as a network that
//!   drops every packet does until TCP gives up. Calls time out; when the
//!   link heals, whatever is still held is delivered late, as TCP's
//!   retransmissions would be. Blocking both directions is a partition;
//!   one direction, a one-way partition.
//! - **delay** it: every chunk of bytes is delivered that much later.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What is wrong with the network now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Directions `(from, to)` whose bytes are held.
    pub blocked: BTreeSet<(u64, u64)>,
    /// Directions `(from, to)` whose bytes arrive late.
    pub delayed: BTreeMap<(u64, u64), Duration>,
}

impl Rules {
    fn blocks(&self, from: u64, to: u64) -> bool {
        self.blocked.contains(&(from, to))
    }

    fn delay(&self, from: u64, to: u64) -> Option<Duration> {
        self.delayed.get(&(from, to)).copied()
    }
}

/// The source address node `id` calls its peers from.
pub fn source_ip(id: u64) -> IpAddr {
    assert!(
        (1..=254).contains(&id),
        "node ids 1..=254 have a source address"
    );
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, id as u8))
}

/// The node a connection from `ip` comes from, or 0 for a client.
fn node_of(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 1] => u64::from(v4.octets()[3]),
        _ => 0,
    }
}

/// Bytes delivered per direction `(from, to)`.
type Counters = Arc<std::sync::Mutex<BTreeMap<(u64, u64), u64>>>;

/// The proxies and their rules.
pub struct Net {
    rules: Arc<watch::Sender<Rules>>,
    proxies: BTreeMap<u64, Proxy>,
    delivered: Counters,
}

struct Proxy {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Net {
    pub fn new() -> Net {
        Net {
            rules: Arc::new(watch::Sender::new(Rules::default())),
            proxies: BTreeMap::new(),
            delivered: Counters::default(),
        }
    }

    /// Starts the proxy for node `id`, which listens on `upstream`;
    /// returns the address peers should use for it. Must be called inside
    /// a Tokio runtime.
    pub fn add(&mut self, id: u64, upstream: &str) -> String {
        if let Some(p) = self.proxies.get(&id) {
            return p.addr.clone();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        listener.set_nonblocking(true).expect("non-blocking proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let upstream: SocketAddr = upstream.parse().expect("upstream address");
        let rules = self.rules.clone();
        let delivered = self.delivered.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, peer)) = listener.accept().await else {
                    // Out of descriptors, say: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let from = node_of(peer.ip());
                let link = Link {
                    from,
                    to: id,
                    rules: rules.clone(),
                    delivered: delivered.clone(),
                };
                tokio::spawn(relay(conn, upstream, link));
            }
        });
        self.proxies.insert(
            id,
            Proxy {
                addr: addr.clone(),
                task,
            },
        );
        addr
    }

    /// Bytes delivered so far from node `from` to node `to`.
    pub fn delivered(&self, from: u64, to: u64) -> u64 {
        let map = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(from, to)).copied().unwrap_or(0)
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.rules.borrow().clone()
    }

    fn change(&self, f: impl FnOnce(&mut Rules)) {
        self.rules.send_modify(f);
    }

    /// Holds bytes from `from` to `to` (one way).
    pub fn block(&self, from: u64, to: u64) {
        self.change(|r| {
            r.blocked.insert((from, to));
        });
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        self.change(|r| {
            for x in a {
                for y in b {
                    r.blocked.insert((*x, *y));
                    r.blocked.insert((*y, *x));
                }
            }
        });
    }

    /// Cuts `id` off from every other node with a proxy.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.proxies.keys().copied().filter(|o| *o != id).collect();
        self.partition(&[id], &others);
    }

    /// Delays bytes from `from` to `to` by `by`.
    pub fn delay(&self, from: u64, to: u64, by: Duration) {
        self.change(|r| {
            r.delayed.insert((from, to), by);
        });
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.change(|r| *r = Rules::default());
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in self.proxies.values() {
            p.task.abort();
        }
    }
}

/// One connection's ends: from node `from` (0: a client) to node `to`.
#[derive(Clone)]
struct Link {
    from: u64,
    to: u64,
    rules: Arc<watch::Sender<Rules>>,
    delivered: Counters,
}

/// Relays one connection.
async fn relay(conn: TcpStream, upstream: SocketAddr, link: Link) {
    let Ok(up) = TcpStream::connect(upstream).await else {
        return; // The node is down: the caller sees the connection close.
    };
    let _ = conn.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_read, down_write) = conn.into_split();
    let (up_read, up_write) = up.into_split();
    let back = Link {
        from: link.to,
        to: link.from,
        ..link.clone()
    };
    let _ = tokio::join!(
        pump(down_read, up_write, link),
        pump(up_read, down_write, back)
    );
}

/// Copies bytes travelling along `link`, holding or delaying them as the
/// rules say. Ends at EOF or an error on either side.
async fn pump(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
) {
    let Link { from, to, .. } = link;
    let mut rules = link.rules.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let arrived = tokio::time::Instant::now();
        // Clients are never faulted; between nodes, wait out a block.
        if from != 0 && to != 0 {
            if rules.wait_for(|r| !r.blocks(from, to)).await.is_err() {
                break;
            }
            let delay = rules.borrow().delay(from, to);
            if let Some(d) = delay {
                tokio::time::sleep_until(arrived + d).await;
            }
        }
        if write.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let mut map = link.delivered.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((from, to)).or_default() += n as u64;
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_name_their_node() {
        assert_eq!(node_of(source_ip(3)), 3);
        assert_eq!(node_of("127.0.0.1".parse().unwrap()), 0);
        assert_eq!(node_of("::1".parse().unwrap()), 0);
    }

    #[tokio::test]
    async fn a_blocked_direction_holds_bytes_until_healed() {
        // An echo server standing in for node 2.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut net = Net::new();
        let proxy = net.add(2, &echo_addr);
        let connect_as_node1 = || async {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(source_ip(1), 0)).unwrap();
            sock.connect(proxy.parse().unwrap()).await.unwrap()
        };

        let mut s = connect_as_node1().await;
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");

        // One way: node 1's bytes are held.
        net.block(1, 2);
        s.write_all(b"lost").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut b)).await;
        assert!(held.is_err(), "bytes crossed a blocked link");
        net.heal();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .expect("delivered after healing")
            .unwrap();
        assert_eq!(&b, b"lost");

        // A client (127.0.0.1) is never faulted.
        net.isolate(2);
        let mut c = TcpStream::connect(&proxy).await.unwrap();
        c.write_all(b"c123").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut b))
            .await
            .expect("a client crosses a partition")
            .unwrap();
        assert_eq!(&b, b"c123");
        net.heal();

        // A delayed link delivers late.
        net.delay(1, 2, Duration::from_millis(200));
        let mut s = connect_as_node1().await;
        let start = std::time::Instant::now();
        s.write_all(b"slow").await.unwrap();
        s.read_exact(&mut b).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
