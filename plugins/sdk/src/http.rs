//! Outgoing HTTP through `wasi:http`, blocking, for ops (cargo feature `http`).
//!
//! The host sends a request only to an origin granted to the op (`http:https://host` in the
//! rule's `grants:`); any other is refused before a connection is opened, and the error says
//! which grant to add. Declare what you call in `Op::NEEDS` (`http:*` when the input names
//! the hosts).

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    http_error_code,
};
use wasip2::io::streams::StreamError;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `PUT`, `DELETE`, ...
    pub method: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
    /// How long to wait for the response (the op's deadline bounds it anyway).
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` to `url`, no headers and no body.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("content-type", "application/json")
    }

    /// Sets the response timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(&self) -> Result<Response, String> {
        send(self)
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, String> {
    Request::new("GET", url).send()
}

/// Sends `req` and reads the whole response.
pub fn send(req: &Request) -> Result<Response, String> {
    let (scheme, rest) = req
        .url
        .split_once("://")
        .ok_or_else(|| format!("`{}` is not an absolute http(s) URL", req.url))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "`{}`: scheme `{other}` is not http or https",
                req.url
            ));
        }
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.is_empty() { "/" } else { path };

    let mut fields: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    // A known length, not chunked encoding: some webhooks refuse chunked bodies.
    if !req.body.is_empty() && !fields.iter().any(|(n, _)| n == "content-length") {
        fields.push((
            "content-length".into(),
            req.body.len().to_string().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&fields).map_err(|e| format!("bad request header: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let method = match req.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    let bad = |what: &str| format!("{what} rejected for {}", req.url);
    request.set_method(&method).map_err(|_| bad("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|_| bad("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|_| bad("host"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|_| bad("path"))?;

    let body = request.body().map_err(|_| bad("body"))?;
    {
        let out = body.write().map_err(|_| bad("body"))?;
        for chunk in req.body.chunks(4096) {
            out.blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the body to {}: {e:?}", req.url))?;
        }
    }
    let options = RequestOptions::new();
    if let Some(t) = req.timeout {
        let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
    }
    let future =
        outgoing_handler::handle(request, Some(options)).map_err(|e| describe(&e, &req.url))?;
    OutgoingBody::finish(body, None).map_err(|e| describe(&e, &req.url))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(describe(&e, &req.url)),
        Some(Err(())) | None => return Err(format!("no response from {}", req.url)),
    };

    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response.consume().map_err(|_| bad("response body"))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming.stream().map_err(|_| bad("response body"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match http_error_code(&e) {
                        Some(code) => describe(&code, &req.url),
                        None => format!(
                            "reading the response from {}: {}",
                            req.url,
                            e.to_debug_string()
                        ),
                    });
                }
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

/// The host's error code, in words; a denial names the grant to add.
fn describe(e: &ErrorCode, url: &str) -> String {
    match e {
        ErrorCode::HttpRequestDenied => {
            let origin = url
                .split_once("://")
                .map(|(s, r)| format!("{s}://{}", &r[..r.find(['/', '?']).unwrap_or(r.len())]))
                .unwrap_or_else(|| url.to_string());
            format!(
                "request to {url} denied by the host: the op is not granted `http:{origin}`; add it to the rule's grants"
            )
        }
        ErrorCode::ConnectionRefused => format!("{url}: connection refused"),
        ErrorCode::ConnectionTimeout => format!("{url}: connection timed out"),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            format!("{url}: timed out waiting for the response")
        }
        ErrorCode::HttpResponseBodySize(_) => {
            format!("{url}: the response body is larger than the host allows")
        }
        ErrorCode::DnsError(d) => format!(
            "{url}: name lookup failed{}",
            d.rcode
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        other => format!("{url}: {other:?}"),
    }
}
