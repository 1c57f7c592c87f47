//! The error a reply answered, for the access log.

use crate::error::Error;

/// The domain error a reply answers, carried on the response so that the trace layer logs it once, in
/// the request's span, whichever surface wrote the reply (`error::log_server_side` decides what is worth
/// a line).
#[derive(Clone)]
pub struct AnsweredError(pub std::sync::Arc<Error>);

impl AnsweredError {
    pub fn new(err: Error) -> Self {
        Self(std::sync::Arc::new(err))
    }
}
