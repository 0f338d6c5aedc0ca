//! Finding the member that holds a user, and what to say when none can tell.
//!
//! The partition of a user depends on the producer's partitioner, so no member can compute
//! where a user lives. An instance first looks in its own state; if the user is not there it
//! asks every other member at once (each answers from its own state only) and takes the one
//! that has the user. "Unknown user" (404) is said only when the answers cover every partition
//! of the input topic, each from a member that had it restored; otherwise a partition is being
//! moved, restored or sits with an unreachable member, and the answer is 503 with
//! `Retry-After` rather than a wrong 404.

use std::collections::BTreeSet;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{json, unavailable, Answer, App, FORWARDED};

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    View,
    Export,
}

/// This instance's own answer, serialized.
fn local(app: &App, want: Want, user_id: &str) -> Answer<Vec<u8>> {
    fn bytes<T: Serialize>(a: Answer<T>) -> Answer<Vec<u8>> {
        match a {
            Answer::Found(v) => match serde_json::to_vec(&v) {
                Ok(b) => Answer::Found(b),
                Err(e) => Answer::Unavailable {
                    reason: format!("cannot serialize the answer: {e}"),
                },
            },
            Answer::NotHere { partitions } => Answer::NotHere { partitions },
            Answer::Unavailable { reason } => Answer::Unavailable { reason },
        }
    }
    match want {
        Want::View => bytes(app.local.describe(user_id)),
        Want::Export => bytes(app.local.export(user_id)),
    }
}

fn found(body: Vec<u8>, served_by: &str) -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = served_by.parse() {
        r.headers_mut().insert("x-churnguard-served-by", v);
    }
    r
}

/// The body of a 404 from a member: which partitions it looked in.
#[derive(Serialize, serde::Deserialize)]
struct NotHereBody {
    error: String,
    partitions: Vec<i32>,
}

fn not_here(user_id: &str, partitions: Vec<i32>) -> Response {
    let body = NotHereBody {
        error: format!("unknown user {user_id:?}: churnguard holds no state for this user"),
        partitions,
    };
    json(StatusCode::NOT_FOUND, &body)
}

/// Answers a lookup: from this instance's state, or from the member that has the user.
pub(super) async fn resolve(app: &App, want: Want, user_id: &str, headers: &HeaderMap) -> Response {
    let me = app.config.advertised_url.as_str();
    let mine = local(app, want, user_id);
    if headers.contains_key(FORWARDED) {
        // Asked by another member: answer for this instance's own state only.
        return match mine {
            Answer::Found(body) => found(body, me),
            Answer::NotHere { partitions } => not_here(user_id, partitions),
            Answer::Unavailable { reason } => unavailable(reason),
        };
    }
    let mut covered = BTreeSet::new();
    let mut gaps: Vec<String> = Vec::new();
    match mine {
        Answer::Found(body) => return found(body, me),
        Answer::NotHere { partitions } => covered.extend(partitions),
        Answer::Unavailable { reason } => gaps.push(format!("{me}: {reason}")),
    }
    let peers = app.peers.as_ref().map(|p| p.peers()).unwrap_or_default();
    let asks = peers
        .iter()
        .map(|peer| ask(app, peer, want, user_id, headers));
    for (peer, outcome) in peers.iter().zip(futures_util::future::join_all(asks).await) {
        match outcome {
            Asked::Found(body) => {
                app.metrics.forward("found");
                return found(body, peer);
            }
            Asked::NotHere(partitions) => {
                app.metrics.forward("not_here");
                covered.extend(partitions);
            }
            Asked::Unavailable(reason) => {
                app.metrics.forward("unavailable");
                gaps.push(format!("{peer}: {reason}"));
            }
            Asked::Error(reason) => {
                app.metrics.forward("error");
                gaps.push(format!("{peer}: {reason}"));
            }
        }
    }
    match app.local.partition_count() {
        Some(n) if (0..n as i32).all(|p| covered.contains(&p)) => {
            not_here(user_id, covered.into_iter().collect())
        }
        count => {
            let missing: Vec<i32> = match count {
                Some(n) => (0..n as i32).filter(|p| !covered.contains(p)).collect(),
                None => Vec::new(),
            };
            let what = if count.is_none() {
                "the input topic's partitions are not known yet".to_string()
            } else {
                format!("no member answered for partitions {missing:?}")
            };
            unavailable(format!(
                "cannot tell yet ({what}: a rebalance, a restore or an unreachable member){}",
                if gaps.is_empty() {
                    String::new()
                } else {
                    format!("; {}", gaps.join("; "))
                }
            ))
        }
    }
}

/// Another member's answer.
enum Asked {
    Found(Vec<u8>),
    NotHere(Vec<i32>),
    Unavailable(String),
    Error(String),
}

/// Asks one member for its own answer, with the caller's credentials.
async fn ask(app: &App, peer: &str, want: Want, user_id: &str, headers: &HeaderMap) -> Asked {
    let mut url = match reqwest::Url::parse(peer) {
        Ok(u) => u,
        Err(e) => return Asked::Error(format!("bad member URL: {e}")),
    };
    match url.path_segments_mut() {
        Ok(mut path) => {
            path.clear().extend(["v1", "users", user_id]);
            if want == Want::Export {
                path.push("export");
            }
        }
        Err(()) => return Asked::Error("member URL cannot take a path".into()),
    }
    let mut request = app.client.get(url).header(FORWARDED, "1");
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Asked::Error(e.without_url().to_string()),
    };
    let status = response.status().as_u16();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Asked::Error(e.without_url().to_string()),
    };
    match status {
        200 => Asked::Found(body.to_vec()),
        404 => match serde_json::from_slice::<NotHereBody>(&body) {
            Ok(b) => Asked::NotHere(b.partitions),
            Err(_) => Asked::Error("404 without the partitions it looked in".into()),
        },
        503 => Asked::Unavailable(
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "unavailable".into()),
        ),
        other => Asked::Error(format!("answered {other}")),
    }
}
