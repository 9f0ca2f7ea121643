//! What each `pulseplane` command does: one or a few API calls, printed as
//! a table (or the API's JSON with `--json`).

use std::io::{Read, Write};
use std::path::Path;

use pulseplane_core::time::format_rfc3339_millis;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backup::Backup;
use crate::cli::args::{Cli, ClusterCmd, Cmd, EnvCmd, FlagCmd};
use crate::cli::export::{ExportArgs, run as export};
use crate::cli::http::{CliError, Conn, client, endpoints, read_token};

/// Lays out rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn time(v: &Value) -> String {
    v.as_i64()
        .map_or_else(|| "-".to_owned(), format_rfc3339_millis)
}

fn path_segment(s: &str) -> String {
    // Keys are [A-Za-z0-9._-]; anything else is escaped so that it cannot
    // change the path.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    match out {
        Some(path) => crate::datadir::write_atomic(path, bytes)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display()))),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| CliError::Usage(format!("cannot write to stdout: {e}")))
        }
    }
}

/// Runs a command; what it prints goes to stdout, notes to stderr.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    match &cli.command {
        Cmd::Eval {
            file,
            flag,
            context,
            value_type,
            default,
        } => {
            let v = crate::cli::eval::run(file, flag, context, *value_type, default.as_deref())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            return Ok(());
        }
        Cmd::Export {
            env,
            out,
            min_version,
            wait,
        } => {
            let token =
                read_token(g.token.as_deref(), g.token_file.as_deref())?.unwrap_or_default();
            let list = endpoints(&g.endpoint, g.ca_file.is_some())?;
            let http = client(g.timeout + *wait, g.ca_file.as_deref())?;
            let mut last = None;
            for endpoint in &list {
                match export(&ExportArgs {
                    endpoint,
                    env,
                    token: &token,
                    min_version: *min_version,
                    wait: *wait,
                    http: &http,
                }) {
                    Ok((bytes, snapshot)) => {
                        write_out(out.as_deref(), &bytes)?;
                        eprintln!(
                            "exported {} version {} ({} flags, digest {})",
                            snapshot.env,
                            snapshot.version,
                            snapshot.flags.len(),
                            snapshot.digest
                        );
                        return Ok(());
                    }
                    Err(e) => last = Some(e),
                }
            }
            return Err(CliError::Usage(last.map_or_else(
                || "no --endpoint given".to_owned(),
                |e| e.to_string(),
            )));
        }
        _ => {}
    }
    let conn = Conn::new(
        &g.endpoint,
        g.token.as_deref(),
        g.token_file.as_deref(),
        g.ca_file.as_deref(),
        g.timeout,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(remote(&conn, &cli))
}

/// Prints `v` as JSON, or `human` when not `--json`.
fn show(json: bool, v: &Value, human: impl FnOnce(&Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", human(v));
    }
}

fn write_summary(v: &Value) -> String {
    let mut parts = vec![format!("committed at log index {}", text(&v["log_index"]))];
    if let Some(env) = v["env"].as_str().filter(|e| !e.is_empty()) {
        parts.push(format!("{env} version {}", text(&v["env_version"])));
    }
    if let Some(rev) = v["revision"].as_u64() {
        parts.push(format!("revision {rev}"));
    }
    if v["replayed"] == true {
        parts.push("(a retry: already applied)".into());
    }
    format!("{}\n", parts.join(", "))
}

async fn remote(conn: &Conn, cli: &Cli) -> Result<(), CliError> {
    let json = cli.global.json;
    match &cli.command {
        Cmd::Cluster(ClusterCmd::Status) => {
            let v = conn.json(Method::GET, "/admin/v1/cluster", None).await?;
            show(json, &v, |v| {
                let rows: Vec<Vec<String>> = v["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let id = m["id"].as_u64().unwrap_or(0);
                        let leader = v["leader"].as_u64() == Some(id);
                        vec![
                            id.to_string(),
                            m["address"].as_str().unwrap_or("").to_owned(),
                            if leader {
                                format!("{} (leader)", text(&m["role"]))
                            } else {
                                text(&m["role"])
                            },
                            text(&m["applied_index"]),
                            text(&m["lag"]),
                            if m["reachable"] == true { "yes" } else { "no" }.to_owned(),
                        ]
                    })
                    .collect();
                format!(
                    "term {}, last log index {}, applied {}\n{}",
                    text(&v["term"]),
                    text(&v["last_log_index"]),
                    text(&v["applied_index"]),
                    table(
                        &["ID", "ADDRESS", "ROLE", "APPLIED", "LAG", "REACHABLE"],
                        &rows
                    )
                )
            });
        }
        Cmd::Cluster(ClusterCmd::Add {
            id,
            address,
            learner,
        }) => {
            let body = json!({"id": id, "address": address, "voter": !learner});
            let v = conn
                .json(Method::POST, "/admin/v1/cluster/nodes", Some(&body))
                .await?;
            show(json, &v, |_| {
                format!(
                    "node {id} added as a {}\n",
                    if *learner { "learner" } else { "voter" }
                )
            });
        }
        Cmd::Cluster(ClusterCmd::Remove { id }) => {
            let v = conn
                .json(
                    Method::DELETE,
                    &format!("/admin/v1/cluster/nodes/{id}"),
                    None,
                )
                .await?;
            show(json, &v, |_| format!("node {id} removed\n"));
        }
        Cmd::Env(EnvCmd::List) => {
            let items = conn.all_pages("/v1/environments").await?;
            let v = Value::Array(items);
            show(json, &v, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        vec![
                            text(&e["key"]),
                            text(&e["name"]),
                            text(&e["version"]),
                            text(&e["flags"]),
                            text(&e["segments"]),
                            time(&e["published_at_ms"]),
                            text(&e["published_by"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "KEY",
                        "NAME",
                        "VERSION",
                        "FLAGS",
                        "SEGMENTS",
                        "PUBLISHED",
                        "BY",
                    ],
                    &rows,
                )
            });
        }
        Cmd::Env(EnvCmd::Create { key, name }) => {
            let mut body = json!({"key": key});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            let v = conn
                .json(Method::POST, "/v1/environments", Some(&body))
                .await?;
            show(json, &v, |v| {
                format!("environment {key} created, {}", write_summary(v))
            });
        }
        Cmd::Env(EnvCmd::Publish {
            env,
            message,
            flags,
        }) => {
            let mut body = json!({"message": message});
            if !flags.is_empty() {
                body["flags"] = json!(flags);
            }
            let v = conn
                .json(
                    Method::POST,
                    &format!("/v1/environments/{}/publish", path_segment(env)),
                    Some(&body),
                )
                .await?;
            show(json, &v, |v| {
                format!(
                    "published {env} version {} (changed: {})\n",
                    text(&v["env_version"]),
                    text(&v["changed_flags"])
                )
            });
        }
        Cmd::Env(EnvCmd::Rollback {
            env,
            to_version,
            message,
        }) => {
            let body = json!({"to_version": to_version, "message": message});
            let v = conn
                .json(
                    Method::POST,
                    &format!("/v1/environments/{}/rollback", path_segment(env)),
                    Some(&body),
                )
                .await?;
            show(json, &v, |v| {
                format!(
                    "rolled {env} back: new version {} (changed: {})\n",
                    text(&v["env_version"]),
                    text(&v["changed_flags"])
                )
            });
        }
        Cmd::Env(EnvCmd::History { env }) => {
            let items = conn
                .all_pages(&format!("/v1/environments/{}/versions", path_segment(env)))
                .await?;
            show(json, &Value::Array(items.clone()), |_| history(&items));
        }
        Cmd::Flag(FlagCmd::Get { env, key }) => {
            let v = conn
                .json(
                    Method::GET,
                    &format!(
                        "/v1/environments/{}/flags/{}",
                        path_segment(env),
                        path_segment(key)
                    ),
                    None,
                )
                .await?;
            show(json, &v, |v| {
                let mut out = table(
                    &[
                        "KEY",
                        "REVISION",
                        "PUBLISHED",
                        "UNPUBLISHED",
                        "KILLED",
                        "UPDATED",
                        "BY",
                    ],
                    &[vec![
                        text(&v["key"]),
                        text(&v["revision"]),
                        text(&v["published_revision"]),
                        text(&v["unpublished_changes"]),
                        text(&v["killed"]),
                        time(&v["updated_at_ms"]),
                        text(&v["updated_by"]),
                    ]],
                );
                let shown = if v["draft"].is_null() {
                    &v["published"]
                } else {
                    &v["draft"]
                };
                out.push_str(&serde_json::to_string_pretty(shown).unwrap_or_default());
                out.push('\n');
                out
            });
        }
        Cmd::Flag(FlagCmd::Apply { env, file }) => {
            let mut text_in = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text_in)
                    .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
            } else {
                text_in = std::fs::read_to_string(file)
                    .map_err(|e| CliError::Usage(format!("-f {}: {e}", file.display())))?;
            }
            let parsed: Value = serde_json::from_str(&text_in)
                .map_err(|e| CliError::Usage(format!("-f {}: not JSON: {e}", file.display())))?;
            let flags = match parsed {
                Value::Array(items) => items,
                one @ Value::Object(_) => vec![one],
                _ => {
                    return Err(CliError::Usage(format!(
                        "-f {}: expected a flag object or a list of them",
                        file.display()
                    )));
                }
            };
            let mut results = Vec::new();
            for (i, flag) in flags.iter().enumerate() {
                let key = flag["key"].as_str().ok_or_else(|| {
                    CliError::Usage(format!("-f {}: flag {i} has no \"key\"", file.display()))
                })?;
                let (status, bytes) = conn
                    .call(
                        Method::PUT,
                        &format!(
                            "/v1/environments/{}/flags/{}",
                            path_segment(env),
                            path_segment(key)
                        ),
                        Some(flag),
                    )
                    .await?;
                let mut v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                v["key"] = json!(key);
                v["created"] = json!(status == 201);
                results.push(v);
            }
            let v = Value::Array(results);
            show(json, &v, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            text(&r["key"]),
                            if r["created"] == true {
                                "created"
                            } else {
                                "updated"
                            }
                            .to_owned(),
                            text(&r["revision"]),
                        ]
                    })
                    .collect();
                format!(
                    "{}drafts written to {env}; publish with `pulseplane env publish {env}`\n",
                    table(&["KEY", "DRAFT", "REVISION"], &rows)
                )
            });
        }
        Cmd::Flag(FlagCmd::Kill { env, key, message })
        | Cmd::Flag(FlagCmd::Restore { env, key, message }) => {
            let (verb, done) = match &cli.command {
                Cmd::Flag(FlagCmd::Kill { .. }) => ("kill", "killed"),
                _ => ("restore", "restored"),
            };
            let v = conn
                .json(
                    Method::POST,
                    &format!(
                        "/v1/environments/{}/flags/{}/{verb}",
                        path_segment(env),
                        path_segment(key)
                    ),
                    Some(&json!({"message": message})),
                )
                .await?;
            show(json, &v, |v| {
                format!(
                    "{key} {done} in {env}: version {}\n",
                    text(&v["env_version"])
                )
            });
        }
        Cmd::Flag(FlagCmd::History { env, key }) => {
            let items: Vec<Value> = conn
                .all_pages(&format!("/v1/environments/{}/versions", path_segment(env)))
                .await?
                .into_iter()
                .filter(|v| {
                    v["changed_flags"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|k| k == key.as_str()))
                })
                .collect();
            show(json, &Value::Array(items.clone()), |_| history(&items));
        }
        Cmd::Backup { out } => {
            let (_, bytes) = conn.call(Method::GET, "/admin/v1/backup", None).await?;
            let backup = Backup::parse(&bytes)
                .map_err(|e| CliError::Usage(format!("the backup does not check out: {e}")))?;
            write_out(out.as_deref(), &bytes)?;
            eprintln!(
                "backup of node {} at applied index {}: {} environments, digest {}",
                backup.node,
                backup.applied_index,
                backup.state.environments.len(),
                backup.digest
            );
        }
        Cmd::Eval { .. } | Cmd::Export { .. } => {}
    }
    Ok(())
}

/// `publish`, `rollback to 3`, `kill checkout`, `restore checkout`.
fn action(a: &Value) -> String {
    let kind = text(&a["type"]);
    match (&a["to"], &a["flag"]) {
        (Value::Number(n), _) => format!("{kind} to {n}"),
        (_, Value::String(f)) => format!("{kind} {f}"),
        _ => kind,
    }
}

fn history(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            vec![
                text(&v["version"]),
                time(&v["at_ms"]),
                text(&v["author"]),
                action(&v["action"]),
                text(&v["changed_flags"]),
                text(&v["message"]),
            ]
        })
        .collect();
    table(
        &["VERSION", "AT", "AUTHOR", "ACTION", "FLAGS", "MESSAGE"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
