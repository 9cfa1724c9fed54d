//! The HTTP service: the function's requests, made by [`crate::http`] within the node's
//! [`HttpPolicy`].

use std::future::Future;

use nex_hostapi::GuestError;
use nex_hostapi::http::{Call, Response};

use crate::HttpPolicy;

/// A workload's HTTP client.
///
/// Runs on the node's tokio runtime, in the task the node spawns for one host call, so calls of
/// one workload overlap. It awaits the network (up to [`crate::http::TIMEOUT`]) and never blocks
/// the thread. The request is already validated ([`nex_hostapi::Call::validate`]).
pub trait Http {
    /// Performs one request, within the function's own limit when the call has one.
    fn request(&self, call: Call) -> impl Future<Output = Result<Response, GuestError>> + Send;
}

/// [`Http`] through the node's own client, within `policy`.
pub struct HttpClient {
    pub policy: HttpPolicy,
}

impl Http for HttpClient {
    async fn request(&self, call: Call) -> Result<Response, GuestError> {
        let limit = call.timeout_ms().map_or(crate::http::TIMEOUT, |ms| {
            std::time::Duration::from_millis(ms.into())
        });
        let r = call.request();
        let resp = crate::http::request_within(
            r.method.as_str(),
            &r.url,
            &r.headers,
            &r.body,
            &self.policy,
            limit,
        )
        .await
        .map_err(guest_error)?;
        Ok(Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        })
    }
}

/// What the function sees of a failed request: the kind decides the JavaScript `.code` and the
/// guest library's error variant; the message starts with the URL.
fn guest_error(e: crate::http::Error) -> GuestError {
    use crate::http::Error as E;
    let message = e.to_string();
    match e {
        E::InvalidUrl { .. } | E::InvalidRequest { .. } => GuestError::invalid_argument(message),
        E::Denied { .. } | E::Redirect { .. } => GuestError::denied(message),
        E::Timeout { .. } => GuestError::timeout(message),
        E::TooLarge { .. } => GuestError::too_large(message),
        E::Connect { .. } | E::Tls { .. } | E::Body { .. } | E::Transport { .. } => {
            GuestError::unavailable(message)
        }
    }
}
