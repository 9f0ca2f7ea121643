//! OpenTelemetry trace export (node built with the cargo feature `otel`,
//! as the workspace's `--all-features` test run builds it).
//!
//! Invariant: with `--otlp-endpoint`, a write sent to a follower with a W3C
//! `traceparent` reaches the collector as OTLP/JSON spans of one trace: the
//! follower's `request` span (child of the caller's span, with method and
//! path) and the leader's `peer_request` span for the forwarded write, each
//! under the node's `service.name` and `service.instance.id`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulseplane_cluster_tests::{Cluster, TOKEN, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal OTLP/HTTP collector: keeps every JSON body posted to
/// `/v1/traces` and answers 200.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut request_line = String::new();
                    if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if request_line.starts_with("POST /v1/traces ")
                        && let Ok(v) = serde_json::from_slice(&body)
                    {
                        kept.lock().unwrap().push(v);
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

/// Every span received, with its resource's `service.name` and
/// `service.instance.id`.
fn spans(bodies: &[Value]) -> Vec<(String, String, Value)> {
    let attr = |attrs: &Value, key: &str| {
        attrs
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == key)
            .map(|a| a["value"]["stringValue"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for b in bodies {
        for rs in b["resourceSpans"].as_array().into_iter().flatten() {
            let service = attr(&rs["resource"]["attributes"], "service.name");
            let instance = attr(&rs["resource"]["attributes"], "service.instance.id");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    out.push((service.clone(), instance.clone(), span.clone()));
                }
            }
        }
    }
    out
}

fn attribute(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_is_one_trace_across_nodes() {
    let (endpoint, bodies) = collector().await;
    let flag = format!("--otlp-endpoint={endpoint}");
    let mut c = Cluster::start_with(3, &[&flag, "--otlp-service-name=pulseplane-test"]).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.create_env(leader, "prod").await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = reqwest::Client::new()
        .put(format!(
            "{}/v1/environments/prod/flags/traced",
            c.url(follower)
        ))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("content-type", "application/json")
        .body(json!({"kind": "boolean"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());

    let (request, forwarded) = wait_until(
        Duration::from_secs(20),
        "the write's spans at the collector",
        || {
            let got = spans(&bodies.lock().unwrap());
            async move {
                let of_trace: Vec<_> = got
                    .into_iter()
                    .filter(|(_, _, s)| s["traceId"] == trace_id)
                    .collect();
                let request = of_trace
                    .iter()
                    .find(|(_, _, s)| s["name"] == "request")?
                    .clone();
                let forwarded = of_trace
                    .iter()
                    .find(|(_, _, s)| s["name"] == "peer_request")?
                    .clone();
                Some((request, forwarded))
            }
        },
    )
    .await;
    let (service, instance, span) = &request;
    assert_eq!(service, "pulseplane-test");
    assert_eq!(instance, &follower.to_string());
    assert_eq!(span["parentSpanId"], caller_span, "{span}");
    assert_eq!(span["kind"], 2);
    assert_eq!(attribute(span, "method").as_deref(), Some("PUT"));
    assert_eq!(
        attribute(span, "path").as_deref(),
        Some("/v1/environments/prod/flags/traced")
    );
    assert!(attribute(span, "request_id").is_some_and(|id| !id.is_empty()));
    let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start);
    // The leader's side of the forwarded write: same trace, its own node,
    // a child of a span on the follower.
    let (_, instance, span) = &forwarded;
    assert_eq!(instance, &leader.to_string());
    assert_ne!(span["parentSpanId"], caller_span);
    assert_eq!(
        attribute(span, "request_id"),
        attribute(&request.2, "request_id")
    );
}
