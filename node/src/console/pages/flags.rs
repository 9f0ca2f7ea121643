//! The flags of one environment: search, state badges, the kill switch,
//! publish, and new flags; and the kill, restore and publish actions.

use std::fmt::Write;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, Method, header};
use pulseplane_core::Permission;
use serde_json::{Value, json};

use super::super::html::{self, Section, Tab, csrf_field, esc, when};
use super::super::{Ctx, Form, enc};
use super::*;

/// A flag's state badges, its state for the filter (`changed`, `killed`
/// or `published`), and whether it has changes to publish.
pub(super) fn badges(f: &Value) -> (String, &'static str, bool) {
    let mut out = String::new();
    let mut state = "published";
    if f["published"].is_null() {
        out.push_str("<span class=\"badge draft\">never published</span>");
        state = "changed";
    } else if f["unpublished_changes"].as_bool() == Some(true) {
        out.push_str("<span class=\"badge draft\">unpublished changes</span>");
        state = "changed";
    } else {
        out.push_str("<span class=\"badge ok\">published</span>");
    }
    if f["draft"].is_null() && !f["published"].is_null() {
        out.push_str("<span class=\"badge draft\">deleted in draft</span>");
        state = "changed";
    }
    if f["killed"].as_bool() == Some(true) {
        out.push_str("<span class=\"badge killed\">killed</span>");
        state = "killed";
    } else if f["published"]["enabled"].as_bool() == Some(false) {
        out.push_str("<span class=\"badge off\">disabled</span>");
    }
    let changed = f["published"].is_null()
        || f["draft"].is_null()
        || f["unpublished_changes"].as_bool() == Some(true);
    (out, state, changed)
}

pub(super) fn kill_form(ctx: &Ctx, env: &str, key: &str, killed: bool) -> String {
    let (action, label, question, class) = if killed {
        (
            "restore",
            "Restore",
            format!("Restore flag {key} in {env}? It serves its published rules again."),
            "",
        )
    } else {
        (
            "kill",
            "Kill",
            format!("Kill flag {key} in {env}? Every SDK will serve its off variant."),
            " class=\"danger\"",
        )
    };
    format!(
        "<form method=\"post\" action=\"/console/env/{}/flags/{}/{action}\" class=\"inline\" data-confirm=\"{}\">{}\
         <input type=\"hidden\" name=\"confirmed\" value=\"\">\
         <button type=\"submit\"{class} aria-label=\"{label} {}\">{label}</button></form>",
        enc(env),
        enc(key),
        esc(&question),
        csrf_field(&ctx.csrf),
        esc(key),
    )
}

/// The live fleet panel: filled and refreshed by the page's script.
fn fleet_panel(env: &str, version: u64) -> String {
    format!(
        "<section class=\"fleet\" id=\"fleet\" aria-live=\"polite\" data-fleet=\"/console/env/{}/fleet.json\" \
         data-version=\"{version}\"><h2>Fleet</h2><p class=\"fleet-line\">Version {version} published; \
         waiting for the SDK fleet's report.</p><meter min=\"0\" max=\"1\" value=\"0\" aria-hidden=\"true\"></meter></section>",
        enc(env)
    )
}

pub(crate) async fn flags(ctx: Ctx, Path(env): Path<String>, RawQuery(q): RawQuery) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let e = enc(&env);
    let info = ctx.get(&format!("/v1/environments/{e}")).await?;
    let flags = all_items(&ctx, &format!("/v1/environments/{e}/flags")).await?;
    let version = info["version"].as_u64().unwrap_or(0);
    let search = field(&q, "q").to_lowercase();
    let show = match field(&q, "show") {
        "changed" => "changed",
        "killed" => "killed",
        _ => "all",
    };
    let can_kill = me.can(Permission::FlagKill, Some(&env));
    let mut body = html::env_tabs(&env, Tab::Flags, me.can(Permission::ExportRead, Some(&env)));
    let _ = write!(
        body,
        "<h1>Flags in {}</h1><p>{} · version {version} · {} flags</p>",
        esc(&env),
        esc(&s(&info["name"])),
        flags.len()
    );
    let flag = field(&q, "flag");
    body.push_str(&html::notice(&match field(&q, "did") {
        "killed" => format!("Killed {flag}: version {} is out.", field(&q, "version")),
        "restored" => format!("Restored {flag}: version {} is out.", field(&q, "version")),
        "published" => format!("Published version {}.", field(&q, "version")),
        _ => String::new(),
    }));
    if me.can(Permission::EnvRead, Some(&env)) {
        body.push_str(&fleet_panel(&env, version));
    }
    let _ = write!(
        body,
        "<form method=\"get\" class=\"row filters\" role=\"search\">\
         <label>Search <input type=\"search\" name=\"q\" id=\"flag-filter\" value=\"{}\" placeholder=\"key or description\"></label>\
         <label>Show <select name=\"show\" id=\"flag-show\">",
        esc(field(&q, "q"))
    );
    for (value, label) in [
        ("all", "all flags"),
        ("changed", "with unpublished changes"),
        ("killed", "killed"),
    ] {
        let sel = if value == show { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{value}\"{sel}>{label}</option>");
    }
    body.push_str(
        "</select></label><button type=\"submit\">Filter</button></form>\
         <table class=\"list\" id=\"flags\"><thead><tr><th scope=\"col\">Flag</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Draft updated</th><th scope=\"col\">Kill switch</th></tr></thead><tbody>",
    );
    let mut unpublished = 0;
    let mut shown = 0;
    for f in &flags {
        let key = s(&f["key"]);
        let current = if f["draft"].is_null() {
            &f["published"]
        } else {
            &f["draft"]
        };
        let description = s(&current["description"]);
        let (badges, state, changed) = badges(f);
        if changed {
            unpublished += 1;
        }
        let text = format!("{} {}", key.to_lowercase(), description.to_lowercase());
        if !search.is_empty() && !text.contains(&search) {
            continue;
        }
        let wanted = match show {
            "changed" => changed,
            "killed" => state == "killed",
            _ => true,
        };
        if !wanted {
            continue;
        }
        shown += 1;
        let updated = match (f["updated_by"].as_str(), f["updated_at_ms"].as_i64()) {
            (Some(by), Some(at)) => {
                format!("{} <span class=\"muted\">{}</span>", esc(by), when(at))
            }
            _ => String::new(),
        };
        let kill = if can_kill && !f["published"].is_null() {
            kill_form(&ctx, &env, &key, f["killed"].as_bool() == Some(true))
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr data-search=\"{}\" data-state=\"{state}\" data-changed=\"{changed}\"><td><a href=\"/console/env/{e}/flags/{}\">{}</a>\
             <div class=\"muted\">{}</div></td><td>{}</td><td>{badges}</td><td>{updated}</td><td>{kill}</td></tr>",
            esc(&text),
            enc(&key),
            esc(&key),
            esc(&description),
            esc(&s(&current["kind"])),
        );
    }
    if shown == 0 {
        body.push_str(
            "<tr class=\"empty\"><td colspan=\"5\" class=\"muted\">No flags match.</td></tr>",
        );
    }
    body.push_str("</tbody></table>");
    if unpublished > 0 && me.can(Permission::FlagPublish, Some(&env)) {
        let _ = write!(
            body,
            "<h2>Publish</h2><form method=\"post\" action=\"/console/env/{e}/publish\" class=\"row\">{}\
             <label>Message <input name=\"message\" size=\"40\"></label>\
             <button type=\"submit\">Publish {unpublished} changed flag{}</button></form>",
            csrf_field(&ctx.csrf),
            if unpublished == 1 { "" } else { "s" }
        );
    }
    if me.can(Permission::FlagWrite, Some(&env)) {
        let _ = write!(
            body,
            "<h2>New flag</h2><form method=\"post\" action=\"/console/env/{e}/flags\" class=\"row\">{}\
             <label>Key <input name=\"key\" id=\"new-flag-key\" required pattern=\"[A-Za-z0-9][A-Za-z0-9._\\-]*\"></label>\
             <label>Kind <select name=\"kind\"><option value=\"boolean\">boolean</option>\
             <option value=\"multivariate\">multivariate (string variants a and b)</option>\
             <option value=\"config\">config (string)</option></select></label>\
             <label>Description <input name=\"description\" size=\"30\"></label>\
             <button type=\"submit\">Create draft</button></form>",
            csrf_field(&ctx.csrf)
        );
    }
    Ok(render(
        &ctx,
        &me,
        &format!("Flags in {env}"),
        Section::Environments,
        &body,
    ))
}

pub(crate) async fn create_flag(ctx: Ctx, Path(env): Path<String>, form: Form) -> PageResult {
    let key = form.text("key");
    let description = form.text("description");
    let mut flag = match form.text("kind") {
        "multivariate" => json!({
            "kind": "multivariate",
            "variants": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
            "off_variant": "a",
            "default": {"variant": "a"},
        }),
        "config" => json!({
            "kind": "config",
            "type": "string",
            "variants": [{"key": "default", "value": ""}],
            "off_variant": "default",
            "default": {"variant": "default"},
        }),
        _ => json!({"kind": "boolean"}),
    };
    if !description.is_empty() {
        flag["description"] = Value::from(description);
    }
    let path = format!("/v1/environments/{}/flags/{}", enc(&env), enc(key));
    ctx.send(
        Method::PUT,
        &path,
        &flag,
        &[(header::IF_NONE_MATCH, HeaderValue::from_static("*"))],
    )
    .await?;
    Ok(see_other(&format!(
        "/console/env/{}/flags/{}?did=created",
        enc(&env),
        enc(key)
    )))
}

pub(crate) async fn publish(ctx: Ctx, Path(env): Path<String>, form: Form) -> PageResult {
    let mut body = json!({"message": form.text("message")});
    let flag = form.text("flag");
    if !flag.is_empty() {
        body["flags"] = json!([flag]);
    }
    let out = ctx
        .send(
            Method::POST,
            &format!("/v1/environments/{}/publish", enc(&env)),
            &body,
            &[],
        )
        .await?;
    Ok(see_other(&format!(
        "/console/env/{}?did=published&version={}#fleet",
        enc(&env),
        version_of(&out)
    )))
}

async fn switch(ctx: Ctx, env: String, key: String, form: Form, kill: bool) -> PageResult {
    let action = if kill { "kill" } else { "restore" };
    if form.get("confirmed") != Some("yes") {
        let me = me(&ctx).await?;
        let question = if kill {
            format!("Kill flag {key} in {env}? Every SDK will serve its off variant.")
        } else {
            format!("Restore flag {key} in {env}?")
        };
        return Ok(confirm_page(
            &ctx,
            &me,
            &format!("/console/env/{}/flags/{}/{action}", enc(&env), enc(&key)),
            &question,
            &format!("/console/env/{}", enc(&env)),
            &form,
        ));
    }
    let out = ctx
        .send(
            Method::POST,
            &format!("{}/{action}", flag_path(&env, &key)),
            &json!({"message": form.text("message")}),
            &[],
        )
        .await?;
    Ok(see_other(&format!(
        "/console/env/{}?did={}&flag={}&version={}#fleet",
        enc(&env),
        if kill { "killed" } else { "restored" },
        enc(&key),
        version_of(&out)
    )))
}

pub(crate) async fn kill(
    ctx: Ctx,
    Path((env, key)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    switch(ctx, env, key, form, true).await
}

pub(crate) async fn restore(
    ctx: Ctx,
    Path((env, key)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    switch(ctx, env, key, form, false).await
}
