//! Clients that write and read one environment while faults happen, and
//! record every operation in a [`history`](crate::history) for the checker.
//!
//! Each client issues one operation at a time to a node it picks at
//! random, from a random generator seeded per client, so a seed gives the
//! same sequence of requests. The mix: register writes (a flag's
//! description set to a unique value) and linearizable reads on a few
//! shared keys, local reads of the same keys, creates of unique flags,
//! publishes, and local reads of the environment's version. A sampler reads
//! every node's applied index and state digest every 100 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::Client;
use crate::history::{Call, Final, Op, Outcome, Sample};

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: String,
    pub clients: usize,
    /// Shared register keys (`reg-0` ...).
    pub keys: usize,
    pub seed: u64,
    /// Per request; a request that takes longer is of unknown outcome.
    pub timeout: Duration,
    /// `Call::Read` asks for a linearizable read (`false` only to show
    /// that the checker catches the stale reads a local read may give).
    pub linearizable_reads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            env: "nemesis".into(),
            clients: 4,
            keys: 5,
            seed: 1,
            timeout: Duration::from_secs(3),
            linearizable_reads: true,
        }
    }
}

/// The running clients and sampler.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ops: Arc<Mutex<Vec<Op>>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    pub started: Instant,
}

/// What the run recorded.
pub struct Recorded {
    pub ops: Vec<Op>,
    pub samples: Vec<Sample>,
}

fn ns(started: Instant) -> u64 {
    started.elapsed().as_nanos() as u64
}

/// Starts the clients against `nodes` (`(id, base URL)`); the environment
/// must exist.
pub fn start(client: &Client, nodes: Vec<(u64, String)>, cfg: Config) -> Workload {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(Mutex::new(Vec::new()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..cfg.clients {
        let (client, nodes, stop, ops, cfg) = (
            client.clone(),
            nodes.clone(),
            stop.clone(),
            ops.clone(),
            cfg.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng =
                fastrand::Rng::with_seed(cfg.seed.wrapping_mul(1000).wrapping_add(p as u64));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (node, base) = &nodes[rng.usize(..nodes.len())];
                let key = format!("reg-{}", rng.usize(..cfg.keys.max(1)));
                let call = match rng.u32(..100) {
                    0..35 => Call::Write {
                        key,
                        value: format!("c{p}-{seq}"),
                    },
                    35..65 => Call::Read { key },
                    65..80 => Call::LocalRead { key },
                    80..92 => Call::Create {
                        key: format!("u-{p}-{seq}"),
                    },
                    92..96 => Call::Publish,
                    _ => Call::EnvVersion,
                };
                seq += 1;
                let invoke = ns(started);
                let outcome = perform(&client, base, &cfg, &call).await;
                let complete = ns(started);
                let failed = !matches!(outcome, Outcome::Ok { .. });
                ops.lock().await.push(Op {
                    process: p,
                    node: *node,
                    call,
                    invoke,
                    complete,
                    outcome,
                });
                if failed {
                    // A short pause, not a busy loop against a node that is
                    // down.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    {
        let (client, nodes, stop, samples) =
            (client.clone(), nodes.clone(), stop.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (id, base) in &nodes {
                    let answer = tokio::time::timeout(
                        Duration::from_millis(500),
                        client.get(base, "/admin/v1/node"),
                    )
                    .await;
                    let at = ns(started);
                    if let Ok(Ok((200, v))) = answer
                        && let (Some(applied_index), Some(digest)) =
                            (v["applied_index"].as_u64(), v["state_digest"].as_str())
                    {
                        samples.lock().await.push(Sample {
                            node: *id,
                            at,
                            applied_index,
                            digest: digest.to_owned(),
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    Workload {
        stop,
        tasks,
        ops,
        samples,
        started,
    }
}

impl Workload {
    /// Operations so far: (all, acknowledged).
    pub async fn counts(&self) -> (usize, usize) {
        let ops = self.ops.lock().await;
        let acked = ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok { .. }))
            .count();
        (ops.len(), acked)
    }

    /// The time since the last acknowledged write or linearizable read,
    /// counting from the start.
    pub async fn since_last_ack(&self) -> Duration {
        let ops = self.ops.lock().await;
        let last = ops
            .iter()
            .filter(|o| {
                matches!(o.outcome, Outcome::Ok { .. })
                    && !matches!(o.call, Call::LocalRead { .. } | Call::EnvVersion)
            })
            .map(|o| o.complete)
            .max()
            .unwrap_or(0);
        Duration::from_nanos(ns(self.started).saturating_sub(last))
    }

    /// Stops every client (each finishes its operation) and the sampler.
    pub async fn stop(self) -> Recorded {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut ops = std::mem::take(&mut *self.ops.lock().await);
        ops.sort_by_key(|o| o.invoke);
        let samples = std::mem::take(&mut *self.samples.lock().await);
        Recorded { ops, samples }
    }
}

/// Sends one operation and classifies the answer.
pub async fn perform(client: &Client, base: &str, cfg: &Config, call: &Call) -> Outcome {
    let env = &cfg.env;
    let flag = |key: &str| format!("{base}/v1/environments/{env}/flags/{key}");
    let (method, url, body) = match call {
        Call::Write { key, value } => (
            reqwest::Method::PUT,
            flag(key),
            Some(json!({"kind": "boolean", "description": value})),
        ),
        Call::Create { key } => (
            reqwest::Method::PUT,
            flag(key),
            Some(json!({"kind": "boolean", "description": "created once"})),
        ),
        Call::Read { key } if cfg.linearizable_reads => (
            reqwest::Method::GET,
            format!("{}?consistency=linearizable", flag(key)),
            None,
        ),
        Call::Read { key } | Call::LocalRead { key } => (reqwest::Method::GET, flag(key), None),
        Call::Publish => (
            reqwest::Method::POST,
            format!("{base}/v1/environments/{env}/publish"),
            Some(json!({"message": "workload"})),
        ),
        Call::EnvVersion => (
            reqwest::Method::GET,
            format!("{base}/v1/environments/{env}"),
            None,
        ),
    };
    let sent =
        tokio::time::timeout(cfg.timeout, client.send(method, &url, &[], body.as_ref())).await;
    let (status, v) = match sent {
        Err(_) => return Outcome::Info("timed out".into()),
        // Never sent: the node is down.
        Ok(Err(e)) if e.is_connect() => return Outcome::Fail(format!("connect: {e}")),
        Ok(Err(e)) => return Outcome::Info(format!("transport: {e}")),
        Ok(Ok((status, _, v))) => (status, v),
    };
    let code = v["code"].as_str().unwrap_or("").to_owned();
    let writes = matches!(
        call,
        Call::Write { .. } | Call::Create { .. } | Call::Publish
    );
    match status {
        200..=299 => Outcome::Ok {
            value: match call {
                Call::Read { .. } | Call::LocalRead { .. } => description(&v),
                _ => None,
            },
            revision: match call {
                Call::Publish => v["env_version"].as_u64(),
                Call::EnvVersion => v["version"].as_u64(),
                _ => v["revision"].as_u64(),
            },
        },
        404 if code == "flag_not_found" => Outcome::Ok {
            value: None,
            revision: None,
        },
        // A write answered 5xx may have been proposed before its leader
        // stepped down or its wait timed out: unknown. A 4xx had no
        // effect, and a read has none either way.
        _ if writes && status >= 500 => Outcome::Info(format!("{status} {code}")),
        _ => Outcome::Fail(format!("{status} {code}")),
    }
}

fn description(v: &Value) -> Option<String> {
    v["draft"]["description"].as_str().map(str::to_owned)
}

/// Reads the final state once faults are healed: every flag in the
/// environment, with a linearizable read through `base` (retried until
/// `timeout` while the cluster settles).
pub async fn final_state(client: &Client, base: &str, env: &str, timeout: Duration) -> Final {
    let deadline = Instant::now() + timeout;
    'again: loop {
        let mut fin = Final::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut path =
                format!("/v1/environments/{env}/flags?limit=1000&consistency=linearizable");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            match client.get(base, &path).await {
                Ok((200, v)) => {
                    for item in v["items"].as_array().into_iter().flatten() {
                        if let (Some(key), Some(rev)) =
                            (item["key"].as_str(), item["revision"].as_u64())
                        {
                            let d = description(item).unwrap_or_default();
                            fin.flags.insert(key.to_owned(), (d, rev));
                        }
                    }
                    match v["next_cursor"].as_str() {
                        Some(c) => cursor = Some(c.to_owned()),
                        None => return fin,
                    }
                }
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "the final read did not succeed: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'again;
                }
            }
        }
    }
}
