//! Registered backend clients and the verification of their client assertions (SMART Backend
//! Services, RFC 7523 client authentication).
//!
//! An assertion is accepted when, in this order: it is a JWT signed with RS384 or ES384 (no
//! other algorithm is even tried, so `none` and HMAC confusion are out); its `iss` names a
//! registered client; one of that client's keys of the header's algorithm (and `kid`, when both
//! have one) verifies the signature; `iss` and `sub` equal the client id and `aud` the
//! configured token URL exactly; `exp` has not passed, lies at most five minutes ahead (and at
//! most five minutes after `iat`), and `nbf`/`iat` are not in the future; its `jti` was never
//! accepted before (checked last, in the store, so a replay is refused by any process sharing
//! the database, even after a restart).

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind as JwtError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::scopes::Scopes;
use super::{AuthError, ClientKeys, ClientRegistration};

/// Longest a client assertion may be valid, in seconds (SMART: "no more than five minutes in
/// the future").
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;

/// Clock difference tolerated between a client and this server, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// Longest `jti` accepted: UUIDs are 36 characters.
const MAX_JTI_LEN: usize = 255;

/// One public key of a client.
struct ClientKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A registered client, keys parsed.
pub(crate) struct Client {
    keys: Vec<ClientKey>,
    /// The most it may be granted.
    pub(crate) allowed: Scopes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("keys", &self.keys.len())
            .field("allowed", &self.allowed.to_string())
            .finish()
    }
}

/// Loads every client's keys; the first problem is an error naming the client.
pub(crate) fn load_clients(
    regs: &[ClientRegistration],
) -> Result<HashMap<String, Client>, AuthError> {
    let mut out = HashMap::new();
    for reg in regs {
        let fail = |reason: String| AuthError::Client {
            client: reg.id.clone(),
            reason,
        };
        if reg.id.is_empty() {
            return Err(AuthError::Config("a client has an empty id".into()));
        }
        let keys = match &reg.keys {
            ClientKeys::JwksFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
                jwks_keys(&text).map_err(|e| fail(format!("{}: {e}", path.display())))?
            }
            ClientKeys::PemFile(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
                vec![pem_key(&bytes).map_err(|e| fail(format!("{}: {e}", path.display())))?]
            }
            ClientKeys::Jwks(text) => jwks_keys(text).map_err(fail)?,
            ClientKeys::Pem(text) => vec![pem_key(text.as_bytes()).map_err(fail)?],
        };
        let allowed = Scopes::from_iter_of(reg.scopes.iter().map(String::as_str));
        if allowed.is_empty() {
            return Err(fail(
                "none of its scopes is a system scope this server grants".into(),
            ));
        }
        if out
            .insert(reg.id.clone(), Client { keys, allowed })
            .is_some()
        {
            return Err(fail("registered twice".into()));
        }
    }
    Ok(out)
}

/// The RS384 and ES384 (P-384) keys of a JWK Set; other keys are skipped.
fn jwks_keys(text: &str) -> Result<Vec<ClientKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS384,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                Algorithm::ES384
            }
            _ => continue,
        };
        // A key restricted to another algorithm is not used for this one.
        let declared = jwk.common.key_algorithm;
        if declared.is_some_and(|d| {
            !matches!(
                (d, alg),
                (KeyAlgorithm::RS384, Algorithm::RS384) | (KeyAlgorithm::ES384, Algorithm::ES384)
            )
        }) {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unreadable key: {e}"))?;
        keys.push(ClientKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("no RSA or EC P-384 public key".into());
    }
    Ok(keys)
}

/// An RSA or EC public key in PEM.
fn pem_key(pem: &[u8]) -> Result<ClientKey, String> {
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(ClientKey {
            kid: None,
            alg: Algorithm::ES384,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(ClientKey {
            kid: None,
            alg: Algorithm::RS384,
            key,
        });
    }
    Err("not a PEM RSA or EC public key".into())
}

/// A verified assertion: who sent it, its `jti` (not yet recorded) and its `exp`.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) client_id: String,
    pub(crate) jti: String,
    pub(crate) exp: i64,
}

/// Why an assertion was refused (shown to the client: none of it is secret).
#[derive(Debug)]
pub(crate) struct Refused {
    /// The registered client the assertion claimed to come from, when it named one.
    pub(crate) client_id: Option<String>,
    pub(crate) reason: String,
}

fn refused(client_id: Option<&str>, reason: impl Into<String>) -> Refused {
    Refused {
        client_id: client_id.map(str::to_owned),
        reason: reason.into(),
    }
}

/// Checks everything but the `jti` replay (see the module doc); `now` in unix seconds.
pub(crate) fn verify(
    clients: &HashMap<String, Client>,
    token_url: Option<&str>,
    assertion: &str,
    now: i64,
) -> Result<Verified, Refused> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| {
        refused(
            None,
            "the client assertion is not a JWT signed with RS384 or ES384",
        )
    })?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(refused(
            None,
            format!(
                "client assertions must be signed with RS384 or ES384, not {:?}",
                header.alg
            ),
        ));
    }
    // Only to find the client whose keys decide; nothing of it is trusted before they do.
    let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
        .map_err(|_| refused(None, "the client assertion's claims are not JSON"))?;
    let iss = unverified.claims.get("iss").and_then(Value::as_str);
    let Some((client_id, client)) = iss.and_then(|i| clients.get_key_value(i)) else {
        return Err(refused(
            None,
            "the assertion's iss is not a registered client",
        ));
    };
    let id = Some(client_id.as_str());
    let Some(token_url) = token_url else {
        return Err(refused(id, "this server has no token_url configured"));
    };
    let same_kid = |k: &&ClientKey| match (&header.kid, &k.kid) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let candidates: Vec<&ClientKey> = client
        .keys
        .iter()
        .filter(|k| k.alg == header.alg)
        .filter(same_kid)
        .collect();
    if candidates.is_empty() {
        return Err(refused(
            id,
            format!(
                "the client has no registered {:?} key{}",
                header.alg,
                header
                    .kid
                    .as_ref()
                    .map(|k| format!(" with kid {k:?}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.clone());
    validation.set_audience(&[token_url]);
    validation.leeway = CLOCK_SKEW_SECS as u64;
    validation.validate_nbf = true;
    let mut last = None;
    let mut claims = None;
    for k in candidates {
        match jsonwebtoken::decode::<Value>(assertion, &k.key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => {
                let kind = e.into_kind();
                // Another key of the client may verify it; any other failure is final.
                if !matches!(kind, JwtError::InvalidSignature) {
                    return Err(refused(id, jwt_reason(&kind, token_url)));
                }
                last = Some(kind);
            }
        }
    }
    let Some(claims) = claims else {
        let kind = last.unwrap_or(JwtError::InvalidSignature);
        return Err(refused(id, jwt_reason(&kind, token_url)));
    };
    let number = |name: &str| claims.get(name).and_then(Value::as_f64).map(|f| f as i64);
    let exp = number("exp").ok_or_else(|| refused(id, "the client assertion has no exp"))?;
    if exp > now + MAX_ASSERTION_LIFETIME_SECS + CLOCK_SKEW_SECS {
        return Err(refused(
            id,
            "the client assertion's exp is more than five minutes ahead",
        ));
    }
    if let Some(iat) = number("iat") {
        if iat > now + CLOCK_SKEW_SECS {
            return Err(refused(id, "the client assertion's iat is in the future"));
        }
        if exp - iat > MAX_ASSERTION_LIFETIME_SECS {
            return Err(refused(
                id,
                "the client assertion is valid for more than five minutes (exp - iat)",
            ));
        }
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= MAX_JTI_LEN => j.to_owned(),
        Some(_) => {
            return Err(refused(
                id,
                format!("the client assertion's jti must be 1 to {MAX_JTI_LEN} characters"),
            ));
        }
        None => return Err(refused(id, "the client assertion has no jti")),
    };
    Ok(Verified {
        client_id: client_id.clone(),
        jti,
        exp,
    })
}

fn jwt_reason(kind: &JwtError, token_url: &str) -> String {
    match kind {
        JwtError::InvalidSignature => "the client assertion's signature does not verify".into(),
        JwtError::ExpiredSignature => "the client assertion has expired".into(),
        JwtError::ImmatureSignature => "the client assertion is not valid yet (nbf)".into(),
        JwtError::InvalidAudience => {
            format!("the client assertion's aud must be this token endpoint: {token_url}")
        }
        JwtError::InvalidIssuer | JwtError::InvalidSubject => {
            "the client assertion's iss and sub must both be the client id".into()
        }
        JwtError::MissingRequiredClaim(c) => format!("the client assertion has no {c}"),
        JwtError::InvalidAlgorithm => "the client assertion's alg does not fit the key".into(),
        _ => "the client assertion is malformed".into(),
    }
}
