//! Loads the peer benchmark's flag set (../shared/anchors/gen_features.py,
//! translated into Pulseplane flags and segments) into an environment on a
//! running node through the API, and publishes it.
//!
//!   bench-flagset --endpoint http://127.0.0.1:7401 --token T --env bench \
//!     [--count 200] [--features features.json]
//!
//! `--count N` keeps the first N flags (and the segments they use). Without
//! `--features` the generator script is run.

#[path = "../../../sdk/core/benches/eval/unleash_translate.rs"]
mod unleash_translate;

use std::collections::BTreeSet;
use std::process::ExitCode;

use pulseplane_core::model::Operator;
use serde_json::{Value, json};

struct Args {
    endpoint: String,
    token: String,
    env: String,
    count: usize,
    features: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        endpoint: String::new(),
        token: std::env::var("PULSEPLANE_TOKEN").unwrap_or_default(),
        env: "bench".into(),
        count: 200,
        features: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => a.endpoint = value,
            "--token" => a.token = value,
            "--env" => a.env = value,
            "--count" => a.count = value.parse().map_err(|_| "--count: not a number")?,
            "--features" => a.features = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.endpoint.is_empty() {
        return Err("--endpoint is required".into());
    }
    Ok(a)
}

fn features(path: Option<&str>) -> Result<Value, String> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
        None => {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/anchors/gen_features.py"
            );
            let out = std::process::Command::new("python3")
                .arg(script)
                .output()
                .map_err(|e| format!("{script}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "{script}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    serde_json::from_str(&text).map_err(|e| format!("features JSON: {e}"))
}

async fn send(
    http: &reqwest::Client,
    a: &Args,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let url = format!("{}{path}", a.endpoint.trim_end_matches('/'));
    let r = http
        .request(method, &url)
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let v: Value = r
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if status.is_success() || (status.as_u16() == 409 && path == "/v1/environments") {
        Ok(v)
    } else {
        Err(format!("{url}: {status} {v}"))
    }
}

async fn run(a: Args) -> Result<(), String> {
    let (mut flags, segments) = unleash_translate::translate(&features(a.features.as_deref())?);
    flags.truncate(a.count);
    let used: BTreeSet<String> = flags
        .iter()
        .flat_map(|f| f.rules.iter())
        .flat_map(|r| r.clauses.iter())
        .filter(|c| c.operator == Operator::InSegment)
        .flat_map(|c| {
            c.values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
        })
        .collect();
    let http = reqwest::Client::new();
    send(
        &http,
        &a,
        reqwest::Method::POST,
        "/v1/environments",
        &json!({"key": a.env, "name": a.env}),
    )
    .await?;
    let mut loaded_segments = 0;
    for s in segments.iter().filter(|s| used.contains(&s.key)) {
        let path = format!("/v1/environments/{}/segments/{}", a.env, s.key);
        send(
            &http,
            &a,
            reqwest::Method::PUT,
            &path,
            &serde_json::to_value(s).map_err(|e| e.to_string())?,
        )
        .await?;
        loaded_segments += 1;
    }
    for f in &flags {
        let path = format!("/v1/environments/{}/flags/{}", a.env, f.key);
        send(
            &http,
            &a,
            reqwest::Method::PUT,
            &path,
            &serde_json::to_value(f).map_err(|e| e.to_string())?,
        )
        .await?;
    }
    let v = send(
        &http,
        &a,
        reqwest::Method::POST,
        &format!("/v1/environments/{}/publish", a.env),
        &json!({"message": "benchmark flag set"}),
    )
    .await?;
    eprintln!(
        "loaded {} flags and {loaded_segments} segments into {}; published version {}",
        flags.len(),
        a.env,
        v["env_version"]
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    pulseplane_cluster_tests::bench_main("bench-flagset", args(), run).await
}
