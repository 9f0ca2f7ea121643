//! The CLI's connection to a cluster: a list of node endpoints tried in
//! order (a node that cannot be reached, or answers 503, hands the request
//! to the next), and the bearer token.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A usage or local mistake (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The server refused (exit code 1): its status, code and message.
    #[error("{method} {path}: {status} {code}: {message}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No node answered (exit code 1).
    #[error("no node answered {method} {path}: {detail}")]
    Unreachable {
        method: String,
        path: String,
        detail: String,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Endpoints and token.
pub struct Conn {
    endpoints: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
}

/// The node base URLs of a comma-separated `--endpoint`: `http://host:port`,
/// or `https://host:port` when `--ca-file` says whom to trust.
pub fn endpoints(list: &str, has_ca: bool) -> Result<Vec<String>, CliError> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(|e| e.trim().trim_end_matches('/').to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(CliError::Usage(
            "--endpoint: give at least one node, e.g. http://127.0.0.1:7401".into(),
        ));
    }
    for e in &endpoints {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"));
        if rest.is_none_or(|rest| rest.is_empty() || rest.contains('/')) {
            return Err(CliError::Usage(format!(
                "--endpoint {e:?}: must be http://host:port or https://host:port"
            )));
        }
        if e.starts_with("https://") && !has_ca {
            return Err(CliError::Usage(format!(
                "--endpoint {e:?}: give --ca-file, the PEM CA that signed the nodes' certificates"
            )));
        }
    }
    Ok(endpoints)
}

/// The bearer token: from `token_file` if given, else `token`.
pub fn read_token(
    token: Option<&str>,
    token_file: Option<&Path>,
) -> Result<Option<String>, CliError> {
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", path.display())))?
                .trim()
                .to_owned(),
        ),
        None => token.map(|t| t.trim().to_owned()),
    };
    Ok(token.filter(|t| !t.is_empty()))
}

/// The CLI's HTTP client: `timeout` per request, trusting the PEM CAs in
/// `ca_file` for https:// nodes.
pub fn client(timeout: Duration, ca_file: Option<&Path>) -> Result<reqwest::Client, CliError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("--ca-file {}: {e}", path.display())))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--ca-file {}: no PEM certificate in it",
                    path.display()
                ))
            })?;
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    builder
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the HTTP client: {e}")))
}

impl Conn {
    /// `endpoints` is a comma-separated list of node base URLs; the token
    /// comes from `token_file` or else `token`; `ca_file` holds the CAs
    /// trusted for https:// nodes.
    pub fn new(
        endpoints: &str,
        token: Option<&str>,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Conn, CliError> {
        Ok(Conn {
            endpoints: self::endpoints(endpoints, ca_file.is_some())?,
            token: read_token(token, token_file)?,
            http: client(timeout, ca_file)?,
        })
    }

    /// Sends the request to the first node that answers; returns the status
    /// and body of a 2xx answer, or the server's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), CliError> {
        let mut last = String::new();
        for base in &self.endpoints {
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(b).unwrap_or_default());
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            let status = response.status().as_u16();
            let bytes = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            if (200..300).contains(&status) {
                return Ok((status, bytes));
            }
            let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let code = error["code"].as_str().unwrap_or("").to_owned();
            let message = error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            // Unavailable here (no leader yet, catching up): try another.
            if status == 503 {
                last = format!("{base}: {status} {code}: {message}");
                continue;
            }
            return Err(CliError::Refused {
                method: method.to_string(),
                path: path.to_owned(),
                status,
                code,
                message,
            });
        }
        Err(CliError::Unreachable {
            method: method.to_string(),
            path: path.to_owned(),
            detail: last,
        })
    }

    /// As [`Conn::call`], with the body parsed as JSON.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let (_, bytes) = self.call(method.clone(), path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| CliError::Refused {
            method: method.to_string(),
            path: path.to_owned(),
            status: 200,
            code: "malformed_answer".into(),
            message: format!("the answer is not JSON: {e}"),
        })
    }

    /// Every item of a paged list (following `next_cursor`).
    pub async fn all_pages(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                None => format!("{path}{sep}limit=1000"),
                Some(c) => format!(
                    "{path}{sep}limit=1000&cursor={}",
                    form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                ),
            };
            let page = self.json(Method::GET, &url, None).await?;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            cursor = match &page["next_cursor"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if cursor.is_none() {
                return Ok(items);
            }
        }
    }
}
