//! The flag editor: form and JSON editing of the draft, errors at their
//! fields, the diff against the published version.

use std::fmt::Write;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use pulseplane_core::Permission;
use serde_json::{Value, json};

use super::super::html::{self, Section, Tab, csrf_field, esc};
use super::super::{ApiFailure, Ctx, Form, enc};
use super::*;

/// Where an error goes in the editor.
struct Problems {
    /// `(form field, problem)` for the form's own fields.
    fields: Vec<(&'static str, String)>,
    /// `(pointer, line, problem)` in the JSON text.
    json: Vec<(String, Option<usize>, String)>,
    /// The whole-request message.
    message: String,
}

impl Problems {
    fn none() -> Problems {
        Problems {
            fields: Vec::new(),
            json: Vec::new(),
            message: String::new(),
        }
    }

    fn for_field(&self, name: &str) -> String {
        self.fields
            .iter()
            .filter(|(f, _)| *f == name)
            .map(|(_, p)| {
                format!(
                    "<p class=\"field-error\" id=\"{name}-error\" role=\"alert\">{}</p>",
                    esc(p)
                )
            })
            .collect()
    }

    fn invalid(&self, name: &str) -> &'static str {
        if self.fields.iter().any(|(f, _)| *f == name) {
            " aria-invalid=\"true\""
        } else {
            ""
        }
    }
}

/// The form field a JSON pointer of a flag belongs to, if the form has it.
pub(super) fn form_field(pointer: &str) -> Option<&'static str> {
    match pointer {
        "/description" => Some("description"),
        "/enabled" => Some("enabled"),
        "/off_variant" => Some("off_variant"),
        p if p == "/default" || p.starts_with("/default/") => Some("default"),
        _ => None,
    }
}

/// Sorts an API refusal's details into form fields and JSON lines.
/// A problem without the parser's ` at line L column C`, which counts in
/// the compact JSON the console sent, not in the text shown.
pub(super) fn without_position(problem: &str) -> String {
    match problem.rfind(" at line ") {
        Some(i)
            if problem[i + 9..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            problem[..i].to_owned()
        }
        _ => problem.to_owned(),
    }
}

fn problems_of(f: &ApiFailure, lines: &[(String, usize)], form: bool) -> Problems {
    let mut p = Problems::none();
    p.message = without_position(&f.message);
    for (path, problem) in &f.details {
        let problem = &without_position(problem);
        match form_field(path).filter(|_| form) {
            Some(name) => p.fields.push((name, problem.clone())),
            None => p
                .json
                .push((path.clone(), html::line_of(lines, path), problem.clone())),
        }
    }
    p
}

/// What the editor shows: the flag as read, and, after a refused save,
/// the text the user sent.
struct Editing<'a> {
    env: &'a str,
    key: &'a str,
    view: &'a Value,
    json_text: Option<String>,
    /// The form's values as sent.
    sent: Option<&'a Form>,
    problems: Problems,
    did: &'a str,
}

fn editor_page(ctx: &Ctx, me: &Me, ed: &Editing<'_>) -> Response {
    let (env, key, view) = (ed.env, ed.key, ed.view);
    let e = enc(env);
    let k = enc(key);
    let draft = if view["draft"].is_null() {
        &view["published"]
    } else {
        &view["draft"]
    };
    let can_write = me.can(Permission::FlagWrite, Some(env));
    let mut body = html::env_tabs(env, Tab::Flags, me.can(Permission::ExportRead, Some(env)));
    let (badges, _, _) = badges(view);
    let _ = write!(body, "<h1>Flag {}</h1><p>{badges}</p>", esc(key));
    body.push_str(&html::notice(match ed.did {
        "saved" => "Draft saved.",
        "created" => "Draft created. Publish it to serve it.",
        "published" => "Published.",
        _ => "",
    }));
    if !ed.problems.message.is_empty() {
        let _ = write!(
            body,
            "<div class=\"error\" role=\"alert\" id=\"save-error\"><p>Not saved: {}</p></div>",
            esc(&ed.problems.message)
        );
    }
    let revision = view["revision"]
        .as_u64()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let sent = |name: &str, current: String| match ed.sent {
        Some(f) if f.get("mode") == Some("form") => f.text(name).to_owned(),
        _ => current,
    };
    let variants: Vec<String> = draft["variants"]
        .as_array()
        .map(|a| a.iter().map(|v| s(&v["key"])).collect())
        .unwrap_or_default();
    let variants = if variants.is_empty() && draft["kind"] == "boolean" {
        vec!["on".to_owned(), "off".to_owned()]
    } else {
        variants
    };
    let disabled = if can_write { "" } else { " disabled" };
    // The form.
    let description = sent("description", s(&draft["description"]));
    let enabled = match ed.sent {
        Some(f) if f.get("mode") == Some("form") => f.checked("enabled"),
        _ => draft["enabled"].as_bool().unwrap_or(true),
    };
    let off = sent("off_variant", s(&draft["off_variant"]));
    let default_now = match &draft["default"] {
        Value::Null => String::new(),
        d if d.get("variant").is_some() => s(&d["variant"]),
        _ => "(rollout)".to_owned(),
    };
    let default = sent("default", default_now.clone());
    let p = &ed.problems;
    let _ = write!(
        body,
        "<div class=\"columns\"><section><h2>Edit the draft</h2>\
         <form method=\"post\" action=\"/console/env/{e}/flags/{k}\" class=\"stack\" id=\"flag-form\">{}\
         <input type=\"hidden\" name=\"mode\" value=\"form\"><input type=\"hidden\" name=\"revision\" value=\"{revision}\">\
         <label for=\"description\">Description</label>\
         <input id=\"description\" name=\"description\" value=\"{}\"{}{disabled}>{}\
         <label class=\"check\"><input type=\"checkbox\" name=\"enabled\" id=\"enabled\"{}{}{disabled}> Enabled (off: serves the off variant)</label>{}\
         <label for=\"off_variant\">Off variant</label><select id=\"off_variant\" name=\"off_variant\"{}{disabled}>",
        csrf_field(&ctx.csrf),
        esc(&description),
        p.invalid("description"),
        p.for_field("description"),
        if enabled { " checked" } else { "" },
        p.invalid("enabled"),
        p.for_field("enabled"),
        p.invalid("off_variant"),
    );
    let options = |current: &str, extra: &[(&str, &str)]| {
        let mut out = String::new();
        for (value, label) in extra {
            let sel = if *value == current { " selected" } else { "" };
            let _ = write!(
                out,
                "<option value=\"{}\"{sel}>{}</option>",
                esc(value),
                esc(label)
            );
        }
        for v in &variants {
            let sel = if *v == current { " selected" } else { "" };
            let _ = write!(out, "<option value=\"{}\"{sel}>{}</option>", esc(v), esc(v));
        }
        out
    };
    let off_options = options(&off, &[("", "(the kind's default)")]);
    let mut default_extra = vec![("", "(the off variant)")];
    if default_now == "(rollout)" {
        default_extra.push(("(rollout)", "(a rollout: edit as JSON)"));
    }
    let default_options = options(&default, &default_extra);
    let _ = write!(
        body,
        "{off_options}</select>{}<label for=\"default\">Served when no rule matches</label>\
         <select id=\"default\" name=\"default\"{}{disabled}>{default_options}</select>{}",
        p.for_field("off_variant"),
        p.invalid("default"),
        p.for_field("default"),
    );
    if can_write {
        body.push_str("<button type=\"submit\">Save draft</button>");
    }
    body.push_str("</form></section>");
    // The JSON.
    let (text, _) = html::pretty_with_lines(&editable(draft));
    let text = ed.json_text.clone().unwrap_or(text);
    let first_line = p.json.iter().find_map(|(_, l, _)| *l);
    let mut json_errors = String::new();
    for (path, line, problem) in &p.json {
        let at = match line {
            Some(l) => format!(" (line {})", l + 1),
            None => String::new(),
        };
        let _ = write!(
            json_errors,
            "<li><code>{}</code>{at}: {}</li>",
            esc(if path.is_empty() { "/" } else { path }),
            esc(problem)
        );
    }
    if !json_errors.is_empty() {
        json_errors = format!(
            "<ul class=\"field-error\" id=\"json-errors\" role=\"alert\">{json_errors}</ul>"
        );
    }
    let _ = write!(
        body,
        "<section><h2>Edit as JSON</h2><form method=\"post\" action=\"/console/env/{e}/flags/{k}\" class=\"stack\">{}\
         <input type=\"hidden\" name=\"mode\" value=\"json\"><input type=\"hidden\" name=\"revision\" value=\"{revision}\">\
         <label for=\"json\">The draft flag (docs/flags.md)</label>{json_errors}\
         <textarea id=\"json\" name=\"json\" rows=\"24\" spellcheck=\"false\"{}{}{disabled}>{}</textarea>{}</form></section></div>",
        csrf_field(&ctx.csrf),
        if p.json.is_empty() {
            ""
        } else {
            " aria-invalid=\"true\" aria-describedby=\"json-errors\""
        },
        first_line
            .map(|l| format!(" data-error-line=\"{l}\""))
            .unwrap_or_default(),
        esc(&text),
        if can_write {
            "<button type=\"submit\">Save JSON</button>"
        } else {
            ""
        },
    );
    // The diff and the actions.
    body.push_str("<h2>Changes against the published version</h2>");
    body.push_str(&changes_table(
        view["diff"].as_array(),
        view["published"].is_null(),
    ));
    if me.can(Permission::FlagPublish, Some(env))
        && view["unpublished_changes"].as_bool() == Some(true)
    {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/console/env/{e}/publish\" class=\"row\">{}\
             <input type=\"hidden\" name=\"flag\" value=\"{}\">\
             <label>Message <input name=\"message\" id=\"publish-message\" size=\"40\"></label>\
             <button type=\"submit\">Publish this flag</button></form>",
            csrf_field(&ctx.csrf),
            esc(key)
        );
    }
    if me.can(Permission::FlagKill, Some(env)) && !view["published"].is_null() {
        let _ = write!(
            body,
            "<h2>Kill switch</h2><div class=\"row\">{}</div>",
            kill_form(ctx, env, key, view["killed"].as_bool() == Some(true))
        );
    }
    render(
        ctx,
        me,
        &format!("Flag {key}"),
        Section::Environments,
        &body,
    )
}

/// The rows of a list of changes (`{path, op, from, to}`).
pub(super) fn changes_table(changes: Option<&Vec<Value>>, never_published: bool) -> String {
    if never_published {
        return "<p class=\"muted\">Never published: the whole draft is new.</p>".into();
    }
    let changes = match changes {
        Some(c) if !c.is_empty() => c,
        _ => return "<p class=\"muted\">No changes.</p>".into(),
    };
    let mut out = String::from(
        "<table class=\"list diff\"><thead><tr><th scope=\"col\">Path</th><th scope=\"col\">Change</th>\
         <th scope=\"col\">From</th><th scope=\"col\">To</th></tr></thead><tbody>",
    );
    for c in changes {
        let show = |v: &Value| match v {
            Value::Null => String::new(),
            v => format!("<code>{}</code>", esc(&v.to_string())),
        };
        let _ = write!(
            out,
            "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s(&c["op"])),
            esc(&s(&c["path"])),
            esc(&s(&c["op"])),
            show(c.get("from").unwrap_or(&Value::Null)),
            show(c.get("to").unwrap_or(&Value::Null)),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// A flag as the user edits it: without the fields the control plane sets
/// (its revision, and the kill switch, which is kept apart from content).
fn editable(flag: &Value) -> Value {
    let mut flag = flag.clone();
    if let Value::Object(m) = &mut flag {
        m.remove("version");
        m.remove("killed");
    }
    flag
}

pub(super) fn flag_path(env: &str, key: &str) -> String {
    format!("/v1/environments/{}/flags/{}", enc(env), enc(key))
}

pub(crate) async fn editor(
    ctx: Ctx,
    Path((env, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> PageResult {
    let me = me(&ctx).await?;
    let q = query_fields(q.as_deref());
    let view = ctx
        .get(&format!("{}?diff=published", flag_path(&env, &key)))
        .await?;
    Ok(editor_page(
        &ctx,
        &me,
        &Editing {
            env: &env,
            key: &key,
            view: &view,
            json_text: None,
            sent: None,
            problems: Problems::none(),
            did: field(&q, "did"),
        },
    ))
}

pub(crate) async fn save_flag(
    ctx: Ctx,
    Path((env, key)): Path<(String, String)>,
    form: Form,
) -> PageResult {
    let me = me(&ctx).await?;
    let view = ctx
        .get(&format!("{}?diff=published", flag_path(&env, &key)))
        .await?;
    let by_form = form.get("mode") == Some("form");
    let refused = |text: Option<String>, problems: Problems| {
        let mut r = editor_page(
            &ctx,
            &me,
            &Editing {
                env: &env,
                key: &key,
                view: &view,
                json_text: text,
                sent: Some(&form),
                problems,
                did: "",
            },
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    let flag: Value = if by_form {
        let mut flag = editable(if view["draft"].is_null() {
            &view["published"]
        } else {
            &view["draft"]
        });
        if let Value::Object(m) = &mut flag {
            m.insert("description".into(), Value::from(form.text("description")));
            m.insert("enabled".into(), Value::from(form.checked("enabled")));
            match form.text("off_variant") {
                "" => m.remove("off_variant"),
                v => m.insert("off_variant".into(), Value::from(v)),
            };
            match form.text("default") {
                "(rollout)" => {}
                "" => {
                    m.remove("default");
                }
                v => {
                    m.insert("default".into(), json!({"variant": v}));
                }
            }
        }
        flag
    } else {
        let text = form.get("json").unwrap_or("");
        match serde_json::from_str(text) {
            Ok(v) => editable(&v),
            Err(e) => {
                let problems = Problems {
                    json: vec![(
                        "/".into(),
                        e.line().checked_sub(1),
                        format!("not valid JSON: {e}"),
                    )],
                    message: "the text is not valid JSON".into(),
                    fields: Vec::new(),
                };
                return Ok(refused(Some(text.to_owned()), problems));
            }
        }
    };
    let mut precondition = Vec::new();
    match form.text("revision").parse::<u64>() {
        Ok(r) => {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{r}\"")) {
                precondition.push((header::IF_MATCH, v));
            }
        }
        Err(_) if view["published"].is_null() => {
            precondition.push((header::IF_NONE_MATCH, HeaderValue::from_static("*")));
        }
        Err(_) => {}
    }
    match ctx
        .send(Method::PUT, &flag_path(&env, &key), &flag, &precondition)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/env/{}/flags/{}?did=saved",
            enc(&env),
            enc(&key)
        ))),
        Err(f) if f.status == StatusCode::UNAUTHORIZED => Err(f.into()),
        Err(f) => {
            // The flag as sent (from either form), re-indented, so that every
            // error has a line in the JSON box to point at.
            let (text, lines) = html::pretty_with_lines(&flag);
            let mut problems = problems_of(&f, &lines, by_form);
            if f.status == StatusCode::PRECONDITION_FAILED || f.status == StatusCode::CONFLICT {
                problems.message = format!(
                    "{} Someone else changed this flag since the page was loaded: reload it, then apply your change again.",
                    f.message
                );
            }
            Ok(refused(Some(text), problems))
        }
    }
}
