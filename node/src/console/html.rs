//! HTML for the console: escaping, the page frame, and formatting. Every
//! value that reaches a page goes through [`esc`] (or [`attr`]) first.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Text escaped for HTML content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A Unix-milliseconds time as `2026-12-07 16:40:01Z`.
pub fn when(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
            .replacen('T', " ", 1),
        Err(_) => "-".into(),
    }
}

/// The section of the console a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Environments,
    Audit,
    Cluster,
    SignIn,
}

/// The tab of an environment's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Flags,
    History,
    Evaluate,
    Fleet,
}

/// Who is signed in, for the page header.
pub struct Header<'a> {
    pub subject: &'a str,
    pub source: &'a str,
    /// The session came from a cookie (a sign-out button makes sense).
    pub cookie: bool,
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(title: &str, section: Section, who: Option<&Header<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Pulseplane</title>\
         <link rel=\"icon\" href=\"/console/assets/icon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a><header class=\"top\">\
         <a class=\"brand\" href=\"/console\">Pulseplane</a>",
        esc(title)
    );
    if let Some(who) = who {
        out.push_str("<nav aria-label=\"Main\">");
        for (s, href, label) in [
            (Section::Environments, "/console", "Environments"),
            (Section::Audit, "/console/audit", "Audit log"),
            (Section::Cluster, "/console/cluster", "Cluster"),
        ] {
            let current = if s == section {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
        }
        let _ = write!(
            out,
            "</nav><div class=\"who\"><span title=\"{}\">{}</span>",
            esc(who.source),
            esc(who.subject)
        );
        if who.cookie {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/console/sign-out\">{}\
                 <button type=\"submit\" class=\"link\">Sign out</button></form>",
                csrf_field(who.csrf)
            );
        }
        out.push_str("</div>");
    }
    let _ = writeln!(
        out,
        "</header><main id=\"main\" tabindex=\"-1\">{body}</main></body></html>"
    );
    out
}

/// The tabs of an environment's pages.
pub fn env_tabs(env: &str, tab: Tab, can_export: bool) -> String {
    let e = super::enc(env);
    let mut out = format!(
        "<p class=\"crumbs\"><a href=\"/console\">Environments</a> / <strong>{}</strong></p>\
         <nav class=\"tabs\" aria-label=\"Environment\">",
        esc(env)
    );
    for (t, path, label) in [
        (Tab::Flags, "", "Flags"),
        (Tab::History, "/history", "History"),
        (Tab::Evaluate, "/evaluate", "Evaluate"),
        (Tab::Fleet, "/fleet", "Fleet"),
    ] {
        let current = if t == tab {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a href=\"/console/env/{e}{path}\"{current}>{label}</a>"
        );
    }
    if can_export {
        let _ = write!(
            out,
            "<a href=\"/console/env/{e}/export\" download>Export bootstrap file</a>"
        );
    }
    out.push_str("</nav>");
    out
}

/// The hidden CSRF field of a form.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// An HTML answer.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A page that only says what went wrong.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/console\">Back to the console</a></p>",
        esc(title),
        esc(message)
    );
    respond(status, page(title, Section::SignIn, None, &body))
}

/// A notice at the top of a page (`role=status` for screen readers).
pub fn notice(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("<p class=\"notice\" role=\"status\">{}</p>", esc(text))
    }
}

/// JSON pretty-printed with two-space indents, and the line (from 0) at
/// which each JSON pointer's value starts, so that an error at a pointer
/// can be shown at its line.
pub fn pretty_with_lines(value: &serde_json::Value) -> (String, Vec<(String, usize)>) {
    fn walk(
        v: &serde_json::Value,
        pointer: &str,
        indent: usize,
        out: &mut String,
        lines: &mut Vec<(String, usize)>,
    ) {
        use serde_json::Value;
        lines.push((pointer.to_owned(), out.matches('\n').count()));
        let pad = "  ".repeat(indent + 1);
        let close = "  ".repeat(indent);
        match v {
            Value::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad);
                    walk(item, &format!("{pointer}/{i}"), indent + 1, out, lines);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&close);
                out.push(']');
            }
            Value::Object(map) if !map.is_empty() => {
                out.push_str("{\n");
                for (i, (k, item)) in map.iter().enumerate() {
                    out.push_str(&pad);
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push_str(": ");
                    let escaped = k.replace('~', "~0").replace('/', "~1");
                    walk(
                        item,
                        &format!("{pointer}/{escaped}"),
                        indent + 1,
                        out,
                        lines,
                    );
                    out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
                }
                out.push_str(&close);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    let mut lines = Vec::new();
    walk(value, "", 0, &mut out, &mut lines);
    (out, lines)
}

/// The line of the longest pointer in `lines` that `path` starts with.
pub fn line_of(lines: &[(String, usize)], path: &str) -> Option<usize> {
    lines
        .iter()
        .filter(|(p, _)| path == p || path.starts_with(&format!("{p}/")))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, l)| *l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(when(0), "1970-01-01 00:00:00Z");
        assert_eq!(when(-1), "-");
    }

    #[test]
    fn pointers_map_to_lines() {
        let v = serde_json::json!({"a": 1, "rules": [{"x": true}, {"y/z": [1, 2]}]});
        let (text, lines) = pretty_with_lines(&v);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, v);
        let nth = |n: usize| text.lines().nth(n).unwrap().trim().to_owned();
        assert_eq!(nth(line_of(&lines, "/a").unwrap()), "\"a\": 1,");
        assert_eq!(nth(line_of(&lines, "/rules/1/y~1z/0").unwrap()), "1,");
        // A pointer below any value shown falls back to its nearest parent.
        assert_eq!(
            nth(line_of(&lines, "/rules/0/x/deeper").unwrap()),
            "\"x\": true"
        );
    }
}
