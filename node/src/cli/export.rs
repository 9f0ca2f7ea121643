//! `pulseplane export`: downloads an environment's bootstrap file (the SDK
//! snapshot format with its digest) from any node, checks it, and writes
//! it out, for a CI/CD step that bakes it into an image.

use std::time::Duration;

use pulseplane_core::Snapshot;

/// Why `export` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the node answered version {got} of {env}, older than --min-version {want}")]
    TooOld { env: String, got: u64, want: u64 },
    #[error("the node answered environment {got:?}, not {want:?}")]
    WrongEnv { got: String, want: String },
    #[error("request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the exported file does not check out: {0}")]
    Invalid(#[source] pulseplane_core::SnapshotError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What to export and how.
pub struct ExportArgs<'a> {
    pub endpoint: &'a str,
    pub env: &'a str,
    pub token: &'a str,
    /// Ask for at least this version, waiting up to `wait` for it.
    pub min_version: Option<u64>,
    pub wait: Duration,
    /// The client (its timeout covers `wait`; its roots, https:// nodes).
    pub http: &'a reqwest::Client,
}

/// Fetches and checks the bootstrap file; returns its bytes and snapshot.
pub fn run(args: &ExportArgs<'_>) -> Result<(Vec<u8>, Snapshot), ExportError> {
    let base = args.endpoint.trim_end_matches('/');
    let mut url = format!("{base}/v1/environments/{}/export", args.env);
    let mut query = Vec::new();
    if let Some(v) = args.min_version {
        query.push(format!("min_version={v}"));
    }
    if !args.wait.is_zero() {
        query.push(format!("wait={}ms", args.wait.as_millis()));
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExportError::Runtime)?;
    let bytes = runtime.block_on(async {
        let request_error = |source| ExportError::Request {
            url: url.clone(),
            source,
        };
        let response = args
            .http
            .get(&url)
            .bearer_auth(args.token)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(request_error)?;
        if !status.is_success() {
            return Err(ExportError::Status {
                url: url.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body.to_vec())
    })?;
    let snapshot = Snapshot::from_json(&bytes).map_err(ExportError::Invalid)?;
    snapshot.compile().map_err(ExportError::Invalid)?;
    if snapshot.env != args.env {
        return Err(ExportError::WrongEnv {
            got: snapshot.env,
            want: args.env.to_owned(),
        });
    }
    if let Some(want) = args.min_version.filter(|w| snapshot.version < *w) {
        return Err(ExportError::TooOld {
            env: snapshot.env,
            got: snapshot.version,
            want,
        });
    }
    Ok((bytes, snapshot))
}
