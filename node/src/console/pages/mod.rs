//! The console's pages and actions. Each reads or writes through the API
//! (`Ctx::get`, `Ctx::send`) as the signed-in user; an API refusal is shown
//! as it came (status, code, message and the fields it names).

use std::fmt::Write;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use pulseplane_core::Permission;
use pulseplane_core::access::{PermissionScope, Role};
use serde_json::Value;

use super::html::{self, Header, Section, csrf_field, esc, respond};
use super::{ApiFailure, Ctx, Form, SESSION_COOKIE, cookie_line, enc};

mod audit;
mod cluster;
mod editor;
mod environments;
mod evaluate;
mod flags;
mod fleet;
mod history;

pub(crate) use audit::audit;
pub(crate) use cluster::{add_node, cluster, remove_node};
pub(crate) use editor::{editor, save_flag};
pub(crate) use environments::{create_environment, environments};
pub(crate) use evaluate::evaluate;
pub(crate) use flags::{create_flag, flags, kill, publish, restore};
pub(crate) use fleet::{export, fleet, fleet_json};
pub(crate) use history::{history, rollback, version};

use editor::{changes_table, flag_path};
use environments::fleet_line;
use flags::{badges, kill_form};

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");
const ICON: &str = include_str!("../assets/icon.svg");

type PageResult = Result<Response, Response>;

impl From<ApiFailure> for Response {
    fn from(f: ApiFailure) -> Response {
        if f.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/console/sign-in").into_response();
        }
        let mut message = f.message.clone();
        for (path, problem) in &f.details {
            let _ = write!(message, " ({path}: {problem})");
        }
        let title = match f.status {
            StatusCode::FORBIDDEN => "Not allowed".to_owned(),
            StatusCode::NOT_FOUND => "Not found".to_owned(),
            s => format!("The API answered {} {}", s.as_u16(), f.code),
        };
        html::error_page(f.status, &title, &message)
    }
}

/// The signed-in caller, as `GET /v1/whoami` describes it.
pub(crate) struct Me {
    subject: String,
    source: String,
    roles: Vec<Role>,
    /// The admin token holds every permission.
    admin: bool,
    /// Signed in by cookie (else by the proxy in front).
    cookie: bool,
}

impl Me {
    /// Whether the caller's roles grant `p` in `env` (`None`: cluster-wide,
    /// or anywhere for a permission the API checks per environment).
    fn can(&self, p: Permission, env: Option<&str>) -> bool {
        if self.admin {
            return true;
        }
        match (p.scope(), env) {
            (PermissionScope::Environment, None) => {
                self.roles.iter().any(|r| r.permissions.contains(&p))
            }
            _ => self.roles.iter().any(|r| r.grants(p, env)),
        }
    }

    fn header<'a>(&'a self, ctx: &'a Ctx) -> Header<'a> {
        Header {
            subject: &self.subject,
            source: &self.source,
            cookie: self.cookie,
            csrf: &ctx.csrf,
        }
    }
}

/// Who is asking; an unauthenticated caller is sent to the sign-in page.
async fn me(ctx: &Ctx) -> Result<Me, Response> {
    let v = ctx.get("/v1/whoami").await?;
    let source = v["source"].as_str().unwrap_or("").to_owned();
    Ok(Me {
        subject: v["subject"].as_str().unwrap_or("").to_owned(),
        admin: source == "admin_token",
        roles: serde_json::from_value(v["roles"].clone()).unwrap_or_default(),
        source,
        cookie: ctx.token.is_some(),
    })
}

fn render(ctx: &Ctx, me: &Me, title: &str, section: Section, body: &str) -> Response {
    respond(
        StatusCode::OK,
        html::page(title, section, Some(&me.header(ctx)), body),
    )
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Every item of a paged list endpoint (`?limit=1000`, following cursors).
async fn all_items(ctx: &Ctx, path: &str) -> Result<Vec<Value>, ApiFailure> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=1000&cursor={}", enc(c)),
            None => format!("{path}{sep}limit=1000"),
        };
        let mut page = ctx.get(&url).await?;
        if let Value::Array(list) = page["items"].take() {
            items.extend(list);
        }
        match page["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return Ok(items),
        }
    }
}

fn query_fields(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.trim())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The environment's published version in a write's answer.
fn version_of(outcome: &Value) -> u64 {
    outcome["env_version"].as_u64().unwrap_or(0)
}

/// A confirmation page for an action posted without the page's script
/// (which asks in a dialog instead).
fn confirm_page(
    ctx: &Ctx,
    me: &Me,
    action: &str,
    question: &str,
    back: &str,
    form: &Form,
) -> Response {
    let mut hidden = String::new();
    for (k, v) in &form.0 {
        if k != "csrf" && k != "confirmed" {
            let _ = write!(
                hidden,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            );
        }
    }
    let body = format!(
        "<h1>Please confirm</h1><p>{}</p><form method=\"post\" action=\"{}\">{}{hidden}\
         <input type=\"hidden\" name=\"confirmed\" value=\"yes\">\
         <button type=\"submit\" class=\"danger\" autofocus>Confirm</button> \
         <a href=\"{}\">Cancel</a></form>",
        esc(question),
        esc(action),
        csrf_field(&ctx.csrf),
        esc(back)
    );
    render(ctx, me, "Please confirm", Section::Environments, &body)
}

pub(crate) async fn sign_in_page(ctx: Ctx) -> Response {
    if ctx.get("/v1/whoami").await.is_ok() {
        return see_other("/console");
    }
    sign_in_form(&ctx, StatusCode::OK, "")
}

fn sign_in_form(ctx: &Ctx, status: StatusCode, error: &str) -> Response {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"token-error\">{}</p>",
            esc(error)
        )
    };
    let body = format!(
        "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/console/sign-in\" class=\"stack narrow\">{}\
         <label for=\"token\">Bearer token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus \
         aria-describedby=\"token-help\">\
         <p id=\"token-help\" class=\"help\">A JWT from your identity provider, or the cluster's admin token. \
         It is kept in an HttpOnly session cookie for this browser session. Behind an authenticating \
         proxy that the nodes trust, no token is needed.</p>\
         <button type=\"submit\">Sign in</button></form>",
        csrf_field(&ctx.csrf)
    );
    respond(status, html::page("Sign in", Section::SignIn, None, &body))
}

pub(crate) async fn sign_in(ctx: Ctx, form: Form) -> Response {
    let token = form.text("token").to_owned();
    if token.is_empty() {
        return sign_in_form(
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            "token: paste a token",
        );
    }
    let mut with_token = ctx.clone();
    with_token.token = Some(token.clone());
    match with_token.get("/v1/whoami").await {
        Ok(_) => {
            let mut r = see_other("/console");
            let line = cookie_line(SESSION_COOKIE, &enc(&token), ctx.secure, None);
            if let Ok(v) = HeaderValue::from_str(&line) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(f) => sign_in_form(&ctx, f.status, &format!("token: {}", f.message)),
    }
}

pub(crate) async fn sign_out(ctx: Ctx, _form: Form) -> Response {
    let mut r = see_other("/console/sign-in");
    let line = cookie_line(SESSION_COOKIE, "", ctx.secure, Some(0));
    if let Ok(v) = HeaderValue::from_str(&line) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub(crate) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

pub(crate) async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_utc() {
        assert_eq!(audit::parse_local_time("1970-01-01T00:01"), Some(60_000));
        assert_eq!(audit::parse_local_time("1970-01-01T00:00:02"), Some(2_000));
        assert_eq!(audit::parse_local_time("yesterday"), None);
    }

    #[test]
    fn flag_pointers_find_their_form_fields() {
        assert_eq!(editor::form_field("/description"), Some("description"));
        assert_eq!(editor::form_field("/default/variant"), Some("default"));
        assert_eq!(editor::form_field("/rules/0/clauses/0/operator"), None);
        assert_eq!(
            editor::without_position("unknown variant `x` at line 1 column 206"),
            "unknown variant `x`"
        );
        assert_eq!(
            editor::without_position("at line 5 of the rules"),
            "at line 5 of the rules"
        );
    }

    #[test]
    fn permissions_follow_roles() {
        let role: Role = serde_json::from_value(serde_json::json!({
            "name": "ops", "permissions": ["flag.kill", "flag.read"],
            "environments": ["prod"], "updated_at_ms": 0, "updated_by": "x"
        }))
        .unwrap();
        let me = Me {
            subject: "alice".into(),
            source: "jwt".into(),
            roles: vec![role],
            admin: false,
            cookie: true,
        };
        assert!(me.can(Permission::FlagKill, Some("prod")));
        assert!(!me.can(Permission::FlagKill, Some("dev")));
        assert!(!me.can(Permission::FlagPublish, Some("prod")));
        assert!(!me.can(Permission::ClusterManage, None));
        assert!(me.can(Permission::FlagKill, None));
    }
}
