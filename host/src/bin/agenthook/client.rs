//! The admin API client the `events`, `dlq`, `plugin` and `status` commands share: the
//! flags that say where the admin API is and how to authenticate, and a minimal JSON
//! client over plain HTTP. It turns a non-2xx answer into an error carrying the API's
//! message; it does not interpret the answers.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Base URL of the admin API.
    #[arg(
        long,
        env = "AGENTHOOK_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    admin_url: String,
    /// Admin bearer token; defaults to the token file the host generated in --data-dir.
    #[arg(
        long,
        env = "AGENTHOOK_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The host's data dir, where a generated admin token is kept.
    #[arg(long, default_value = agenthook::config::DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,
    /// Print the raw JSON answer.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A minimal JSON client of the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(args: &ClientArgs) -> anyhow::Result<AdminClient> {
        let token = match &args.token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no admin token: pass --token, set AGENTHOOK_ADMIN_TOKEN, or point --data-dir at the host's data dir ({} not readable)",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(AdminClient {
            base: args.admin_url.trim_end_matches('/').to_string(),
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Value> {
        self.send(http::Method::GET, path_and_query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(http::Method::POST, path, Some(body)).await
    }

    pub async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let resp = self
            .http
            .request(req)
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| anyhow!("the admin API answered {status} with a non-JSON body"))?;
        if !status.is_success() {
            let msg = value["error"].as_str().unwrap_or("(no message)");
            bail!("{status}: {msg}");
        }
        Ok(value)
    }
}

/// A name or id made safe to put in a URL path or query.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
