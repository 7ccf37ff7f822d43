//! `wasi:http` egress: outgoing requests only to origins granted to the op, checked before a
//! connection is opened, with timeouts bounded by the op's deadline and a response size bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use sluice_model::{LogLevel, LogSource, Origin};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::Grants;
use crate::capture::LogSink;

/// The most response body one request may return to an op.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 8 << 20;

/// How long a connection may take to open unless the op asks for less.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-call policy behind the op's `wasi:http` imports.
pub(crate) struct Egress {
    pub(crate) op_name: String,
    pub(crate) grants: Arc<Grants>,
    pub(crate) log: LogSink,
    pub(crate) deadline: Instant,
}

impl Egress {
    /// Why a request to `uri` is refused, or `None` when a grant covers it.
    fn refusal(&self, uri: &http::Uri) -> Option<String> {
        let url = uri.to_string();
        let origin = match Origin::of_url(&url) {
            Ok(o) => o,
            Err(e) => return Some(format!("http request refused: {e}")),
        };
        if self.grants.http.iter().any(|g| g.covers(&origin)) {
            return None;
        }
        let grant = if origin.port == default_port(&origin.scheme) {
            format!("http:{}://{}", origin.scheme, origin.host)
        } else {
            format!("http:{origin}")
        };
        Some(format!(
            "http request to {origin} denied: not granted to op `{}`: grant `{grant}` to this op",
            self.op_name
        ))
    }

    /// The op's options, each bounded by what is left of its deadline.
    fn bounded(&self, options: Option<RequestOptions>) -> RequestOptions {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let o = options.unwrap_or_default();
        let cap = |d: Option<Duration>, default: Duration| Some(d.unwrap_or(default).min(left));
        RequestOptions {
            connect_timeout: cap(o.connect_timeout, CONNECT_TIMEOUT),
            first_byte_timeout: cap(o.first_byte_timeout, left),
            between_bytes_timeout: cap(o.between_bytes_timeout, left),
        }
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Egress {
    fn is_supported_scheme(&mut self, scheme: &http::uri::Scheme) -> bool {
        *scheme == http::uri::Scheme::HTTP || *scheme == http::uri::Scheme::HTTPS
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if let Some(why) = self.refusal(request.uri()) {
            self.log.push(LogLevel::Error, LogSource::Host, why);
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        if let Some(fixtures) = self.grants.fixtures.clone() {
            return Box::new(answer_http(fixtures, request, self.log.clone()));
        }
        let options = self.bounded(options);
        let (log, url) = (self.log.clone(), request.uri().to_string());
        Box::new(async move {
            let (res, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let res = res.map(|body| {
                http_body_util::Limited::new(body, MAX_HTTP_RESPONSE_BYTES)
                    .map_err(move |e| match e.downcast::<Error>() {
                        Ok(inner) => *inner,
                        // Limited's only own error: the body passed the bound.
                        Err(_) => {
                            log.push(
                                LogLevel::Error,
                                LogSource::Host,
                                format!(
                                    "http response from {url} cut: over the limit of {MAX_HTTP_RESPONSE_BYTES} bytes"
                                ),
                            );
                            Error::HttpResponseBodySize(None)
                        }
                    })
                    .boxed_unsync()
            });
            Ok((res, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// The fixture's answer to `request` (under `sluice op test`): the request body is read (so the
/// op's writes succeed) and dropped; a request no fixture answers fails, naming the fixture to add.
async fn answer_http(
    fixtures: Arc<sluice_model::fixtures::Fixtures>,
    request: http::Request<WasiBody>,
    log: LogSink,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let (method, url) = (request.method().to_string(), request.uri().to_string());
    let _ = http_body_util::Limited::new(request.into_body(), MAX_HTTP_RESPONSE_BYTES)
        .collect()
        .await;
    let Some(f) = fixtures.http.iter().find(|f| f.answers(&method, &url)) else {
        log.push(
            LogLevel::Error,
            LogSource::Host,
            format!(
                "no http fixture answers {method} {url}: add one to the case's `http:` (method: {method}, url: {url})"
            ),
        );
        return Err(Error::ConnectionRefused);
    };
    let mut res = http::Response::builder().status(f.status);
    for (name, value) in &f.headers {
        res = res.header(name, value);
    }
    let body = http_body_util::Full::new(f.body.clone().into())
        .map_err(|never| match never {})
        .boxed_unsync();
    let res = res.body(body).map_err(|e| {
        log.push(
            LogLevel::Error,
            LogSource::Host,
            format!("the http fixture for {method} {url} is not a valid response: {e}"),
        );
        Error::InternalError(Some(e.to_string()))
    })?;
    Ok((
        res,
        Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
    ))
}
