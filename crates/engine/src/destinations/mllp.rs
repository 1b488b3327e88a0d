//! The MLLP destination: a persistent connection that waits for each message's ACK.
//!
//! Success only when MSA-1 is AA or CA and MSA-2 equals the MSH-10 sent. AE, a timeout or a
//! broken connection is retried (the connection is re-opened on the next attempt; a write-back
//! channel's AE is final instead); AR goes to the error queue; an ACK for another control id is treated as an error and retried, since
//! the receiver's answer cannot be trusted for this message.
//!
//! The message's own MSH-15 (enhanced mode) is honoured, as a compliant receiver honours it:
//! NE is delivered once written (no ACK will come, and waiting would block the queue behind
//! it); ER is delivered when no error ACK comes within the ACK timeout; SU is retried when no
//! ACK comes. `wait_for_ack = "always"` waits for every message instead, for receivers that
//! answer everything.

use std::time::Duration;

use crate::config::WaitForAck;
use crate::net::client::{AckVerdict, Answer, MllpClient, check_ack};

use super::Attempt;

pub struct MllpSender {
    pub client: MllpClient,
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    /// An AE is final (error queue) instead of retried: for write-back, where the API client
    /// is told the EHR's answer and decides what to do.
    pub application_error_is_final: bool,
    /// Whether the message's MSH-15 decides what is waited for.
    pub wait_for_ack: WaitForAck,
}

impl MllpSender {
    pub fn max_attempt_time(&self) -> Duration {
        self.ack_timeout + self.connect_timeout
    }

    pub async fn deliver(&mut self, payload: &[u8], control_id: &str) -> Attempt {
        let answer = match self.wait_for_ack {
            WaitForAck::AsAsked => {
                self.client
                    .send_as_asked(payload, control_id, self.ack_timeout)
                    .await
            }
            WaitForAck::Always => self
                .client
                .send(payload, self.ack_timeout)
                .await
                .map(Answer::Ack),
        };
        match answer {
            Err(e) => Attempt::Retry {
                error: e.to_string(),
                ack: None,
            },
            Ok(Answer::NotAsked | Answer::NoErrorReported) => Attempt::Delivered { ack: None },
            Ok(Answer::NotAccepted) => Attempt::Retry {
                error: format!(
                    "no ACK within {:?}; the message (MSH-15 SU) asks for one only on success",
                    self.ack_timeout
                ),
                ack: None,
            },
            Ok(Answer::Ack(ack)) => {
                let kept = Some(ack.to_vec());
                // The receiver's error text can quote patient data: it stays in the ACK,
                // which the store encrypts; the plain-text error and the logs carry only the
                // code.
                match check_ack(control_id, &ack) {
                    AckVerdict::Accepted => Attempt::Delivered { ack: kept },
                    AckVerdict::Error(_) if self.application_error_is_final => Attempt::Fail {
                        error: "AE from the receiver (its text is kept in the encrypted ACK)"
                            .into(),
                        ack: kept,
                    },
                    AckVerdict::Error(_) => Attempt::Retry {
                        error: "AE from the receiver (its text is kept in the encrypted ACK)"
                            .into(),
                        ack: kept,
                    },
                    AckVerdict::Rejected(_) => Attempt::Fail {
                        error: "AR from the receiver (its text is kept in the encrypted ACK)"
                            .into(),
                        ack: kept,
                    },
                    AckVerdict::Mismatch => Attempt::Retry {
                        error: "ACK does not answer the control id sent".into(),
                        ack: kept,
                    },
                }
            }
        }
    }
}
