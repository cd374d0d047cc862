//! Who acts through the admin API, and the audit line of every action (SPEC §12).
//!
//! [`Operator`] is the proof a mutating request may proceed: it carries the configured bearer
//! token, or none is configured. Its identity is `admin-token` (whoever holds `admin.token_file`)
//! or `local` (no token configured: the listener is on loopback, so anyone on the host), with the
//! remote address. Every mutating request is logged once as `admin_action` — always, whatever
//! `log.audit` says, because operator actions are rare and an audit trail without them is no
//! trail: `caller`, `remote`, `operation`, what it was about (`peer`, `consumer`, `offset`) and the
//! outcome (`result`, and for a refusal `code` and `error_message`). A request refused for its
//! token, or because the node is still starting, is logged too, at `warning`.

use std::{future::Ready, net::SocketAddr};

use actix_web::{
    dev::Payload,
    http::{header, StatusCode},
    web, FromRequest, HttpRequest, HttpResponse,
};
use bsfg_proto::ErrorCode;
use serde_json::{json, Value};
use slog::{info, warn, Logger};

use super::AdminDeps;

pub const ADMIN_ACTION: &str = "admin_action";

/// The identity of the token holder.
const TOKEN_HOLDER: &str = "admin-token";
/// The identity when no token is configured (a loopback listener).
const LOCAL: &str = "local";
/// The caller of a request refused for its token.
const UNAUTHENTICATED: &str = "unauthenticated";

/// An operator allowed to act: who, and from where.
#[derive(Debug, Clone)]
pub struct Operator {
    pub identity: &'static str,
    pub remote: Option<SocketAddr>,
}

impl FromRequest for Operator {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = request.app_data::<web::Data<AdminDeps>>() else {
            return std::future::ready(Err(actix_web::error::ErrorInternalServerError("no admin state")));
        };
        let remote = request.peer_addr();
        let identity = if state.token.is_some() { TOKEN_HOLDER } else { LOCAL };
        let token = state.token.as_ref().map(super::AdminToken::current);
        let (caller, refused) = match refusal(request, token.as_deref()) {
            None if state.started().is_some() => return std::future::ready(Ok(Operator { identity, remote })),
            None => (identity, super::starting()),
            Some(reason) => (
                UNAUTHENTICATED,
                Refusal::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, reason),
            ),
        };
        let operation = operation_of(request.method().as_str(), request.path());
        let line = Line {
            operator: &Operator {
                identity: caller,
                remote,
            },
            operation: &operation,
            subject: &Subject::default(),
            refusal: Some(&refused),
        };
        warn!(state.log, #"audit", "{}", ADMIN_ACTION; line);
        std::future::ready(Err(refused.into_error()))
    }
}

/// A refusal of an admin action: HTTP status, wire code, message and optional reason.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub reason: Option<String>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// The status an RPC error code answers with.
    pub fn of(error: bsfg_proto::RpcError) -> Self {
        let status = match error.code {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::InvalidArgument | ErrorCode::AlreadyExists => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unavailable | ErrorCode::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.code, error.message)
    }

    /// The refusal as an extractor's error.
    pub fn into_error(self) -> actix_web::Error {
        let response = self.response();
        actix_web::error::InternalError::from_response(self.message, response).into()
    }

    pub fn response(&self) -> HttpResponse {
        let mut body = json!({"error": self.code.as_str(), "message": self.message});
        if let Some(reason) = &self.reason {
            body["reason"] = json!(reason);
        }
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(body)
    }
}

/// What an action was about, for its audit line.
#[derive(Debug, Default)]
pub struct Subject<'a> {
    pub peer: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub offset: Option<u64>,
}

/// Logs `operation` by `operator` with its outcome, and answers it.
pub fn audited(
    log: &Logger,
    operator: &Operator,
    operation: &'static str,
    subject: Subject<'_>,
    outcome: Result<Value, Refusal>,
) -> HttpResponse {
    let line = Line {
        operator,
        operation,
        subject: &subject,
        refusal: outcome.as_ref().err(),
    };
    match &outcome {
        Ok(body) => {
            info!(log, #"audit", "{}", ADMIN_ACTION; line);
            HttpResponse::Ok().json(body)
        }
        Err(refusal) => {
            warn!(log, #"audit", "{}", ADMIN_ACTION; line);
            refusal.response()
        }
    }
}

/// The fields of one `admin_action` line; only those that apply are written.
struct Line<'a> {
    operator: &'a Operator,
    operation: &'a str,
    subject: &'a Subject<'a>,
    refusal: Option<&'a Refusal>,
}

impl slog::KV for Line<'_> {
    fn serialize(&self, _: &slog::Record, s: &mut dyn slog::Serializer) -> slog::Result {
        s.emit_str("caller", self.operator.identity)?;
        if let Some(remote) = self.operator.remote {
            s.emit_arguments("remote", &format_args!("{remote}"))?;
        }
        s.emit_str("operation", self.operation)?;
        for (key, value) in [("peer", self.subject.peer), ("consumer", self.subject.consumer)] {
            if let Some(value) = value {
                s.emit_str(key, value)?;
            }
        }
        if let Some(offset) = self.subject.offset {
            s.emit_u64("offset", offset)?;
        }
        let Some(refusal) = self.refusal else {
            return s.emit_str("result", "success");
        };
        let result = match refusal.code.is_retryable() {
            true => "retryable_error",
            false => "permanent_error",
        };
        s.emit_str("result", result)?;
        s.emit_str("code", refusal.code.as_str())?;
        s.emit_str("error_message", &refusal.message)
    }
}

/// The `operation` of an audit line for a request refused before its handler ran: the name its
/// handler logs (`drain`, `gate_close`, `consumer_rewind`, ...), so a filter on it also finds the
/// refused attempts; the path itself for one that names no operation.
fn operation_of(method: &str, path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (_, ["v1", "admin", "gates", _, action]) => format!("gate_{action}"),
        (_, ["v1", "admin", action]) => action.replace('-', "_"),
        ("DELETE", ["v1", "consumers", _]) => "consumer_delete".to_owned(),
        (_, ["v1", "consumers", _, "rewind"]) => "consumer_rewind".to_owned(),
        _ => path.to_owned(),
    }
}

/// Why a mutating request is refused, if it is: it needs the bearer token when one is configured.
fn refusal(request: &HttpRequest, expected: Option<&str>) -> Option<&'static str> {
    let expected = expected?;
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => None,
        Some(_) => Some("the bearer token does not match admin.token_file"),
        None => Some("this endpoint requires Authorization: Bearer <token>"),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused attempt is audited under its handler's name: it was the URL path, which a filter
    /// on `.operation=="resume"` missed.
    #[test]
    fn a_refused_request_is_audited_under_its_operations_name() {
        let cases = [
            ("POST", "/v1/admin/resume", "resume"),
            ("POST", "/v1/admin/step-down", "step_down"),
            ("POST", "/v1/admin/gates/plant-a/close", "gate_close"),
            ("DELETE", "/v1/consumers/mes", "consumer_delete"),
            ("POST", "/v1/consumers/mes/rewind", "consumer_rewind"),
            ("POST", "/v1/elsewhere", "/v1/elsewhere"),
        ];
        for (method, path, operation) in cases {
            assert_eq!(operation_of(method, path), operation, "{method} {path}");
        }
    }

    #[test]
    fn a_refusal_for_the_token_asks_for_a_bearer_token() {
        let unauthorised = Refusal::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, "no token");
        let asked = unauthorised.response();
        assert_eq!(
            asked.headers().get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(b"Bearer".as_slice())
        );
        let starting = Refusal::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "starting");
        assert!(starting.response().headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
