//! The admin endpoint of a running instance: Prometheus metrics and
//! controls over plain HTTP/1.1, on a loopback address by default. It needs
//! no signals, so it works the same on every platform.
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text format (OpenMetrics) |
//! | `GET /stats` | the server's figures as JSON |
//! | `POST /drain` body `on` or `off` | drain ("Reject new clients") or admit again (409 while stopping) |
//! | `POST /max-sessions` body `N` | "Max concurrent sessions" (at least 1) |
//! | `POST /shutdown` | graceful stop (the caller's; `aos-instance` drains up to `shutdown_grace`, a second request stops at once) |
//! | `GET /health` | `ok` while serving |
//!
//! ```text
//! curl -s http://127.0.0.1:9711/metrics
//! curl -s http://127.0.0.1:9711/stats
//! curl -s -X POST --data on  http://127.0.0.1:9711/drain
//! curl -s -X POST --data off http://127.0.0.1:9711/drain
//! curl -s -X POST --data 250 http://127.0.0.1:9711/max-sessions
//! curl -s -X POST http://127.0.0.1:9711/shutdown
//! ```
//!
//! With `admin_token` in the instance's file (required off loopback), every
//! `POST` must carry `Authorization: Bearer TOKEN`; reads stay open.
//! Every request must be addressed to the endpoint itself: one that names
//! another origin (`Origin`), or, on loopback, another host (`Host`: a name
//! rebound to 127.0.0.1) is refused with 403, so a web page in an
//! operator's browser cannot drive it.
//!
//! Built on `hyper` 1 (the HTTP implementation under axum, reqwest and
//! tonic; a handful of fixed routes needs no router) and `prometheus-client`
//! (the Prometheus project's own Rust client, OpenMetrics text).

mod metrics;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

pub use self::metrics::Metrics;
use crate::server::{ServerHandle, ServerStats};

/// Request bodies are a word or a number: anything longer is refused.
const MAX_BODY: usize = 1024;
/// The longest an admin connection may stay open (keep-alive included).
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The admin endpoint's shared state.
pub struct Admin {
    handle: ServerHandle,
    metrics: Arc<Metrics>,
    shutdown: Arc<Notify>,
    /// The bearer token every `POST` must carry, if any.
    token: Option<String>,
}

impl Admin {
    /// Controls `handle`, publishes `metrics`; `POST /shutdown` notifies `shutdown`
    /// (the caller stops the server, so a signal and this share one path).
    /// With `token`, every `POST` must carry `Authorization: Bearer TOKEN`.
    pub fn new(
        handle: ServerHandle,
        metrics: Arc<Metrics>,
        shutdown: Arc<Notify>,
        token: Option<String>,
    ) -> Arc<Admin> {
        Arc::new(Admin { handle, metrics, shutdown, token })
    }

    /// `None` when `req` may proceed; else the 401 to answer.
    fn unauthorized<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        let token = self.token.as_deref()?;
        if req.method() != Method::POST {
            return None;
        }
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if same_secret(given.as_bytes(), token.as_bytes()) {
            return None;
        }
        warn!(path = %req.uri().path(), "admin: mutating request without the bearer token refused");
        let mut resp = text_response(StatusCode::UNAUTHORIZED, "a bearer token is required\n".into());
        resp.headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
        Some(resp)
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped or aborted.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let own = match listener.local_addr() {
            Ok(addr) => Arc::new(OwnAddress(addr)),
            Err(e) => {
                warn!(error = %e, "admin listener has no address; not serving");
                return;
            }
        };
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admin = self.clone();
            let own = own.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (admin, own) = (admin.clone(), own.clone());
                    async move {
                        let response = match own.refusal(&req).or_else(|| admin.unauthorized(&req)) {
                            Some(refused) => refused,
                            None => admin.route(req).await,
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                // A client that trickles its body or never reads is cut off.
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "admin connection ended"),
                    Err(_) => debug!(%peer, "admin connection timed out"),
                }
            });
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        match (method, path.as_str()) {
            (Method::GET, "/metrics") => match self.handle.stats().await {
                Ok(stats) => {
                    let text = self.metrics.render(&stats);
                    let mut resp = text_response(StatusCode::OK, text);
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    resp
                }
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            },
            (Method::GET, "/stats") => match self.handle.stats().await {
                Ok(stats) => {
                    let mut resp = text_response(StatusCode::OK, stats_json(&stats).to_string() + "\n");
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    resp
                }
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            },
            (Method::GET, "/health") => {
                if self.handle.is_stopped() {
                    text_response(StatusCode::SERVICE_UNAVAILABLE, "stopped\n".into())
                } else {
                    text_response(StatusCode::OK, "ok\n".into())
                }
            }
            (Method::POST, "/drain") => {
                let body = match read_body(req).await {
                    Ok(body) => body,
                    Err(resp) => return resp,
                };
                let drain = match body.as_str() {
                    "on" | "true" | "1" => true,
                    "off" | "false" | "0" => false,
                    _ => {
                        return text_response(
                            StatusCode::BAD_REQUEST,
                            "POST /drain takes `on` (reject new clients) or `off` (admit again)\n".into(),
                        )
                    }
                };
                match self.handle.set_accepting(!drain).await {
                    Ok(()) => {
                        info!(drain, "admin: drain set");
                        text_response(StatusCode::OK, format!("draining: {drain}\n"))
                    }
                    Err(e @ crate::ServerError::Stopping) => {
                        text_response(StatusCode::CONFLICT, format!("{e}\n"))
                    }
                    Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                }
            }
            (Method::POST, "/max-sessions") => {
                let body = match read_body(req).await {
                    Ok(body) => body,
                    Err(resp) => return resp,
                };
                let Ok(max) = body.parse::<u32>() else {
                    return text_response(
                        StatusCode::BAD_REQUEST,
                        "POST /max-sessions takes a whole number of at least 1\n".into(),
                    );
                };
                match self.handle.set_max_sessions(max).await {
                    Ok(()) => {
                        info!(max, "admin: max_sessions set");
                        text_response(StatusCode::OK, format!("max_sessions: {max}\n"))
                    }
                    Err(crate::ServerError::Stopped) => {
                        text_response(StatusCode::SERVICE_UNAVAILABLE, "the server has stopped\n".into())
                    }
                    Err(e) => text_response(StatusCode::BAD_REQUEST, format!("{e}\n")),
                }
            }
            (Method::POST, "/shutdown") => {
                info!("admin: shutdown requested");
                self.shutdown.notify_one();
                text_response(StatusCode::ACCEPTED, "shutting down\n".into())
            }
            (_, "/metrics" | "/stats" | "/health" | "/drain" | "/max-sessions" | "/shutdown") => {
                text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into())
            }
            _ => text_response(
                StatusCode::NOT_FOUND,
                "not found: try GET /metrics, GET /stats, POST /drain, POST /max-sessions, POST /shutdown\n"
                    .into(),
            ),
        }
    }
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

async fn read_body(req: Request<Incoming>) -> Result<String, Response<Full<Bytes>>> {
    let collected = Limited::new(req.into_body(), MAX_BODY).collect().await.map_err(|_| {
        text_response(StatusCode::PAYLOAD_TOO_LARGE, format!("the body must be under {MAX_BODY} bytes\n"))
    })?;
    String::from_utf8(collected.to_bytes().to_vec())
        .map(|s| s.trim().to_owned())
        .map_err(|_| text_response(StatusCode::BAD_REQUEST, "the body must be UTF-8 text\n".into()))
}

/// The admin endpoint's own address, which every request must be addressed
/// to: a web page in an operator's browser must not drive the endpoint. A
/// request that names another origin (`Origin`), or, on loopback, another
/// host (`Host`: a DNS-rebound name that resolves to 127.0.0.1) is refused
/// with 403 whatever its path.
struct OwnAddress(std::net::SocketAddr);

impl OwnAddress {
    /// Whether `host` (a `Host` header, or an origin without its scheme)
    /// names this endpoint: its address, or on loopback `localhost`, with its port.
    fn names(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if host == self.0.to_string() {
            return true;
        }
        self.0.ip().is_loopback() && host == format!("localhost:{}", self.0.port())
    }

    fn refusal<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        let header = |name| req.headers().get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        if let Some(origin) = header(hyper::header::ORIGIN) {
            let own = origin.strip_prefix("http://").is_some_and(|host| self.names(host));
            if !own {
                warn!(%origin, "admin: cross-origin request refused");
                return Some(text_response(
                    StatusCode::FORBIDDEN,
                    "cross-origin requests are refused\n".into(),
                ));
            }
        }
        if self.0.ip().is_loopback() {
            let own = header(hyper::header::HOST).is_some_and(|host| self.names(host));
            if !own {
                warn!(host = ?header(hyper::header::HOST), "admin: request for another host refused");
                return Some(text_response(
                    StatusCode::FORBIDDEN,
                    format!("requests must be addressed to {} (Host)\n", self.0),
                ));
            }
        }
        None
    }
}

/// Equal, compared in time independent of where they differ (a token
/// must not be guessable byte by byte from response times).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The server's figures as JSON (`GET /stats`): [`ServerStats`] as serde
/// writes it, grouped (`connections`, `sessions`, `peers`, `registry`,
/// `instance`).
pub fn stats_json(s: &ServerStats) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}
