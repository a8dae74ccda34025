//! Outbound HTTP through the host, to the origins the manifest grants.
//!
//! Every request needs its origin (`scheme://host[:port]`) listed under `http` in the
//! manifest's `[grants]`; anything else returns [`ToolError::Denied`] naming the origin.
//! The host refuses loopback, private and metadata addresses unless the grant names the
//! address literally, follows redirects only to granted origins, and may attach
//! credentials from its secrets (`[grants.http_headers]`) that the plugin never sees.
//!
//! ```no_run
//! use agenthook_sdk::{HandlerError, http};
//! # fn run() -> Result<(), HandlerError> {
//! #[derive(serde::Deserialize)]
//! struct Customer { email: String }
//!
//! let customer: Customer = http::get("https://api.example.com/v1/customers/cus_1")
//!     .header("accept", "application/json")
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi::http as wit;
use crate::{HandlerError, ToolError};

/// A request being built; [`Request::send`] sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

/// A `GET` request to `url`.
pub fn get(url: impl Into<String>) -> Request {
    request("GET", url)
}

/// A `POST` request to `url`.
pub fn post(url: impl Into<String>) -> Request {
    request("POST", url)
}

/// A `PUT` request to `url`.
pub fn put(url: impl Into<String>) -> Request {
    request("PUT", url)
}

/// A `PATCH` request to `url`.
pub fn patch(url: impl Into<String>) -> Request {
    request("PATCH", url)
}

/// A `DELETE` request to `url`.
pub fn delete(url: impl Into<String>) -> Request {
    request("DELETE", url)
}

/// A request with any method the host accepts (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`,
/// `HEAD`, `OPTIONS`).
pub fn request(method: impl Into<String>, url: impl Into<String>) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        body: None,
        timeout: None,
    }
}

impl Request {
    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Set the body to `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HandlerError> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Give up after `timeout` (the host's default is 30 s; the plugin's own deadline
    /// always applies).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Send the request. Any HTTP status is `Ok`; see [`Response::error_for_status`].
    pub fn send(self) -> Result<Response, ToolError> {
        let request = wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self
                .timeout
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        };
        wit::fetch(&request)
            .map(Response::from)
            .map_err(ToolError::from)
    }
}

/// The final response, after any redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl From<wit::Response> for Response {
    fn from(r: wit::Response) -> Self {
        Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl Response {
    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, when it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON; a body that does not parse is a permanent error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            HandlerError::permanent(format!("response body is not the expected JSON: {err}"))
        })
    }

    /// `Ok(self)` for 1xx-3xx; otherwise the error a handler usually wants: retry for
    /// 408, 425, 429 and 5xx (honouring `Retry-After` seconds), permanent for other 4xx.
    pub fn error_for_status(self) -> Result<Self, HandlerError> {
        if self.status < 400 {
            return Ok(self);
        }
        let snippet: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(200)
            .collect();
        let reason = format!("HTTP {}: {snippet}", self.status);
        match self.status {
            408 | 425 | 429 | 500.. => Err(
                match self
                    .header("retry-after")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    Some(secs) => HandlerError::retry_after(reason, Duration::from_secs(secs)),
                    None => HandlerError::retry(reason),
                },
            ),
            _ => Err(HandlerError::permanent(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"{\"error\":\"nope\"}".to_vec(),
        }
    }

    #[test]
    fn error_for_status_retries_server_errors_and_rate_limits() {
        assert!(response(200, &[]).error_for_status().is_ok());
        assert!(response(302, &[]).error_for_status().is_ok());
        let e = response(503, &[]).error_for_status().unwrap_err();
        assert!(e.is_retry());
        assert!(e.reason().starts_with("HTTP 503: {\"error\""), "{e}");
        let e = response(429, &[("Retry-After", "7")])
            .error_for_status()
            .unwrap_err();
        assert_eq!(
            e,
            HandlerError::retry_after("HTTP 429: {\"error\":\"nope\"}", Duration::from_secs(7))
        );
        assert!(
            !response(404, &[])
                .error_for_status()
                .unwrap_err()
                .is_retry()
        );
    }

    #[test]
    fn builder_collects_the_request() {
        let r = post("https://api.example.com/x")
            .header("x-a", "1")
            .json(&serde_json::json!({"k": 1}))
            .unwrap()
            .timeout(Duration::from_millis(1500));
        assert_eq!(r.method, "POST");
        assert_eq!(r.body.as_deref(), Some(&b"{\"k\":1}"[..]));
        assert_eq!(
            r.headers[1],
            ("content-type".into(), "application/json".into())
        );
        assert_eq!(r.timeout, Some(Duration::from_millis(1500)));
    }
}
