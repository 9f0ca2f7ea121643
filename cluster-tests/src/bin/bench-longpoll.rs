//! Long-poll fan-out: N connections wait on one node for the next version
//! of an environment (`?min_version=<current+1>&wait=60s`); then a kill
//! switch is thrown and every answer is timed from the moment the kill
//! request was sent. Reports p50/p99/max, failures, and the node's resident
//! memory (VmRSS with every connection waiting, and the peak VmHWM).
//!
//!   bench-longpoll --addr 127.0.0.1:7401 --token T --env bench \
//!     [--conns 10000] [--gzip] [--pid <node pid>]
//!
//! Needs `ulimit -n` above the connection count (cluster-tests/bench/longpoll.sh
//! sets it).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

struct Args {
    addr: String,
    token: String,
    env: String,
    conns: usize,
    gzip: bool,
    pid: Option<u32>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        addr: String::new(),
        token: std::env::var("PULSEPLANE_TOKEN").unwrap_or_default(),
        env: "bench".into(),
        conns: 10_000,
        gzip: false,
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--gzip" {
            a.gzip = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => a.addr = value,
            "--token" => a.token = value,
            "--env" => a.env = value,
            "--conns" => a.conns = value.parse().map_err(|_| "--conns: not a number")?,
            "--pid" => a.pid = Some(value.parse().map_err(|_| "--pid: not a number")?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.addr.is_empty() {
        return Err("--addr is required".into());
    }
    Ok(a)
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns the
/// status and the body size.
async fn read_response(stream: &mut BufReader<TcpStream>) -> Result<(u16, usize), String> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err("response head too large".into());
        }
    };
    let text = String::from_utf8_lossy(&buf[..head_end]);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        have += n;
    }
    Ok((status, length))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn run(a: Args) -> Result<(), String> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", a.addr);
    let snap: Value = http
        .get(format!("{base}/v1/sdk/environments/{}/snapshot", a.env))
        .bearer_auth(&a.token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
    let version = snap["version"]
        .as_u64()
        .ok_or("no version in the snapshot")?;
    let flag = snap["flags"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["killed"] != true))
        .and_then(|f| f["key"].as_str())
        .ok_or("no flag left to kill in the environment")?
        .to_owned();
    let request = format!(
        "GET /v1/sdk/environments/{}/snapshot?min_version={}&wait=60s HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n{}\r\n",
        a.env,
        version + 1,
        a.addr,
        a.token,
        if a.gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        }
    );
    let request = Arc::new(request.into_bytes());
    let connecting = Arc::new(Semaphore::new(256));
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::with_capacity(a.conns);
    let opened = Instant::now();
    for _ in 0..a.conns {
        let (addr, request, connecting, sent) = (
            a.addr.clone(),
            request.clone(),
            connecting.clone(),
            sent_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut stream = {
                let _permit = connecting.acquire().await.map_err(|e| e.to_string())?;
                let mut s = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
                s.write_all(&request).await.map_err(|e| e.to_string())?;
                BufReader::new(s)
            };
            let _ = sent.send(());
            let answer = read_response(&mut stream).await?;
            Ok::<_, String>((Instant::now(), answer))
        }));
    }
    drop(sent_tx);
    let mut sent = 0;
    while sent < a.conns {
        match tokio::time::timeout(Duration::from_secs(60), sent_rx.recv()).await {
            Ok(Some(())) => sent += 1,
            _ => break,
        }
    }
    println!(
        "{sent} of {} long-polls sent in {} ms",
        a.conns,
        opened.elapsed().as_millis()
    );
    // Let the node read every request and park its waiter.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting_mem = a.pid.and_then(memory);
    let early = tasks.iter().filter(|t| t.is_finished()).count();

    let cpu_before = a.pid.and_then(cpu_seconds);
    let kill_sent = Instant::now();
    let r = http
        .post(format!(
            "{base}/v1/environments/{}/flags/{flag}/kill",
            a.env
        ))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body(r#"{"message":"long-poll benchmark"}"#)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let acked = kill_sent.elapsed();
    if !r.status().is_success() {
        return Err(format!("kill answered {}", r.status()));
    }

    let mut latencies = Vec::with_capacity(a.conns);
    let (mut failed, mut not_200, mut bytes) = (0usize, 0usize, 0usize);
    let mut first_error = None;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(70), t).await {
            Ok(Ok(Ok((at, (status, len))))) => {
                if status != 200 {
                    not_200 += 1;
                }
                bytes += len;
                latencies.push(at.saturating_duration_since(kill_sent));
            }
            Ok(Ok(Err(e))) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            _ => failed += 1,
        }
    }
    latencies.sort();
    let node_cpu = a
        .pid
        .and_then(cpu_seconds)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let peak = a.pid.and_then(memory);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().copied().unwrap_or_default();
    let within = latencies
        .iter()
        .filter(|d| **d <= Duration::from_millis(500))
        .count();
    println!(
        "kill acknowledged in {:.1} ms; {} answers ({} not 200, {} failed, {} answered before the kill), {} B per answer",
        ms(acked),
        latencies.len(),
        not_200,
        failed,
        early,
        bytes / latencies.len().max(1)
    );
    if let Some(e) = first_error {
        println!("first failure: {e}");
    }
    println!(
        "answered after the kill was sent: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {} within 500 ms",
        ms(p50),
        ms(p99),
        ms(max),
        within,
        a.conns
    );
    if let Some(cpu) = node_cpu {
        println!(
            "node CPU from the kill to the last answer: {:.0} ms ({:.1} us per answer)",
            cpu * 1000.0,
            cpu * 1e6 / latencies.len().max(1) as f64
        );
    }
    if let (Some((rss, _)), Some((_, hwm))) = (waiting_mem, peak) {
        println!("node memory: {rss:.1} MiB resident with every poll waiting, peak {hwm:.1} MiB");
    }
    println!(
        "BENCH_JSON {}",
        serde_json::json!({
            "bench": "longpoll", "env": a.env, "conns": a.conns, "gzip": a.gzip,
            "answered": latencies.len(), "not_200": not_200, "failed": failed, "early": early,
            "bytes_per_answer": bytes / latencies.len().max(1),
            "kill_ack_ms": ms(acked), "p50_ms": ms(p50), "p99_ms": ms(p99), "max_ms": ms(max),
            "within_500ms": within, "node_cpu_ms": node_cpu.map(|c| c * 1000.0),
            "rss_waiting_mib": waiting_mem.map(|m| m.0), "rss_peak_mib": peak.map(|m| m.1),
        })
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    pulseplane_cluster_tests::bench_main("bench-longpoll", args(), run).await
}
