//! FHIR R4 Subscriptions (rest-hook): every new or updated resource that matches an active
//! Subscription's criteria is POSTed to its endpoint, durably, with retries.
//!
//! # Map
//!
//! ```text
//! resource_versions ──scan after cursor──> match each active Subscription's criteria
//!     (the FHIR search grammar, evaluated by the store on that one resource)
//!   ──> notifications queued + cursor moved (one transaction)
//!   ──> claimed under a lease ──> POST endpoint ──> delivered | retrying (backoff) | failed
//! ```
//!
//! The scanner reads the store's change feed, so it sees every write path alike (feeds
//! through `fhir-store` destinations, API write-backs settled by the EHR). What a crash leaves
//! behind: a scan is committed whole or not at all, and a claimed notification is claimed
//! again when its lease expires: a receiver may get one twice, never none.

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{
    IndexTest, NewNotification, Notification, NotificationOutcome, ResourceQuery, Store,
    UnixMillis, ValueTest,
};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::config::RetryPolicy;
use crate::destinations::fhir_store;
use crate::fhir_query;

/// The scanner's cursor name in the store.
pub const CURSOR: &str = "subscriptions";

/// Changes read per scan.
const SCAN_BATCH: u32 = 500;

/// Notifications sent per claim.
const SEND_BATCH: usize = 16;

/// Longest one POST may take; also bounds the lease of a claimed batch.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the worker looks for work when nobody woke it.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Retries: 1 s doubling to 5 min, then the notification fails after 20 attempts (about
/// 1.2 hours of trying), so a dead endpoint does not hold notifications forever.
pub const RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(300),
    max_attempts: 20,
};

/// An active subscription, read from its resource.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub resource_type: String,
    pub search: fhir_query::Search,
    pub endpoint: String,
    /// Send the resource (`Some(mime)`) or an empty POST.
    pub payload: Option<String>,
    pub headers: Vec<(String, String)>,
    /// After this the subscription is over.
    pub end: Option<i64>,
    /// Versions written before this (unix ms: when the subscription was last written, i.e.
    /// became active) are not notified.
    pub since: i64,
}

/// Reads a Subscription resource (JSON); `Err` says what is wrong, naming the element.
///
/// # Errors
/// A missing or unsupported element (`Subscription.channel.type: only rest-hook is supported`).
pub fn read_subscription(id: &str, v: &Value) -> Result<Subscription, String> {
    let text = |path: &str, x: Option<&Value>| -> Result<String, String> {
        x.and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("Subscription.{path} is required"))
    };
    let criteria = text("criteria", v.get("criteria"))?;
    let (resource_type, search) =
        fhir_query::parse_criteria(&criteria).map_err(|e| format!("Subscription.{e}"))?;
    let channel = v.get("channel").ok_or("Subscription.channel is required")?;
    let kind = text("channel.type", channel.get("type"))?;
    if kind != "rest-hook" {
        return Err(format!(
            "Subscription.channel.type: only rest-hook is supported, not {kind:?}"
        ));
    }
    let endpoint = text("channel.endpoint", channel.get("endpoint"))?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err("Subscription.channel.endpoint: expected an http:// or https:// URL".into());
    }
    let payload = match channel.get("payload").and_then(Value::as_str) {
        None => None,
        Some(m @ ("application/fhir+json" | "application/json")) => Some(m.to_owned()),
        Some(other) => {
            return Err(format!(
                "Subscription.channel.payload: {other:?} is not served (application/fhir+json is)"
            ));
        }
    };
    let mut headers = Vec::new();
    if let Some(list) = channel.get("header").and_then(Value::as_array) {
        for (i, h) in list.iter().enumerate() {
            let h = h.as_str().unwrap_or_default();
            let (name, value) = h
                .split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .ok_or_else(|| {
                    format!("Subscription.channel.header[{i}]: expected \"Name: value\"")
                })?;
            if h.contains(['\r', '\n']) {
                return Err(format!(
                    "Subscription.channel.header[{i}]: contains a line break"
                ));
            }
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let end = v
        .get("end")
        .and_then(Value::as_str)
        .and_then(fhir::search::parse_date)
        .map(|(_, hi)| hi);
    Ok(Subscription {
        id: id.to_owned(),
        resource_type,
        search,
        endpoint,
        payload,
        headers,
        end,
        since: 0,
    })
}

/// Active subscriptions (status `active`, not past their `end`).
async fn active(store: &dyn Store) -> causeway_store::Result<Vec<Subscription>> {
    let page = store
        .search_resources(ResourceQuery {
            resource_type: "Subscription".into(),
            clauses: vec![vec![IndexTest {
                param: "Subscription.status".into(),
                test: ValueTest::Code("active".into()),
            }]],
            count: causeway_store::resources::MAX_RESOURCE_PAGE,
            ..ResourceQuery::default()
        })
        .await?;
    let now = UnixMillis::now().0;
    Ok(page
        .resources
        .iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_slice(&r.json).ok()?;
            let mut s = read_subscription(&r.id, &v).ok()?;
            s.since = r.last_updated.0;
            Some(s)
        })
        .filter(|s| s.end.is_none_or(|end| end >= now))
        .collect())
}

/// The matcher and sender, one per process.
pub struct SubscriptionWorker {
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub worker_id: String,
    pub wake: Arc<Notify>,
}

impl SubscriptionWorker {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wake = self.wake.clone();
            let woken = wake.notified();
            let busy = match self.scan().await {
                Ok(more) => more,
                Err(e) => {
                    tracing::error!(error = %e, "subscription scan failed; will retry");
                    false
                }
            };
            let sent = match self.send_due().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(error = %e, "claiming notifications failed; will retry");
                    false
                }
            };
            if busy || sent {
                continue;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Matches the changes after the cursor; true when there may be more.
    pub async fn scan(&self) -> causeway_store::Result<bool> {
        let after = self.store.cursor(CURSOR).await?;
        let changes = self.store.resource_changes(after, SCAN_BATCH).await?;
        let Some(last) = changes.last().map(|c| c.position) else {
            return Ok(false);
        };
        let subscriptions = active(&*self.store).await?;
        let mut queued = Vec::new();
        for change in &changes {
            let r = &change.resource;
            if r.deleted || r.resource_type == "Subscription" {
                continue;
            }
            for s in subscriptions
                .iter()
                .filter(|s| s.resource_type == r.resource_type && r.last_updated.0 >= s.since)
            {
                let mut q = s.search.query.clone();
                q.ids = vec![r.id.clone()];
                q.count = 0;
                q.offset = 0;
                if self.store.search_resources(q).await?.total > 0 {
                    queued.push(NewNotification {
                        subscription: s.id.clone(),
                        resource_type: r.resource_type.clone(),
                        resource_id: r.id.clone(),
                        version: r.version,
                    });
                }
            }
        }
        if !queued.is_empty() {
            tracing::debug!(notifications = queued.len(), "subscription matches queued");
        }
        self.store
            .queue_notifications(CURSOR.into(), last, queued)
            .await?;
        Ok(changes.len() as u32 == SCAN_BATCH)
    }

    /// Sends what is due; returns how many were attempted.
    pub async fn send_due(&self) -> causeway_store::Result<usize> {
        let lease = NOTIFY_TIMEOUT * (SEND_BATCH as u32) + Duration::from_secs(10);
        let batch = self
            .store
            .claim_notifications(&self.worker_id, SEND_BATCH, lease)
            .await?;
        let n = batch.len();
        for notification in batch {
            let outcome = self.send(&notification).await;
            if let Err(e) = self.store.settle_notification(notification, outcome).await {
                tracing::warn!(error = %e, "settling a notification failed");
            }
        }
        Ok(n)
    }

    async fn send(&self, n: &Notification) -> NotificationOutcome {
        let sub = match self
            .store
            .resource("Subscription", &n.subscription, None)
            .await
        {
            Ok(Some(r)) if !r.deleted => serde_json::from_slice::<Value>(&r.json)
                .ok()
                .filter(|v| v.get("status").and_then(Value::as_str) == Some("active"))
                .and_then(|v| read_subscription(&r.id, &v).ok()),
            Ok(_) => None,
            Err(e) => return self.retry(n, format!("store: {e}")),
        };
        let Some(sub) = sub else {
            return NotificationOutcome::Failed {
                error: "the subscription is no longer active".into(),
            };
        };
        let mut req = self.http.post(&sub.endpoint).timeout(NOTIFY_TIMEOUT);
        for (name, value) in &sub.headers {
            req = req.header(name, value);
        }
        if let Some(mime) = &sub.payload {
            let resource = match self
                .store
                .resource(&n.resource_type, &n.resource_id, Some(n.version))
                .await
            {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return NotificationOutcome::Failed {
                        error: "the resource version is gone".into(),
                    };
                }
                Err(e) => return self.retry(n, format!("store: {e}")),
            };
            let Some(body) = fhir_store::rendered(&resource) else {
                return NotificationOutcome::Failed {
                    error: "the stored resource is not JSON".into(),
                };
            };
            req = req
                .header("content-type", mime.as_str())
                .body(body.to_string());
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => NotificationOutcome::Delivered,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                NotificationOutcome::Failed {
                    error: format!("the endpoint answered {}", r.status()),
                }
            }
            Ok(r) => self.retry(n, format!("the endpoint answered {}", r.status())),
            Err(e) => self.retry(n, format!("cannot reach the endpoint: {e}")),
        }
    }

    fn retry(&self, n: &Notification, error: String) -> NotificationOutcome {
        if RETRY.exhausted(n.attempts) {
            tracing::warn!(seq = n.seq, attempts = n.attempts, "notification given up");
            return NotificationOutcome::Failed {
                error: format!("{error} (after {} attempts)", n.attempts),
            };
        }
        NotificationOutcome::Retry {
            error,
            next_attempt_at: UnixMillis::now().plus(RETRY.delay(n.attempts)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_subscription_is_read_or_refused_by_element() {
        let good = json!({
            "resourceType": "Subscription", "status": "active", "reason": "results",
            "criteria": "Observation?code=http://loinc.org|2345-7",
            "channel": {"type": "rest-hook", "endpoint": "http://h/notify",
                        "payload": "application/fhir+json", "header": ["Authorization: Bearer x"]}
        });
        let s = read_subscription("s1", &good).expect("reads");
        assert_eq!(s.resource_type, "Observation");
        assert_eq!(s.headers, vec![("Authorization".into(), "Bearer x".into())]);
        let cases = [
            (json!({"channel": {}}), "Subscription.criteria is required"),
            (
                json!({"criteria": "Observation", "channel": {"type": "email", "endpoint": "x"}}),
                "Subscription.channel.type: only rest-hook is supported, not \"email\"",
            ),
            (
                json!({"criteria": "Observation", "channel": {"type": "rest-hook", "endpoint": "ftp://x"}}),
                "Subscription.channel.endpoint: expected an http:// or https:// URL",
            ),
            (
                json!({"criteria": "Observation?bogus=1", "channel": {"type": "rest-hook", "endpoint": "http://x"}}),
                "Subscription.criteria: search parameter bogus: unknown search parameter for Observation",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(read_subscription("s", &v).unwrap_err(), want);
        }
    }
}
