//! Console page times: a 3-node cluster with FLAGS flags in one environment
//! (each with a rule and a rollout, a tenth of them with unpublished
//! changes), then every console page rendered RENDERS times through node 1
//! as the admin. Reports the node's own time (`Server-Timing`, API calls
//! included) and the time a client saw, per page.
//!
//!   cluster-tests/bench/console.sh [--flags 1000] [--renders 50]
//!
//! Output: a table and one `BENCH_JSON {...}` line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pulseplane_cluster_tests::{Cluster, TOKEN, bench_main};
use serde_json::json;

struct Args {
    flags: usize,
    renders: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        flags: 1000,
        renders: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|v: &usize| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match flag.as_str() {
            "--flags" => a.flags = value("--flags")?,
            "--renders" => a.renders = value("--renders")?,
            other => return Err(format!("unknown option {other:?} (--flags N, --renders N)")),
        }
    }
    Ok(a)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(a: Args) -> Result<(), String> {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let base = c.url(leader);
    c.create_env(leader, "prod").await;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, base, next, total) = (c.client.clone(), base.clone(), next.clone(), a.flags);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), String>(());
                }
                let body = json!({
                    "kind": "boolean",
                    "description": format!("flag number {i}"),
                    "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["NL", "DE"]}],
                               "serve": {"rollout": {"variants": [{"variant": "on", "weight": 25}, {"variant": "off", "weight": 75}]}}}],
                    "default": {"variant": "off"}
                });
                let path = format!("/v1/environments/prod/flags/flag-{i:05}");
                match client.put(&base, &path, &body).await {
                    Ok((s, _)) if (200..300).contains(&s) => {}
                    Ok((s, v)) => return Err(format!("{path}: {s} {v}")),
                    Err(e) => return Err(format!("{path}: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let (s, v) = c
        .client
        .post(
            &base,
            "/v1/environments/prod/publish",
            &json!({"message": "load"}),
        )
        .await
        .map_err(|e| e.to_string())?;
    if s != 200 {
        return Err(format!("publish: {s} {v}"));
    }
    // A tenth with unpublished changes.
    for i in (0..a.flags).step_by(10) {
        let body = json!({"kind": "boolean", "description": format!("changed flag {i}")});
        c.client
            .put(
                &base,
                &format!("/v1/environments/prod/flags/flag-{i:05}"),
                &body,
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    println!(
        "loaded {} flags and published in {:.1} s",
        a.flags,
        started.elapsed().as_secs_f64()
    );
    c.converged(&[1, 2, 3], Duration::from_secs(60)).await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let node = c.url(1);
    let pages = [
        "/console",
        "/console/env/prod",
        "/console/env/prod/flags/flag-00001",
        "/console/env/prod/history",
        "/console/env/prod/evaluate?context=%7B%22targeting_key%22%3A%22u1%22%2C%22attributes%22%3A%7B%22country%22%3A%22NL%22%7D%7D",
        "/console/env/prod/fleet",
        "/console/audit",
        "/console/cluster",
    ];
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "page", "p50 ms", "p95 ms", "max ms", "client p50", "bytes"
    );
    let mut rows = Vec::new();
    for page in pages {
        let mut server = Vec::new();
        let mut client = Vec::new();
        let mut bytes = 0;
        for i in 0..a.renders {
            // The evaluate page is rate-limited per node (20 per second).
            if page.contains("evaluate") && i > 0 {
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            let t = Instant::now();
            let r = http
                .get(format!("{node}{page}"))
                .header("cookie", format!("pp_session={TOKEN}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let timing = r
                .headers()
                .get("server-timing")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split("dur=").nth(1))
                .and_then(|d| d.parse::<f64>().ok())
                .ok_or("no Server-Timing header")?;
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            client.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                return Err(format!("{page}: {status}"));
            }
            server.push(timing);
            bytes = body.len();
        }
        server.sort_by(f64::total_cmp);
        client.sort_by(f64::total_cmp);
        let (p50, p95, max) = (
            quantile(&server, 0.5),
            quantile(&server, 0.95),
            server[server.len() - 1],
        );
        let shown = if page.len() > 40 { &page[..40] } else { page };
        println!(
            "{shown:<40} {p50:>9.1} {p95:>9.1} {max:>9.1} {:>12.1} {bytes:>10}",
            quantile(&client, 0.5)
        );
        rows.push(json!({"page": page, "server_p50_ms": p50, "server_p95_ms": p95,
                         "server_max_ms": max, "client_p50_ms": quantile(&client, 0.5), "bytes": bytes}));
    }
    println!(
        "BENCH_JSON {}",
        json!({"bench": "console", "flags": a.flags, "renders": a.renders, "pages": rows})
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    bench_main("bench-console", parse(), run).await
}
