//! Async HTTP helper for tests that talk to the registries directly.
//!
//! Invariant guarded: requests never go through a proxy taken from the
//! environment (they must reach 127.0.0.1 directly), every request has a
//! timeout, and a failed transport panics with the URL but never with a
//! credential (tokens travel only in headers, which are not echoed).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;

/// A reqwest client configured for loopback tests.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// Transparently decompresses gzip bodies.
    pub fn new() -> Http {
        Self::build(true)
    }

    /// Leaves bodies exactly as sent (no `Accept-Encoding` added, no
    /// decompression), for tests that check the wire encoding.
    pub fn raw() -> Http {
        Self::build(false)
    }

    /// Like [`Http::raw`], but connecting from `local` (a loopback address
    /// other than 127.0.0.1 plays another peer, e.g. a trusted proxy).
    pub fn raw_from(local: std::net::IpAddr) -> Http {
        Self::build_with(false, Some(local))
    }

    fn build(gzip: bool) -> Http {
        Self::build_with(gzip, None)
    }

    fn build_with(gzip: bool, local: Option<std::net::IpAddr>) -> Http {
        let client = reqwest::Client::builder()
            .no_proxy()
            .gzip(gzip)
            .local_address(local)
            .timeout(Duration::from_secs(60))
            // Well below pnpr's default 30 s header timeout, which also
            // closes idle keep-alive connections: a test that pauses (runs
            // npm for a while) must not reuse a connection the server is
            // closing at that very moment ("error sending request").
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| panic!("cannot build http client: {e}"));
        Http { client }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.send("GET", url, &[], None).await
    }

    /// GET with `Authorization: Bearer <token>`.
    pub async fn get_auth(&self, url: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.send("GET", url, &[("authorization", &auth)], None)
            .await
    }

    /// PUT of a JSON body, optionally with a bearer token.
    pub async fn put_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> Response {
        self.json_request("PUT", url, body, token).await
    }

    /// POST of a JSON body, optionally with a bearer token.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> Response {
        self.json_request("POST", url, body, token).await
    }

    async fn json_request(
        &self,
        method: &str,
        url: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> Response {
        let bytes = serde_json::to_vec(body)
            .unwrap_or_else(|e| panic!("cannot serialize request body for {url}: {e}"));
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = auth.as_deref() {
            headers.push(("authorization", auth));
        }
        self.send(method, url, &headers, Some(bytes)).await
    }

    /// Any request; panics on transport errors (connection refused, timeout),
    /// which are test failures. HTTP error statuses are returned, not panicked.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        let method = Method::from_bytes(method.as_bytes())
            .unwrap_or_else(|e| panic!("bad HTTP method {method:?}: {e}"));
        let mut request = self.client.request(method.clone(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {}", e.without_url()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading body failed: {}", e.without_url()));
        Response {
            method: method.to_string(),
            url: url.to_string(),
            status,
            headers,
            body,
        }
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Response {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics showing the body if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} -> {}: body is not JSON ({e}):\n{}",
                self.method,
                self.url,
                self.status,
                self.text()
            )
        })
    }

    /// A header value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics showing the body unless the status is `expected`.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status,
            expected,
            "{} {}: expected {expected}, got {}; body:\n{}",
            self.method,
            self.url,
            self.status,
            self.text()
        );
        self
    }
}
