//! The admin API, for operators: off unless `--admin-token` is configured (its routes do not exist
//! then, so they answer 404), and every request must carry that secret as a bearer token (401
//! otherwise, compared in constant time like the ingest token).
//!
//! `POST /admin/v1/users/{user_id}/disconnect` closes every socket of the user with 4003
//! `DISCONNECTED`. In production mode the order goes through Redis to every instance (see
//! `backend::redis::presence`) and the answer is `{"user_id": ..., "instances": N}`, N being how
//! many instances received it (PUBLISH's receiver count, this one included; each closes the
//! sockets it holds, which this instance cannot count for the others). In embedded mode the one
//! instance closes its own and says how many: `{"user_id": ..., "instances": 1, "sockets": N}`.
//! 503 when Redis cannot be reached.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::AppState;
use crate::http::presents_bearer_secret;
use crate::session::Closing;

/// The admin routes, to merge into the router when `--admin-token` is configured.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/v1/users/{user_id}/disconnect", post(disconnect))
}

async fn disconnect(State(app): State<Arc<AppState>>, Path(user): Path<String>, headers: HeaderMap) -> Response {
    let authorized =
        app.admin_token.as_ref().is_some_and(|expected| presents_bearer_secret(&headers, expected.expose_secret()));
    if !authorized {
        let message = "the admin API needs `Authorization: Bearer <admin token>` (the --admin-token secret)";
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "unauthorized", "message": message })),
        )
            .into_response();
    }
    match &app.presence {
        Some(presence) => match presence.disconnect_everywhere(&user).await {
            Ok(reach) => {
                tracing::info!(user, instances = reach.instances, "an operator disconnected the user everywhere");
                Json(json!({ "user_id": user, "instances": reach.instances })).into_response()
            }
            Err(error) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "unavailable", "message": format!("cannot reach the other instances: {error}; retry") })),
            )
                .into_response(),
        },
        None => {
            let sockets = app.hub.close_user(&user, Closing::Disconnected);
            tracing::info!(user, sockets, "an operator disconnected the user");
            Json(json!({ "user_id": user, "instances": 1, "sockets": sockets })).into_response()
        }
    }
}
