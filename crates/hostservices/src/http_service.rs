//! The HTTP service: the function's requests, made by [`crate::http`] within the node's
//! [`HttpPolicy`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use nex_hostapi::GuestError;
use nex_hostapi::http::{Request, Response};

use crate::HttpPolicy;

/// A workload's HTTP client.
///
/// Runs on the node's tokio runtime, in the task the node spawns for one host call, so calls of
/// one workload overlap. It awaits the network (up to [`crate::http::TIMEOUT`]) and never blocks
/// the thread. The request is already validated ([`nex_hostapi::Call::validate`]).
pub trait Http {
    /// Performs one request.
    fn request(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, GuestError>> + Send;
}

/// [`Http`] through the node's own client, within `policy`.
pub struct HttpClient {
    pub policy: HttpPolicy,
}

impl Http for HttpClient {
    async fn request(&self, r: Request) -> Result<Response, GuestError> {
        let denied = AtomicBool::new(false);
        let out = crate::http::request(r.method.as_str(), &r.url, &r.headers, &r.body, |host| {
            let ok = self.policy.permits(host);
            denied.store(!ok, Ordering::Relaxed);
            ok
        })
        .await;
        match out {
            Ok(resp) => Ok(Response {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
            }),
            Err(message) if denied.load(Ordering::Relaxed) => Err(GuestError::denied(message)),
            Err(message) => Err(GuestError::unavailable(message)),
        }
    }
}
