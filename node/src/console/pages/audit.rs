//! The audit log, filtered by subject, environment and time.

use std::fmt::Write;

use axum::extract::RawQuery;
use axum::http::StatusCode;

use super::super::html::{Section, esc, when};
use super::super::{Ctx, enc};
use super::*;

/// A `datetime-local` value (taken as UTC) as Unix milliseconds.
pub(super) fn parse_local_time(text: &str) -> Option<i64> {
    let full = if text.len() == 16 {
        format!("{text}:00")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
}

pub(crate) async fn audit(ctx: Ctx, RawQuery(q): RawQuery) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let mut api = String::from("/v1/audit?limit=100");
    let mut problems = Vec::new();
    for name in ["subject", "env", "cursor"] {
        let v = field(&q, name);
        if !v.is_empty() {
            let _ = write!(api, "&{name}={}", enc(v));
        }
    }
    for name in ["since", "until"] {
        let v = field(&q, name);
        if v.is_empty() {
            continue;
        }
        match parse_local_time(v) {
            Some(ms) => {
                let _ = write!(api, "&{name}={ms}");
            }
            None => problems.push(format!("{name}: {v:?} is not a date and time")),
        }
    }
    let page = if problems.is_empty() {
        match ctx.get(&api).await {
            Ok(p) => Some(p),
            Err(f)
                if f.status == StatusCode::UNPROCESSABLE_ENTITY
                    || f.status == StatusCode::FORBIDDEN =>
            {
                problems.push(f.message.clone());
                None
            }
            Err(f) => return Err(f.into()),
        }
    } else {
        None
    };
    let mut body = String::from("<h1>Audit log</h1>");
    if !problems.is_empty() {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            esc(&problems.join("; "))
        );
    }
    let _ = write!(
        body,
        "<form method=\"get\" class=\"row filters\">\
         <label>Subject <input name=\"subject\" value=\"{}\"></label>\
         <label>Environment <input name=\"env\" value=\"{}\"></label>\
         <label>From (UTC) <input type=\"datetime-local\" name=\"since\" value=\"{}\"></label>\
         <label>Until (UTC) <input type=\"datetime-local\" name=\"until\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        esc(field(&q, "subject")),
        esc(field(&q, "env")),
        esc(field(&q, "since")),
        esc(field(&q, "until")),
    );
    if let Some(mut page) = page {
        body.push_str(
            "<table class=\"list\" id=\"audit\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">When</th>\
             <th scope=\"col\">Subject</th><th scope=\"col\">Environment</th><th scope=\"col\">Action</th>\
             <th scope=\"col\">Target</th><th scope=\"col\">Outcome</th><th scope=\"col\">Version</th><th scope=\"col\">Request</th></tr></thead><tbody>",
        );
        let items = match page["items"].take() {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        for a in &items {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                s(&a["seq"]),
                when(a["at_ms"].as_i64().unwrap_or(0)),
                esc(&s(&a["subject"])),
                esc(&s(&a["env"])),
                esc(&s(&a["action"])),
                esc(&s(&a["permission"])),
                esc(&s(&a["target"])),
                esc(&s(&a["outcome"])),
                esc(&s(&a["env_version"])),
                esc(&s(&a["request_id"])),
            );
        }
        if items.is_empty() {
            body.push_str("<tr><td colspan=\"9\" class=\"muted\">No entries match.</td></tr>");
        }
        body.push_str("</tbody></table>");
        if let Some(next) = page["next_cursor"].as_u64() {
            let mut link: Vec<(String, String)> =
                q.iter().filter(|(k, _)| k != "cursor").cloned().collect();
            link.push(("cursor".into(), next.to_string()));
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(link)
                .finish();
            let _ = write!(
                body,
                "<p><a href=\"/console/audit?{}\">Next entries</a></p>",
                esc(&query)
            );
        }
    }
    Ok(render(&ctx, &me, "Audit log", Section::Audit, &body))
}
