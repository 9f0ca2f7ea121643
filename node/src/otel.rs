//! OpenTelemetry trace export (cargo feature `otel`): the node's tracing
//! spans (API requests, peer requests, and what runs inside them) sent to an
//! OTLP/HTTP collector as JSON (`POST {endpoint}/v1/traces`).
//!
//! Trace context follows W3C Trace Context: an API request with a
//! `traceparent` header continues the caller's trace, and a request this
//! node forwards to another (a write to the leader, the fleet view) carries
//! its own `traceparent`, so one trace shows a write across nodes.
//!
//! Export never blocks a request: finished spans go into a bounded queue
//! (dropped and counted when it is full), and a thread of its own posts them
//! in batches, once a second or every 512 spans.
//!
//! Without the feature, [`current_traceparent`] answers `None` and the flags
//! are refused at start-up.

/// A `traceparent` value: version 00, trace id, span id, sampled.
pub fn format_traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> String {
    format!("00-{}-{}-01", hex(trace_id), hex(span_id))
}

/// The trace and parent span ids of a valid `traceparent` value.
pub fn parse_traceparent(text: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = text.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    unhex(trace, &mut trace_id)?;
    unhex(span, &mut span_id)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str, out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

/// The `traceparent` of the span this task runs in, for a call to another
/// node; `None` without the feature or outside an exported span.
pub fn current_traceparent() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        export::current()
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

#[cfg(feature = "otel")]
pub use export::{Exporter, OtlpLayer};

#[cfg(feature = "otel")]
mod export {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use serde_json::{Value, json};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Subscriber, warn};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    use super::{format_traceparent, hex, parse_traceparent};

    /// Finished spans waiting for the exporter thread.
    const QUEUE: usize = 8192;
    const BATCH: usize = 512;
    const EVERY: Duration = Duration::from_secs(1);

    /// What the layer keeps for each open span.
    struct SpanData {
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: Option<[u8; 8]>,
        name: &'static str,
        start: SystemTime,
        attributes: Vec<(&'static str, Value)>,
    }

    struct Fields<'a>(&'a mut Vec<(&'static str, Value)>, &'a mut Option<String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "traceparent" {
                if !value.is_empty() {
                    *self.1 = Some(value.to_owned());
                }
            } else {
                self.0.push((field.name(), Value::from(value)));
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.0.push((field.name(), Value::from(value)));
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.0.push((field.name(), Value::from(value)));
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.0.push((field.name(), Value::from(value)));
        }
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.0.push((field.name(), Value::from(value)));
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let text = format!("{value:?}");
            self.record_str(field, &text);
        }
    }

    fn random<const N: usize>() -> [u8; N] {
        let mut out = [0u8; N];
        if getrandom::fill(&mut out).is_err() {
            out.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        if out.iter().all(|b| *b == 0) {
            out[N - 1] = 1;
        }
        out
    }

    /// The tracing layer that records spans for export.
    pub struct OtlpLayer {
        queue: SyncSender<Value>,
        dropped: Arc<AtomicU64>,
    }

    impl<S> Layer<S> for OtlpLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let mut attributes = Vec::new();
            let mut remote = None;
            attrs.record(&mut Fields(&mut attributes, &mut remote));
            // The nearest exported ancestor, else the caller's traceparent.
            let local = span.scope().skip(1).find_map(|s| {
                s.extensions()
                    .get::<SpanData>()
                    .map(|d| (d.trace_id, d.span_id))
            });
            let (trace_id, parent) = match (local, remote.as_deref().and_then(parse_traceparent)) {
                (Some((t, p)), _) => (t, Some(p)),
                (None, Some((t, p))) => (t, Some(p)),
                (None, None) => (random::<16>(), None),
            };
            span.extensions_mut().insert(SpanData {
                trace_id,
                span_id: random::<8>(),
                parent,
                name: attrs.metadata().name(),
                start: SystemTime::now(),
                attributes,
            });
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let mut ext = span.extensions_mut();
            if let Some(data) = ext.get_mut::<SpanData>() {
                let mut remote = None;
                values.record(&mut Fields(&mut data.attributes, &mut remote));
                // A root span learning its caller's trace (recorded before
                // it is entered) continues that trace.
                if data.parent.is_none()
                    && let Some((trace_id, parent)) = remote.as_deref().and_then(parse_traceparent)
                {
                    data.trace_id = trace_id;
                    data.parent = Some(parent);
                }
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(&id) else { return };
            let Some(data) = span.extensions_mut().remove::<SpanData>() else {
                return;
            };
            let encoded = encode(&data, SystemTime::now(), span.metadata().target());
            if let Err(TrySendError::Full(_)) = self.queue.try_send(encoded) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn nanos(t: SystemTime) -> String {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_string()
    }

    fn attribute(key: &str, value: &Value) -> Value {
        let v = match value {
            Value::Bool(b) => json!({"boolValue": b}),
            Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
            Value::Number(n) => json!({"doubleValue": n.as_f64()}),
            Value::String(s) => json!({"stringValue": s}),
            other => json!({"stringValue": other.to_string()}),
        };
        json!({"key": key, "value": v})
    }

    /// One span in OTLP/JSON (ids in hex, times as decimal strings).
    fn encode(d: &SpanData, end: SystemTime, target: &str) -> Value {
        // A request served for a caller is a server span; the rest are
        // internal.
        let kind = if d.name == "request" || d.name == "peer_request" {
            2
        } else {
            1
        };
        let mut attributes: Vec<Value> =
            d.attributes.iter().map(|(k, v)| attribute(k, v)).collect();
        attributes.push(attribute("code.namespace", &Value::from(target)));
        let mut span = json!({
            "traceId": hex(&d.trace_id),
            "spanId": hex(&d.span_id),
            "name": d.name,
            "kind": kind,
            "startTimeUnixNano": nanos(d.start),
            "endTimeUnixNano": nanos(end),
            "attributes": attributes,
        });
        if let Some(p) = d.parent {
            span["parentSpanId"] = Value::from(hex(&p));
        }
        span
    }

    /// The `traceparent` of the current span (or its nearest exported
    /// ancestor).
    pub(super) fn current() -> Option<String> {
        tracing::Span::current()
            .with_subscriber(|(id, dispatch)| {
                let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
                let span = registry.span(id)?;
                span.scope().find_map(|s| {
                    s.extensions()
                        .get::<SpanData>()
                        .map(|d| format_traceparent(&d.trace_id, &d.span_id))
                })
            })
            .flatten()
    }

    /// Sends the layer's spans; flushes what is queued when dropped.
    pub struct Exporter {
        stop: Option<SyncSender<Value>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Exporter {
        /// Starts the exporter thread and returns the layer that feeds it.
        /// `endpoint` is the collector's base URL (`http://host:4318`).
        pub fn start(
            endpoint: &str,
            service_name: &str,
            node_id: u64,
        ) -> std::io::Result<(OtlpLayer, Exporter)> {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            let dropped = Arc::new(AtomicU64::new(0));
            let resource = json!({"attributes": [
                attribute("service.name", &Value::from(service_name)),
                attribute("service.instance.id", &Value::from(node_id.to_string())),
                attribute("service.version", &Value::from(env!("CARGO_PKG_VERSION"))),
            ]});
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let counter = dropped.clone();
            let thread = std::thread::Builder::new()
                .name("pulseplane-otlp".into())
                .spawn(move || send_loop(rx, &url, resource, counter))?;
            Ok((
                OtlpLayer {
                    queue: tx.clone(),
                    dropped,
                },
                Exporter {
                    stop: Some(tx),
                    thread: Some(thread),
                },
            ))
        }
    }

    impl Drop for Exporter {
        fn drop(&mut self) {
            // A null asks the thread to send what is queued and stop.
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(Value::Null);
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn send_loop(rx: Receiver<Value>, url: &str, resource: Value, dropped: Arc<AtomicU64>) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let Ok(http) = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        else {
            return;
        };
        let mut batch = Vec::new();
        let mut last_warning: Option<Instant> = None;
        let mut stopping = false;
        while !stopping {
            let deadline = Instant::now() + EVERY;
            while batch.len() < BATCH {
                let wait = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(Value::Null) => {
                        stopping = true;
                        // Take what is already queued, then stop.
                        while let Ok(v) = rx.try_recv() {
                            if !v.is_null() {
                                batch.push(v);
                            }
                        }
                        break;
                    }
                    Ok(span) => batch.push(span),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        stopping = true;
                        break;
                    }
                }
            }
            if batch.is_empty() {
                continue;
            }
            let body = json!({"resourceSpans": [{
                "resource": resource,
                "scopeSpans": [{
                    "scope": {"name": "pulseplane-node", "version": env!("CARGO_PKG_VERSION")},
                    "spans": std::mem::take(&mut batch),
                }],
            }]});
            let sent = rt.block_on(async {
                http.post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
            });
            if let Err(e) = sent
                && last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                last_warning = Some(Instant::now());
                warn!(
                    error = %e,
                    dropped = dropped.load(Ordering::Relaxed),
                    "cannot send spans to the OpenTelemetry collector"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let t = [7u8; 16];
        let s = [9u8; 8];
        let text = format_traceparent(&t, &s);
        assert_eq!(
            text,
            "00-07070707070707070707070707070707-0909090909090909-01"
        );
        assert_eq!(parse_traceparent(&text), Some((t, s)));
    }

    #[test]
    fn bad_traceparents_are_ignored() {
        for bad in [
            "",
            "00-xyz-0909090909090909-01",
            "00-00000000000000000000000000000000-0909090909090909-01",
            "00-07070707070707070707070707070707-0000000000000000-01",
            "ff-07070707070707070707070707070707-0909090909090909-01",
            "00-07070707070707070707070707070707-0909090909090909-01-extra",
            "00-0707070707070707070707070707070-0909090909090909-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
