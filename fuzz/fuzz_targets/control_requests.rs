//! Whatever arrives on a control subject: parsing never panics, and whatever parses is
//! validated without panicking (names, trigger subjects, limits, workload JWTs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nex_proto::control::{AuctionRequest, DeployRequest, StopRequest};
use nex_proto::validate;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<DeployRequest>(data) {
        let _ = validate::name("workload name", &req.workload_name);
        let _ = req.workload_type.parse::<nex_proto::control::WorkloadType>();
        for s in &req.trigger_subjects {
            let _ = validate::trigger_subject(s, &["deny.>".to_owned()]);
        }
        if let Some(limits) = req.limits.as_ref() {
            let _ = nex_proto::control::ResolvedLimits::DEFAULT.apply(Some(limits));
        }
        if let Some(token) = req.workload_jwt.as_deref() {
            let _ = nex_jwt::verify(token);
        }
    }
    if let Ok(req) = serde_json::from_slice::<StopRequest>(data)
        && let Some(token) = req.workload_jwt.as_deref()
    {
        let _ = nex_jwt::verify(token);
    }
    let _ = serde_json::from_slice::<AuctionRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nex_jwt::verify(text);
        let _ = validate::trigger_subject(text, &[]);
        let _ = nex_proto::subjects::namespace_of(text);
    }
});
