//! Webhook notifier: the notice as JSON in an HTTP POST; any 2xx answer is success.

use super::Notice;
use crate::config::alerts::WebhookNotifier;

pub(super) struct WebhookSender {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
}

impl WebhookSender {
    pub(super) fn new(config: &WebhookNotifier) -> Result<WebhookSender, String> {
        // reqwest is built without a TLS provider of its own (see runtime::build_sender).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(WebhookSender {
            client,
            url: config.url.clone(),
            headers: config.headers.clone(),
        })
    }

    pub(super) async fn send(&self, notice: &Notice) -> Result<(), String> {
        let body = serde_json::to_vec(notice).map_err(|e| format!("cannot encode: {e}"))?;
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| {
            // reqwest's text names the URL, which holds no secret (credentials are refused in
            // it by validation); header values are never part of it.
            format!("POST failed: {e}")
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered HTTP {}", status.as_u16()))
        }
    }
}
