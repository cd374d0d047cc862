//! `bsfg admin drain|resume|reload|step-down|gate-close PEER|gate-open PEER`: one POST to the node's admin
//! API, its JSON answer on stdout. Also how an admin answer becomes the CLI's error and exit
//! code, shared with `bsfg status`: an unreachable node or a 503 is `UNAVAILABLE` (exit 75, retry
//! later); any other refusal carries the code the node named (exit 1).

use bsfg_proto::ErrorCode;

use super::CommandError;
use crate::{
    admin::client::{AdminClient, AdminClientError, Answer},
    cli::{AdminAction, AdminArgs},
};

pub fn run(args: &AdminArgs, action: &AdminAction) -> anyhow::Result<()> {
    let path = match action {
        AdminAction::Drain => "/v1/admin/drain".to_owned(),
        AdminAction::Resume => "/v1/admin/resume".to_owned(),
        AdminAction::Reload => "/v1/admin/reload".to_owned(),
        AdminAction::StepDown => "/v1/admin/step-down".to_owned(),
        AdminAction::GateClose { peer } => format!("/v1/admin/gates/{peer}/close"),
        AdminAction::GateOpen { peer } => format!("/v1/admin/gates/{peer}/open"),
    };
    let body = call(args, |client| client.post(&path))?;
    println!("{}", body.trim_end());
    Ok(())
}

/// Runs `request` against the node named by `args`; the body of a 2xx answer, or the error the
/// answer stands for.
pub fn call(
    args: &AdminArgs,
    request: impl FnOnce(&AdminClient) -> Result<Answer, AdminClientError>,
) -> Result<String, CommandError> {
    let token = match &args.token_file {
        Some(path) => Some(crate::admin::read_token(path, "--token-file").map_err(CommandError::invalid)?),
        None => None,
    };
    let client = AdminClient::new(&args.url, token).map_err(|e| CommandError::invalid(e.to_string()))?;
    match request(&client) {
        Ok(answer) if (200..300).contains(&answer.status) => Ok(answer.body),
        Ok(answer) => Err(refusal(&answer)),
        Err(e @ AdminClientError::Url { .. }) => Err(CommandError::invalid(e.to_string())),
        Err(e) => Err(CommandError::new(ErrorCode::Unavailable, e.to_string())),
    }
}

/// A refusal's code and message, from the `{"error", "message", "reason"}` body when there is one.
fn refusal(answer: &Answer) -> CommandError {
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    let named = ErrorCode::ALL.into_iter().find(|c| body["error"] == c.as_str());
    let code = named.unwrap_or(match answer.status {
        401 => ErrorCode::Unauthenticated,
        404 => ErrorCode::NotFound,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    });
    let message = match (body["message"].as_str(), body["reason"].as_str()) {
        (Some(message), Some(reason)) => format!("{message}: {reason}"),
        (Some(message), None) => message.to_owned(),
        _ => format!("HTTP {}: {}", answer.status, answer.body.trim()),
    };
    CommandError {
        code,
        retryable: answer.status == 503,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn refusals_keep_the_nodes_code_and_only_503_is_retryable() {
        let reload = refusal(&answer(
            422,
            r#"{"error":"INVALID_ARGUMENT","message":"refused","reason":"expired"}"#,
        ));
        assert_eq!((reload.code, reload.retryable), (ErrorCode::InvalidArgument, false));
        assert_eq!(reload.message, "refused: expired");
        let token = refusal(&answer(401, r#"{"error":"UNAUTHENTICATED","message":"needs a token"}"#));
        assert_eq!((token.code, token.retryable), (ErrorCode::Unauthenticated, false));
        let unknown = refusal(&answer(404, "no route"));
        assert_eq!(
            (unknown.code, unknown.message.as_str()),
            (ErrorCode::NotFound, "HTTP 404: no route")
        );
        let busy = refusal(&answer(503, "not ready"));
        assert_eq!((busy.code, busy.retryable), (ErrorCode::Unavailable, true));
    }
}
