//! The HTTP destination (webhook): POST of the HL7 message (or its FHIR bundle with `format = "fhir"`).
//!
//! 2xx is delivered; 408, 429 and 5xx, timeouts and connection failures are retried; any
//! other status is a permanent refusal. The response body (cut to 4 KiB) is kept as the ACK.

use std::time::Duration;

use super::Attempt;

/// Media type for ER7-encoded HL7 v2 (as registered by HL7 for v2 over HTTP).
pub const HL7_MEDIA_TYPE: &str = "x-application/hl7-v2+er7";

/// Media type of FHIR JSON (a `format = "fhir"` destination's bundles).
pub const FHIR_MEDIA_TYPE: &str = "application/fhir+json";

/// Response bodies kept as the ACK are cut to this length: enough for an HL7 ACK or an
/// error document, small enough for the queue table.
const MAX_KEPT_RESPONSE: usize = 4096;

pub struct HttpSender {
    pub client: reqwest::Client,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// [`HL7_MEDIA_TYPE`], or [`FHIR_MEDIA_TYPE`] for `format = "fhir"`.
    pub content_type: &'static str,
}

impl HttpSender {
    pub fn max_attempt_time(&self) -> Duration {
        self.timeout
    }

    pub async fn deliver(&mut self, payload: &[u8], control_id: &str) -> Attempt {
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header("content-type", self.content_type)
            .header("x-hl7-control-id", control_id)
            .body(payload.to_vec());
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        match request.send().await {
            Err(e) => Attempt::Retry {
                error: format!("http: {}", without_url(&e)),
                ack: None,
            },
            Ok(response) => {
                let status = response.status();
                let body = response
                    .bytes()
                    .await
                    .map(|b| b[..b.len().min(MAX_KEPT_RESPONSE)].to_vec())
                    .ok();
                if status.is_success() {
                    Attempt::Delivered { ack: body }
                } else if status.as_u16() == 408
                    || status.as_u16() == 429
                    || status.is_server_error()
                {
                    Attempt::Retry {
                        error: format!("http status {status}"),
                        ack: body,
                    }
                } else {
                    Attempt::Fail {
                        error: format!("http status {status}"),
                        ack: body,
                    }
                }
            }
        }
    }
}

/// reqwest errors print the URL, which may carry credentials in a query: keep the kind, and the
/// innermost cause (the OS error, a DNS or TLS failure), which names no URL and says what an
/// analyst needs to know (`connection refused` is not `no route to host`).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut innermost = None;
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        innermost = Some(cause);
        next = cause.source();
    }
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_says_so_without_the_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut sender = HttpSender {
            client: reqwest::Client::new(),
            url: format!("http://127.0.0.1:{port}/hook?token=SECRET"),
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            content_type: HL7_MEDIA_TYPE,
        };
        let Attempt::Retry { error, .. } = sender.deliver(b"MSH|^~\\&|", "C1").await else {
            panic!("a refused connection is retried");
        };
        assert!(error.starts_with("http: connection failed: "), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
        assert!(
            !error.contains("SECRET") && !error.contains("127.0.0.1"),
            "{error}"
        );
    }
}
