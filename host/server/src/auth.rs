//! Who sends a request: an API token (`Authorization: Bearer TOKEN`), checked by the service
//! layer, or the identity header of a trusted reverse proxy (`--auth-header`). Failed attempts
//! are counted per client address and refused with 429 past
//! [`FAILED_LOGINS_PER_MINUTE`](crate::FAILED_LOGINS_PER_MINUTE).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Server;
use crate::problem::Problem;

/// Puts the request's [`sluice_app::Actor`] into its extensions, or answers 401 (or 429).
pub(crate) async fn authenticate(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(actor) = server.proxy_actor(peer.ip(), req.headers()) {
        // The proxy adds its header to whatever the browser sends, forged cross-site requests
        // too: changes are taken only from the same site.
        if !req.method().is_safe() && cross_site(req.headers()) {
            return Problem::new(
                StatusCode::FORBIDDEN,
                "a cross-site request cannot change anything: send it from the sluice pages, or with a token",
            )
            .into_response();
        }
        req.extensions_mut().insert(actor);
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    // The monitor's pages read the API with their session cookie (their live log stream and
    // status); a cookie changes nothing, so it is taken for reads only.
    if token.is_none()
        && matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        )
        && let Some(session) = crate::ui::session_of(&server, req.headers())
    {
        req.extensions_mut().insert(session.actor);
        return next.run(req).await;
    }
    let Some(token) = token else {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "no token: send `Authorization: Bearer TOKEN` (an administrator creates one with `sluice token create --user NAME`)",
        )
        .into_response();
    };
    match server
        .authenticate(peer.ip(), crate::Credential::Token(&token))
        .await
    {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err((status, why)) => Problem::new(status, why).into_response(),
    }
}

/// Whether a browser says the request comes from another site (`Sec-Fetch-Site`, or an
/// `Origin` whose host is not the one addressed). Clients that are not browsers send neither.
pub(crate) fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, rest)| rest != host),
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_requests_are_told_apart() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, axum::http::HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_site(&h(&[])), "curl and scripts send neither");
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&h(&[
            ("origin", "https://sluice.example.com"),
            ("host", "sluice.example.com")
        ])));
        assert!(cross_site(&h(&[
            ("origin", "https://evil.example.com"),
            ("host", "sluice.example.com")
        ])));
        assert!(cross_site(&h(&[
            ("origin", "null"),
            ("host", "sluice.example.com")
        ])));
    }
}
