//! Who sends a request: an API token (`Authorization: Bearer TOKEN`), checked by the service
//! layer. Failed attempts are counted per client address and refused with 429 past
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
    match server.authenticate(peer.ip(), &token).await {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err((status, why)) => Problem::new(status, why).into_response(),
    }
}
