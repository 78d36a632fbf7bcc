//! The `/metrics` endpoint on its own thread (`tiny_http`, synchronous).
//!
//! GET /metrics encodes the registry in the format the scraper accepts:
//! OpenMetrics text when the Accept header names it (Prometheus does), the
//! Prometheus 0.0.4 text format otherwise (curl, `promtool check metrics`).
//! Anything else is 404 or 405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tiny_http::{Header, Method, Request, Response};

/// OpenMetrics 1.0 text, as `text::encode` writes it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Server {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl Server {
    pub fn start(addr: SocketAddr, registry: Registry) -> Result<Server> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| {
                format!("cannot serve metrics on {addr} (is the port in use? pick another with --metrics)")
            })?;
        let bound = server
            .server_addr()
            .to_ip()
            .context("the metrics server is not on an IP address")?;
        let server = Arc::new(server);
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn({
                let server = Arc::clone(&server);
                move || {
                    super::yield_to_control();
                    for request in server.incoming_requests() {
                        // A client that went away is its own problem.
                        let _ = respond(request, &registry);
                    }
                }
            })
            .context("cannot start the metrics HTTP thread")?;
        Ok(Server {
            server,
            addr: bound,
            thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) -> Result<()> {
        self.server.unblock();
        self.thread
            .join()
            .map_err(|_| anyhow!("the metrics HTTP thread panicked"))
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid static header")
}

fn respond(request: Request, registry: &Registry) -> std::io::Result<()> {
    let path = request.url().split('?').next().unwrap_or("");
    if path != "/metrics" {
        return request.respond(
            Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404),
        );
    }
    if *request.method() != Method::Get && *request.method() != Method::Head {
        return request.respond(
            Response::from_string("only GET\n")
                .with_status_code(405)
                .with_header(header("Allow", "GET, HEAD")),
        );
    }
    let openmetrics = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Accept"))
        .any(|h| h.value.as_str().contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (text::encode(&mut body, registry), OPENMETRICS_CONTENT_TYPE)
    } else {
        (
            prometheus_text::encode(&mut body, registry),
            prometheus_text::CONTENT_TYPE,
        )
    };
    if encoded.is_err() {
        return request
            .respond(Response::from_string("cannot encode the metrics\n").with_status_code(500));
    }
    request.respond(Response::from_string(body).with_header(header("Content-Type", content_type)))
}
