//! The HTTP source: `POST` of a raw HL7 v2 body (one message, or a batch/file of several).
//!
//! The response body is the acknowledgement (several ACKs, one per message, for a batch)
//! with the HL7 media type. Status: 200 when every message was accepted (AA/CA), 422 when one
//! was refused (AR), 503 when one could not be stored (AE: send again), 413 when the body is
//! over the limit, 400 when it holds no message at all.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hl7v2::AckCode;

use crate::destinations::http::HL7_MEDIA_TYPE;
use crate::runtime::channel::Channel;

/// Routes for the channels with an HTTP source: `(path, channel, max body bytes)`.
pub fn routes(sources: Vec<(String, Arc<Channel>, usize)>) -> axum::Router {
    let mut router = axum::Router::new();
    for (path, channel, limit) in sources {
        router = router.route(
            &path,
            post(receive)
                .with_state((channel, limit))
                .layer(DefaultBodyLimit::max(limit)),
        );
    }
    router
}

async fn receive(
    State((channel, limit)): State<(Arc<Channel>, usize)>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // The limit is named (axum's own text says only that a length limit was exceeded).
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than this source's max_body ({limit} bytes); nothing was stored\n"
                ),
            )
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let peer = format!("http:{addr}");
    if body.iter().all(u8::is_ascii_whitespace) {
        return (
            StatusCode::BAD_REQUEST,
            "the body holds no HL7 v2 message\n",
        )
            .into_response();
    }
    // A body with lines outside any message is taken whole, so it is stored and answered
    // with a NAK like any unreadable message rather than partly processed.
    let items: Vec<_> = hl7v2::split_file(&body).collect();
    let messages: Vec<&[u8]> = if items.is_empty() || items.iter().any(Result::is_err) {
        vec![&body[..]]
    } else {
        items
            .into_iter()
            .filter_map(Result::ok)
            .map(|m| m.bytes)
            .collect()
    };
    let mut acks = Vec::new();
    let mut worst = StatusCode::OK;
    for bytes in messages {
        let reply = channel.ingest(bytes, &peer).await;
        let status = match reply.code {
            AckCode::AA | AckCode::CA => StatusCode::OK,
            AckCode::AR | AckCode::CR => StatusCode::UNPROCESSABLE_ENTITY,
            AckCode::AE | AckCode::CE => StatusCode::SERVICE_UNAVAILABLE,
        };
        worst = worse(worst, status);
        if let Some(ack) = reply.ack {
            acks.extend_from_slice(&ack);
        }
    }
    (worst, [(header::CONTENT_TYPE, HL7_MEDIA_TYPE)], acks).into_response()
}

fn worse(a: StatusCode, b: StatusCode) -> StatusCode {
    let rank = |s: StatusCode| match s.as_u16() {
        200 => 0,
        422 => 1,
        _ => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}
