//! pulseplane-cluster-tests: the harness that starts real `pulseplane-node`
//! processes on free loopback ports with temporary data dirs, for the
//! scenarios under `tests/`.
//!
//! The harness can kill -9, stop (SIGTERM), restart, pause (SIGSTOP) and
//! resume (SIGCONT) any node, talks to nodes over real HTTP, and waits on
//! conditions ([`wait_until`]), never on bare sleeps.
//!
//! Layout:
//! - [`Cluster`]: the processes, their ports, data dirs and logs
//! - [`Client`]: an HTTP client for the API with the admin token
//! - [`wait_until`]: polling a condition with a deadline
//! - [`faults`]: partitions and delays between nodes, through a proxy
//! - [`history`]: a record of client operations and its checker
//! - [`workload`]: the clients that write and read while faults happen

pub mod faults;
pub mod history;
pub mod nemesis;
pub mod workload;

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "cluster-tests-secret";
pub const TOKEN: &str = "cluster-tests-admin-token";

/// The `pulseplane-node` binary: `PULSEPLANE_NODE_BIN`, or the one built
/// beside the test executable (same profile).
pub fn node_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PULSEPLANE_NODE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // A bench binary: target/<profile>/<bin>, beside the node. A test:
    // target/<profile>/deps/<test> → target/<profile>/pulseplane-node.
    let here = exe.parent().expect("executable dir");
    let beside = here.join("pulseplane-node");
    let bin = if beside.exists() {
        beside
    } else {
        here.parent().expect("target dir").join("pulseplane-node")
    };
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p pulseplane-node) or set PULSEPLANE_NODE_BIN",
        bin.display()
    );
    bin
}

/// A benchmark program's `main`: exit 2 (naming the program) when its
/// arguments do not parse, 1 when the run fails, 0 otherwise.
pub async fn bench_main<A, F>(
    name: &str,
    args: Result<A, String>,
    run: impl FnOnce(A) -> F,
) -> std::process::ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let a = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(a).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Ports handed out by [`free_port`] come from here, below Linux's
/// ephemeral range (32768–60999 by default), so that no outgoing connection
/// of a running node can take a port between the moment it is chosen and
/// the moment the node it is meant for binds it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free TCP port on 127.0.0.1: each call in this process gets another
/// one (starting from a point that depends on the process id, so that test
/// programs running at once start apart), checked to be bindable now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Polls `cond` every 20 ms until it yields `Some`, or panics after
/// `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node process and its files.
pub struct NodeProc {
    pub id: u64,
    /// Where the node listens (clients call it here).
    pub addr: String,
    /// The address peers use, when it differs from `addr` (a fault proxy).
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Extra flags given at every start.
    pub extra: Vec<String>,
    initial_cluster: Option<String>,
    child: Option<Child>,
    paused: bool,
}

impl NodeProc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }
}

/// A set of node processes under one temporary directory.
pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    pub dir: tempfile::TempDir,
    pub client: Client,
    bin: PathBuf,
    /// Flags given to every node.
    pub common_flags: Vec<String>,
    /// `PULSEPLANE_LOG` for the nodes (default `PULSEPLANE_TEST_LOG`, else
    /// `info,openraft=warn`).
    pub log_filter: Option<String>,
    /// `http`, or `https` for nodes started with TLS.
    pub scheme: &'static str,
    /// With network faults: the proxies every peer call crosses.
    pub net: Option<faults::Net>,
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Cluster {
    /// An empty harness; add nodes with [`Cluster::add_node`].
    pub fn new() -> Cluster {
        Cluster::with_binary(node_binary())
    }

    /// An empty harness that starts nodes from `bin`.
    pub fn with_binary(bin: PathBuf) -> Cluster {
        Cluster {
            nodes: BTreeMap::new(),
            dir: tempfile::Builder::new()
                .prefix("pulseplane-cluster-")
                .tempdir()
                .expect("temp dir"),
            client: Client::new(),
            bin,
            common_flags: Vec::new(),
            log_filter: None,
            scheme: "http",
            net: None,
        }
    }

    /// Starts `n` nodes (ids 1..=n) that form a cluster from
    /// `--initial-cluster`, and waits until every one is ready.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// As [`Cluster::start`], with extra flags for every node.
    pub async fn start_with(n: u64, flags: &[&str]) -> Cluster {
        Cluster::start_logging(n, flags, None).await
    }

    /// As [`Cluster::start_with`], with the nodes' `PULSEPLANE_LOG` filter.
    pub async fn start_logging(n: u64, flags: &[&str], log_filter: Option<&str>) -> Cluster {
        let mut c = Cluster::new();
        c.log_filter = log_filter.map(str::to_owned);
        c.form(n, flags).await;
        c
    }

    /// As [`Cluster::start_with`], over TLS: the flags must give the nodes
    /// a certificate, and `ca_pem` is what the harness's client trusts.
    pub async fn start_tls(n: u64, flags: &[&str], ca_pem: &[u8]) -> Cluster {
        let mut c = Cluster::new();
        c.scheme = "https";
        c.client = Client::with_ca(ca_pem);
        c.form(n, flags).await;
        c
    }

    /// As [`Cluster::start_with`], with a fault proxy in front of every
    /// node (`cluster.net`): partitions, one-way partitions and delays
    /// between nodes. Must be called inside a Tokio runtime.
    pub async fn start_faulty(n: u64, flags: &[&str]) -> Cluster {
        Cluster::start_faulty_from(node_binary(), n, flags).await
    }

    /// As [`Cluster::start_faulty`], with the node binary `bin`.
    pub async fn start_faulty_from(bin: PathBuf, n: u64, flags: &[&str]) -> Cluster {
        let mut c = Cluster::with_binary(bin);
        c.net = Some(faults::Net::new());
        c.form(n, flags).await;
        c
    }

    /// The fault proxies (panics when the cluster has none).
    pub fn net(&self) -> &faults::Net {
        self.net
            .as_ref()
            .expect("a cluster started with Cluster::start_faulty")
    }

    async fn form(&mut self, n: u64, flags: &[&str]) {
        let c = self;
        c.common_flags = flags.iter().map(|s| s.to_string()).collect();
        // (id, listen address, address peers use)
        let members: Vec<(u64, String, String)> = (1..=n)
            .map(|id| {
                let addr = format!("127.0.0.1:{}", free_port());
                let peer = match &mut c.net {
                    Some(net) => net.add(id, &addr),
                    None => addr.clone(),
                };
                (id, addr, peer)
            })
            .collect();
        let initial = members
            .iter()
            .map(|(id, _, peer)| format!("{id}={peer}"))
            .collect::<Vec<_>>()
            .join(",");
        for (id, addr, peer) in members {
            c.add_node(id, &addr, Some(initial.clone()));
            if peer != addr {
                c.node_mut(id).advertise = Some(peer);
            }
        }
        for id in 1..=n {
            c.spawn(id);
        }
        for id in 1..=n {
            c.wait_ready(id, Duration::from_secs(30)).await;
        }
    }

    /// Registers a node (not started). `initial_cluster` is `None` for a
    /// node an operator adds through the admin API.
    pub fn add_node(&mut self, id: u64, addr: &str, initial_cluster: Option<String>) {
        let data_dir = self.dir.path().join(format!("n{id}"));
        let log = self.dir.path().join(format!("n{id}.log"));
        self.nodes.insert(
            id,
            NodeProc {
                id,
                addr: addr.to_owned(),
                advertise: None,
                data_dir,
                log,
                extra: Vec::new(),
                initial_cluster,
                child: None,
                paused: false,
            },
        );
    }

    /// A new node with a free port, registered but not started; returns
    /// the address to add it under (its proxy's, with network faults).
    pub fn new_node(&mut self, id: u64) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        self.add_node(id, &addr, None);
        if let Some(net) = &mut self.net {
            let peer = net.add(id, &addr);
            self.node_mut(id).advertise = Some(peer);
        }
        self.peer_addr(id).to_owned()
    }

    /// The address peers reach node `id` at.
    pub fn peer_addr(&self, id: u64) -> &str {
        let n = self.node(id);
        n.advertise.as_deref().unwrap_or(&n.addr)
    }

    fn node(&self, id: u64) -> &NodeProc {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The command line a node is started with.
    pub fn command(&self, id: u64) -> Command {
        let n = self.node(id);
        let mut cmd = Command::new(&self.bin);
        cmd.arg(format!("--node-id={id}"))
            .arg(format!("--listen={}", n.addr))
            .arg(format!("--data-dir={}", n.data_dir.display()))
            .arg(format!("--cluster-secret={SECRET}"))
            .env("PULSEPLANE_ADMIN_TOKEN", TOKEN)
            .env(
                "PULSEPLANE_LOG",
                self.log_filter.clone().unwrap_or_else(|| {
                    std::env::var("PULSEPLANE_TEST_LOG")
                        .unwrap_or_else(|_| "info,openraft=warn".into())
                }),
            );
        if let Some(ic) = &n.initial_cluster {
            cmd.arg(format!("--initial-cluster={ic}"));
        }
        if let Some(peer) = &n.advertise {
            cmd.arg(format!("--advertise={peer}"))
                .arg(format!("--peer-source-ip={}", faults::source_ip(id)));
        }
        cmd.args(&self.common_flags).args(&n.extra);
        cmd
    }

    /// Starts (or restarts) a node process; output goes to its log file.
    pub fn spawn(&mut self, id: u64) {
        let mut cmd = self.command(id);
        let n = self.node(id);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("node log file");
        let err = log.try_clone().expect("log file handle");
        let child = cmd
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {id}: {e}"));
        let n = self.node_mut(id);
        n.child = Some(child);
        n.paused = false;
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self, id: u64) {
        let n = self.node_mut(id);
        if let Some(mut c) = n.child.take() {
            if n.paused {
                signal(c.id(), "-CONT");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        n.paused = false;
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self, id: u64) -> Option<i32> {
        let n = self.node_mut(id);
        let mut c = n.child.take()?;
        signal(c.id(), "-TERM");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, id: u64) {
        self.kill9(id);
        self.spawn(id);
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) {
        let n = self.node_mut(id);
        if let Some(pid) = n.pid() {
            signal(pid, "-STOP");
            n.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        let n = self.node_mut(id);
        if let Some(pid) = n.pid() {
            signal(pid, "-CONT");
            n.paused = false;
        }
    }

    /// Removes a node's data dir (the node must be stopped).
    pub fn wipe(&mut self, id: u64) {
        let dir = self.node(id).data_dir.clone();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Kills node `id` with SIGKILL, wipes its data dir and removes it from
    /// the cluster through node `via` (the removal must succeed).
    pub async fn kill_wipe_and_remove(&mut self, id: u64, via: u64) {
        self.kill9(id);
        self.wipe(id);
        let (s, v) = self
            .client
            .delete(&self.url(via), &format!("/admin/v1/cluster/nodes/{id}"))
            .await
            .unwrap();
        assert_eq!(s, 200, "removing node {id}: {v}");
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.node(id).addr
    }

    /// `http://addr`, or `https://addr` over TLS.
    pub fn url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme, self.addr(id))
    }

    /// Ids of nodes whose process is running.
    pub fn running(&mut self) -> Vec<u64> {
        self.nodes
            .iter_mut()
            .filter_map(|(id, n)| (n.is_running() && !n.paused).then_some(*id))
            .collect()
    }

    /// Waits until `GET /readyz` answers 200 on node `id`.
    pub async fn wait_ready(&self, id: u64, timeout: Duration) {
        let url = self.url(id);
        let client = self.client.clone();
        wait_until(timeout, &format!("node {id} ready"), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.raw_get(&format!("{url}/readyz")).await.ok()?;
                (r.0 == 200).then_some(())
            }
        })
        .await;
    }

    /// This node's own view (`GET /admin/v1/node`), if it answers.
    pub async fn node_view(&self, id: u64) -> Option<Value> {
        let (status, body) = self
            .client
            .get(&self.url(id), "/admin/v1/node")
            .await
            .ok()?;
        (status == 200).then_some(body)
    }

    /// The leader as some running node reports it, once one is known and
    /// itself says it leads.
    pub async fn leader(&mut self, timeout: Duration) -> u64 {
        let ids = self.running();
        let me = &*self;
        wait_until(timeout, "a leader", || {
            let ids = ids.clone();
            async move {
                for id in ids {
                    if let Some(v) = me.node_view(id).await
                        && v["state"] == "leader"
                    {
                        return Some(id);
                    }
                }
                None
            }
        })
        .await
    }

    /// Waits until every listed node has applied the same index with the
    /// same state digest; returns the digest.
    pub async fn converged(&self, ids: &[u64], timeout: Duration) -> String {
        wait_until(timeout, &format!("nodes {ids:?} converged"), || async {
            let mut seen: Option<(u64, String)> = None;
            for id in ids {
                let v = self.node_view(*id).await?;
                let here = (
                    v["applied_index"].as_u64()?,
                    v["state_digest"].as_str()?.to_owned(),
                );
                match &seen {
                    None => seen = Some(here),
                    Some(s) if *s == here => {}
                    Some(_) => return None,
                }
            }
            seen.map(|s| s.1)
        })
        .await
    }

    /// One sample from node `id`'s `/metrics`: `series` is the metric name
    /// with its labels as printed, e.g. `pulseplane_redis_connected` or
    /// `pulseplane_redis_notices_total{outcome="sent"}`.
    pub async fn metric(&self, id: u64, series: &str) -> Option<f64> {
        let (status, text) = self
            .client
            .raw_get(&format!("{}/metrics", self.url(id)))
            .await
            .ok()?;
        if status != 200 {
            return None;
        }
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The last lines of a node's log, for failure messages.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.node(id).log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        if std::thread::panicking() {
            for id in &ids {
                eprintln!(
                    "---- node {id} log (last 40 lines) ----\n{}",
                    self.log_tail(*id, 40)
                );
            }
        }
        for id in ids {
            self.kill9(id);
        }
    }
}

/// An HTTP client for the API, with the admin token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    token: String,
}

/// An HTTP answer: status, headers, JSON body (`Null` when not JSON).
pub type Answer = (u16, reqwest::header::HeaderMap, Value);

impl Client {
    pub fn new() -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .pool_max_idle_per_host(16)
                .build()
                .expect("http client"),
            token: TOKEN.into(),
        }
    }

    /// A client that trusts the CA certificates in `ca_pem` (for nodes
    /// served over TLS).
    pub fn with_ca(ca_pem: &[u8]) -> Client {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(16);
        for cert in reqwest::Certificate::from_pem_bundle(ca_pem).expect("CA PEM") {
            builder = builder.add_root_certificate(cert);
        }
        Client {
            http: builder.build().expect("http client"),
            token: TOKEN.into(),
        }
    }

    /// The same client with another bearer token (none when empty).
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            http: self.http.clone(),
            token: token.into(),
        }
    }

    /// A GET with the token (if any): status and body text.
    pub async fn raw_get(&self, url: &str) -> Result<(u16, String), reqwest::Error> {
        let mut req = self.http.get(url).timeout(Duration::from_secs(2));
        if !self.token.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// Sends a request with the token (if any); `body` is sent as JSON when
    /// given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self.http.request(method, url);
        if !self.token.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await?;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, headers, json))
    }

    pub async fn get(&self, base: &str, path: &str) -> Result<(u16, Value), reqwest::Error> {
        let (s, _, v) = self
            .send(reqwest::Method::GET, &format!("{base}{path}"), &[], None)
            .await?;
        Ok((s, v))
    }

    pub async fn post(
        &self,
        base: &str,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let (s, _, v) = self
            .send(
                reqwest::Method::POST,
                &format!("{base}{path}"),
                &[],
                Some(body),
            )
            .await?;
        Ok((s, v))
    }

    pub async fn put(
        &self,
        base: &str,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let (s, _, v) = self
            .send(
                reqwest::Method::PUT,
                &format!("{base}{path}"),
                &[],
                Some(body),
            )
            .await?;
        Ok((s, v))
    }

    pub async fn delete(&self, base: &str, path: &str) -> Result<(u16, Value), reqwest::Error> {
        let (s, _, v) = self
            .send(reqwest::Method::DELETE, &format!("{base}{path}"), &[], None)
            .await?;
        Ok((s, v))
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// Concurrent writers for scenarios: each upserts its own flags in one
/// environment, round-robin over the given nodes, and records every flag
/// whose write was acknowledged (2xx).
pub mod load {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use serde_json::json;
    use tokio::sync::Mutex;

    use super::Client;

    /// What the writers saw.
    #[derive(Debug, Default)]
    pub struct Record {
        /// Flag keys whose upsert was acknowledged.
        pub acked: Vec<String>,
        /// Writes that failed or timed out (possibly applied).
        pub failed: usize,
        /// Times of acknowledged writes, since the start.
        pub ack_times: Vec<Duration>,
    }

    /// Running writers; [`Writers::stop`] ends them and returns the record.
    pub struct Writers {
        stop: Arc<AtomicBool>,
        record: Arc<Mutex<Record>>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        pub started: Instant,
    }

    /// Starts `n` writers against `urls` (rotating on errors) in `env`.
    pub fn start(client: &Client, urls: Vec<String>, env: &str, n: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..n {
            let (client, urls, stop, record, env) = (
                client.clone(),
                urls.clone(),
                stop.clone(),
                record.clone(),
                env.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0usize;
                let mut target = w % urls.len();
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-f{i}");
                    let url = format!("{}/v1/environments/{env}/flags/{key}", urls[target]);
                    let idem = format!("idem-{key}");
                    let body =
                        json!({"kind": "boolean", "description": format!("writer {w} write {i}")});
                    let answer = client
                        .send(
                            reqwest::Method::PUT,
                            &url,
                            &[("idempotency-key", &idem)],
                            Some(&body),
                        )
                        .await;
                    match answer {
                        Ok((s, _, _)) if (200..300).contains(&s) => {
                            let mut r = record.lock().await;
                            r.acked.push(key);
                            r.ack_times.push(started.elapsed());
                            i += 1;
                        }
                        _ => {
                            record.lock().await.failed += 1;
                            // Retry the same key (same idempotency key) on
                            // another node after a short pause.
                            target = (target + 1) % urls.len();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        Writers {
            stop,
            record,
            tasks,
            started,
        }
    }

    impl Writers {
        pub async fn acked(&self) -> usize {
            self.record.lock().await.acked.len()
        }

        pub async fn stop(self) -> Record {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.tasks {
                let _ = t.await;
            }
            std::mem::take(&mut *self.record.lock().await)
        }
    }
}

impl Cluster {
    /// Creates environment `env` through node `id`.
    pub async fn create_env(&self, id: u64, env: &str) {
        let (s, v) = self
            .client
            .post(
                &self.url(id),
                "/v1/environments",
                &serde_json::json!({"key": env, "name": env}),
            )
            .await
            .expect("create environment");
        assert!(s == 201 || s == 409, "create env: {s} {v}");
    }

    /// Puts draft flag `key` (`body`) in `env` and publishes, through node
    /// `id`; returns the new environment version, or what went wrong.
    pub async fn put_and_publish(
        &self,
        id: u64,
        env: &str,
        key: &str,
        body: &Value,
    ) -> Result<u64, String> {
        let url = self.url(id);
        let (s, v) = self
            .client
            .put(&url, &format!("/v1/environments/{env}/flags/{key}"), body)
            .await
            .map_err(|e| e.to_string())?;
        if !(s == 200 || s == 201) {
            return Err(format!("put flag {key}: {s} {v}"));
        }
        let (s, v) = self
            .client
            .post(
                &url,
                &format!("/v1/environments/{env}/publish"),
                &serde_json::json!({}),
            )
            .await
            .map_err(|e| e.to_string())?;
        match v["env_version"].as_u64() {
            Some(version) if s == 200 => Ok(version),
            _ => Err(format!("publish: {s} {v}")),
        }
    }

    /// Asserts that node `id` holds every flag in `keys` (drafts), after a
    /// linearizable barrier.
    pub async fn assert_has_flags(&self, id: u64, env: &str, keys: &[String]) {
        let mut have = std::collections::BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => format!("/v1/environments/{env}/flags?limit=1000&consistency=linearizable"),
                Some(c) => format!(
                    "/v1/environments/{env}/flags?limit=1000&consistency=linearizable&cursor={c}"
                ),
            };
            // A leader change during the read's barrier answers 503: ask
            // again until the deadline.
            let deadline = Instant::now() + Duration::from_secs(15);
            let (s, v) = loop {
                let (s, v) = self
                    .client
                    .get(&self.url(id), &path)
                    .await
                    .expect("list flags");
                if s != 503 || Instant::now() > deadline {
                    break (s, v);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(s, 200, "list flags on node {id}: {v}");
            for item in v["items"].as_array().expect("items") {
                have.insert(item["key"].as_str().expect("key").to_owned());
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !have.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "node {id} lost {} acknowledged writes, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

/// A `redis-server` process on a free loopback port, with no persistence,
/// in its own temporary directory; killed on drop.
pub struct RedisServer {
    pub port: u16,
    /// `requirepass`, when set.
    pub password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub async fn start(password: Option<&str>) -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            password: password.map(str::to_owned),
            dir: tempfile::Builder::new()
                .prefix("pulseplane-redis-")
                .tempdir()
                .expect("temp dir"),
            child: None,
        };
        r.spawn().await;
        r
    }

    /// `redis://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// (Re)starts the process on the same port.
    pub async fn spawn(&mut self) {
        let log = File::create(self.dir.path().join("redis.log")).expect("redis log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("redis-server is missing: install it (apt-get install redis-server)");
        self.child = Some(child);
        let port = self.port;
        wait_until(
            Duration::from_secs(10),
            "redis-server listening",
            || async move {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    /// SIGSTOPs (`true`) or SIGCONTs the process: a Redis that accepts
    /// connections and never answers.
    pub fn pause(&self, stop: bool) {
        if let Some(c) = &self.child {
            signal(c.id(), if stop { "-STOP" } else { "-CONT" });
        }
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.pause(false);
        self.kill();
    }
}

impl Cluster {
    /// Ends a run: heals every network fault, resumes paused nodes, stops
    /// the workload, waits until `members` converge, reads the final state
    /// linearizably and checks the history against it.
    pub async fn verdict(
        &mut self,
        run: workload::Workload,
        env: &str,
        members: &[u64],
    ) -> history::Verdict {
        self.verdict_with(run, env, members).await.0
    }

    /// As [`Cluster::verdict`], also returning the recorded operations.
    pub async fn verdict_with(
        &mut self,
        run: workload::Workload,
        env: &str,
        members: &[u64],
    ) -> (history::Verdict, Vec<history::Op>) {
        if let Some(net) = &self.net {
            net.heal();
        }
        let paused: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.paused)
            .map(|(id, _)| *id)
            .collect();
        for id in paused {
            self.resume(id);
        }
        let recorded = run.stop().await;
        self.converged(members, Duration::from_secs(60)).await;
        let fin = workload::final_state(
            &self.client,
            &self.url(members[0]),
            env,
            Duration::from_secs(30),
        )
        .await;
        let verdict = history::check(&recorded.ops, &recorded.samples, &fin);
        (verdict, recorded.ops)
    }
}
