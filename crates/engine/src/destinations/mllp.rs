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

use hl7v2::AckCode;

use crate::config::WaitForAck;
use crate::net::client::{AckVerdict, Answer, MllpClient, check_ack, error_code_of};

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
                        error: refusal(&ack),
                        ack: kept,
                    },
                    AckVerdict::Error(_) => Attempt::Retry {
                        error: refusal(&ack),
                        ack: kept,
                    },
                    AckVerdict::Rejected(_) => Attempt::Fail {
                        error: refusal(&ack),
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

/// The plain-text error of a reply that is not AA/CA: what the receiver said in codes
/// ([`crate::net::client::ack_error_code`]), or why the reply is not a usable acknowledgement. The receiver's own
/// text can quote patient data: it stays in the ACK, which the store encrypts.
fn refusal(ack: &[u8]) -> String {
    let Ok(msg) = hl7v2::parse(ack) else {
        return "the reply is not an HL7 v2 acknowledgement (it does not parse)".into();
    };
    if msg.find_segment("MSA", 1).is_none() {
        return "the reply has no MSA segment".into();
    }
    let code = msg.text("MSA-1");
    let Some(code) = code.as_deref().map(str::trim).and_then(AckCode::parse) else {
        return "the reply's MSA-1 is not an acknowledgement code".into();
    };
    match error_code_of(&msg) {
        Some(why) => format!(
            "{} from the receiver, {why} (its text is kept in the encrypted ACK)",
            code.as_str()
        ),
        None => format!(
            "{} from the receiver (its text is kept in the encrypted ACK)",
            code.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    const MSH: &str = "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240102030405||ACK^A01^ACK|R1|P|2.5.1\r";

    #[test]
    fn a_reply_that_is_not_an_acknowledgement_is_not_called_an_ae() {
        assert_eq!(
            refusal(b"HTTP/1.1 400 Bad Request\r\n"),
            "the reply is not an HL7 v2 acknowledgement (it does not parse)"
        );
        assert_eq!(
            refusal(format!("{MSH}PID|1||123\r").as_bytes()),
            "the reply has no MSA segment"
        );
        assert_eq!(
            refusal(format!("{MSH}MSA|XX|C1\r").as_bytes()),
            "the reply's MSA-1 is not an acknowledgement code"
        );
        assert_eq!(
            refusal(format!("{MSH}MSA|CR|C1|bad\r").as_bytes()),
            "CR from the receiver (its text is kept in the encrypted ACK)"
        );
    }
}
