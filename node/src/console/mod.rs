//! The operator console: server-rendered HTML at `/console`, served by
//! every node from the binary itself.
//!
//! The console is a client of the public API and nothing more. Every page
//! and every action is one or more API requests, dispatched in-process to
//! the same router that serves `/v1` and `/admin/v1`, carrying the signed-in
//! user's credential. The API authenticates, authorizes and audits them
//! exactly as it does a `curl`; the console hides what the user's roles do
//! not grant, but never decides anything the API would not.
//!
//! Sign-in: a pasted bearer token, kept in an HttpOnly, SameSite=Strict
//! session cookie (Secure when served over TLS), or, with no cookie, the
//! trusted-proxy identity headers of an authenticating proxy in front.
//!
//! CSRF: every state-changing form is a POST carrying a token that must
//! equal the `pp_csrf` cookie (a random value, SameSite=Strict), and a
//! cross-site `Origin` or `Sec-Fetch-Site` is refused.
//!
//! Every answer carries `Server-Timing: render;dur=<ms>`, the node's time
//! for the page, its API calls included (which also count in the API's
//! request metrics, like any other).
//!
//! Layout:
//! - this module: routes, the request context (cookies, CSRF), API dispatch
//! - `html`: escaping, the page frame, formatting
//! - `pages`: sign-in and the shared page helpers; `pages/*`: one file per
//!   page (environments, flags, editor, history, evaluate, fleet and
//!   export, audit, cluster) with its actions

mod html;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;

use crate::node::Node;

/// The session cookie (the bearer token) and the CSRF cookie.
const SESSION_COOKIE: &str = "pp_session";
const CSRF_COOKIE: &str = "pp_csrf";
/// The largest API answer the console reads (an export, a long history).
const MAX_API_BODY: usize = 64 * 1024 * 1024;

/// What every console handler shares.
pub struct Console {
    node: Arc<Node>,
    /// The API itself, called in-process.
    api: Router,
}

/// The console's routes. `api` is the API router the pages call.
pub fn router(node: Arc<Node>, api: Router) -> Router {
    let console = Arc::new(Console {
        node: node.clone(),
        api,
    });
    Router::new()
        .route("/console", get(pages::environments))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/environments", post(pages::create_environment))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/assets/console.css", get(pages::stylesheet))
        .route("/console/assets/console.js", get(pages::script))
        .route("/console/assets/icon.svg", get(pages::icon))
        .route("/console/env/{env}", get(pages::flags))
        .route("/console/env/{env}/flags", post(pages::create_flag))
        .route(
            "/console/env/{env}/flags/{key}",
            get(pages::editor).post(pages::save_flag),
        )
        .route("/console/env/{env}/flags/{key}/kill", post(pages::kill))
        .route(
            "/console/env/{env}/flags/{key}/restore",
            post(pages::restore),
        )
        .route("/console/env/{env}/publish", post(pages::publish))
        .route("/console/env/{env}/history", get(pages::history))
        .route("/console/env/{env}/history/{version}", get(pages::version))
        .route("/console/env/{env}/rollback", post(pages::rollback))
        .route("/console/env/{env}/evaluate", get(pages::evaluate))
        .route("/console/env/{env}/export", get(pages::export))
        .route("/console/env/{env}/fleet", get(pages::fleet))
        .route("/console/env/{env}/fleet.json", get(pages::fleet_json))
        .route("/console/audit", get(pages::audit))
        .route("/console/cluster", get(pages::cluster))
        .route("/console/cluster/nodes", post(pages::add_node))
        .route(
            "/console/cluster/nodes/{id}/remove",
            post(pages::remove_node),
        )
        .layer(middleware::from_fn_with_state(console.clone(), session))
        .layer(DefaultBodyLimit::max(node.max_body_bytes))
        .layer(middleware::from_fn_with_state(node, crate::api::observe))
        .with_state(console)
}

/// The request context of a console page: who is asking (as cookies and
/// forwarded headers), the CSRF token, and the API to ask.
#[derive(Clone)]
pub(crate) struct Ctx {
    console: Arc<Console>,
    /// The session cookie's bearer token.
    token: Option<String>,
    /// The CSRF token (the cookie's, or a fresh one set on the answer).
    csrf: String,
    fresh_csrf: bool,
    /// Cookies get `Secure`: the node or the proxy in front serves TLS.
    secure: bool,
    /// The request's headers to pass on to the API (the trusted-proxy
    /// identity among them), without cookies or credentials.
    forward: HeaderMap,
    peer: Option<ConnectInfo<SocketAddr>>,
    /// No cross-site `Origin` or `Sec-Fetch-Site`.
    same_origin: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Ctx, Response> {
        parts.extensions.get::<Ctx>().cloned().ok_or_else(|| {
            (StatusCode::INTERNAL_SERVER_ERROR, "no console context").into_response()
        })
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// 32 random hex digits from the OS generator (from the process's own
/// generator should the OS have none; SameSite and the origin check still
/// stand then).
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie value as [`enc`] wrote it.
fn decode(value: &str) -> String {
    form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Whether the request came from a page of this origin (or from no page
/// at all): a browser sends `Origin` and `Sec-Fetch-Site` on form posts.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

/// Builds the context of every console request, and adds the CSRF cookie
/// and the console's security headers to every answer.
async fn session(
    axum::extract::State(console): axum::extract::State<Arc<Console>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let headers = req.headers();
    let token = cookie(headers, SESSION_COOKIE).map(decode);
    let existing = cookie(headers, CSRF_COOKIE)
        .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let fresh_csrf = existing.is_none();
    let csrf = existing.unwrap_or_else(random_token);
    let secure = console.node.tls
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut forward = headers.clone();
    for name in [
        header::COOKIE,
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::ACCEPT_ENCODING,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::ORIGIN,
        header::REFERER,
    ] {
        forward.remove(name);
    }
    forward.remove(crate::api::common::IDEMPOTENCY_HEADER);
    forward.remove(crate::api::request_id::REQUEST_ID_HEADER);
    let ctx = Ctx {
        console,
        token,
        csrf: csrf.clone(),
        fresh_csrf,
        secure,
        same_origin: same_origin(headers),
        forward,
        peer: req.extensions().get::<ConnectInfo<SocketAddr>>().cloned(),
    };
    req.extensions_mut().insert(ctx);
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if fresh_csrf
        && let Ok(v) = HeaderValue::from_str(&cookie_line(CSRF_COOKIE, &csrf, secure, None))
    {
        h.append(header::SET_COOKIE, v);
    }
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on form posts.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    let took = format!("render;dur={:.1}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&took) {
        h.insert(HeaderName::from_static("server-timing"), v);
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A `Set-Cookie` value for the console's path; `max_age` 0 deletes.
fn cookie_line(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut line = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if secure {
        line.push_str("; Secure");
    }
    if let Some(age) = max_age {
        line.push_str(&format!("; Max-Age={age}"));
    }
    line
}

/// An API error as the console shows it.
#[derive(Debug, Clone)]
pub(crate) struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `(JSON pointer, problem)`.
    pub details: Vec<(String, String)>,
}

impl ApiFailure {
    fn internal(message: impl Into<String>) -> ApiFailure {
        ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    fn of(status: StatusCode, body: &[u8]) -> ApiFailure {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let details = v
            .get("details")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|d| {
                        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                        (s("path"), s("problem"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = text("message");
        ApiFailure {
            status,
            code: text("code"),
            message: if message.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                message
            },
            details,
        }
    }
}

/// An API answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Ctx {
    /// Sends one request to the API as the signed-in user.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Reply, ApiFailure> {
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| ApiFailure::internal(e.to_string()))?,
            None => Vec::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(bytes))
            .map_err(|e| ApiFailure::internal(format!("bad API request {path:?}: {e}")))?;
        let h = req.headers_mut();
        *h = self.forward.clone();
        if body.is_some() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(token) = &self.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            h.insert(header::AUTHORIZATION, v);
        }
        if let Some(id) = crate::api::request_id::current()
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            h.insert(crate::api::request_id::REQUEST_ID_HEADER, v);
        }
        for (k, v) in extra {
            h.insert(k.clone(), v.clone());
        }
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        let response = match self.console.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_API_BODY)
            .await
            .map_err(|e| ApiFailure::internal(format!("reading the API's answer: {e}")))?;
        if parts.status.is_success() || parts.status == StatusCode::NOT_MODIFIED {
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        } else {
            Err(ApiFailure::of(parts.status, &body))
        }
    }

    /// A GET answered with JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, ApiFailure> {
        let reply = self.call(Method::GET, path, None, &[]).await?;
        serde_json::from_slice(&reply.body).map_err(|e| {
            ApiFailure::internal(format!("the API answered {path} with bad JSON: {e}"))
        })
    }

    /// A write answered with JSON.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Value, ApiFailure> {
        let reply = self.call(method, path, Some(body), extra).await?;
        Ok(serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
    }
}

/// A console form: its fields, after the CSRF check.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The field, trimmed; empty when absent.
    pub(crate) fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("").trim()
    }

    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v == "on" || v == "1" || v == "true")
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Form, Response> {
        let (mut parts, body) = req.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let form = Form(fields);
        let given = form.get("csrf").unwrap_or("");
        if !ctx.same_origin || ctx.fresh_csrf || !constant_time_eq(given, &ctx.csrf) {
            return Err(html::error_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from this console page, or the page is too old. \
                 Go back, reload the page and try again.",
            ));
        }
        Ok(form)
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Percent-encodes one URL path segment or query value.
pub(crate) fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; pp_csrf=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("pp_session=tok"));
        assert_eq!(cookie(&h, "pp_csrf"), Some("xyz"));
        assert_eq!(cookie(&h, "pp_session"), Some("tok"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn cross_site_posts_are_recognized() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7401"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7401"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7401"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn session_cookies_are_strict() {
        let line = cookie_line(SESSION_COOKIE, "t", true, None);
        assert!(line.contains("HttpOnly"));
        assert!(line.contains("SameSite=Strict"));
        assert!(line.contains("Secure"));
        assert!(!cookie_line(SESSION_COOKIE, "t", false, Some(0)).contains("Secure"));
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert_eq!(random_token().len(), 32);
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(decode(&enc("x;y=z +")), "x;y=z +");
    }
}
