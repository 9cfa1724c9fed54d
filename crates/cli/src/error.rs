//! How a failed command reports itself: a stable code, the message and its causes, and the next
//! step when there is an obvious one. Printed as lines (`error: …`, `  caused by: …`,
//! `  hint: …`), or with `--json` as one JSON object on stderr:
//! `{"error": {"code": "...", "message": "...", "causes": [...], "hint": "..."}}`.
//!
//! Codes come from typed errors found in the chain ([`nex_client::Error::code`],
//! connection errors, the CLI's own [`CliError`]), never from the text.

use nex_client::ErrorKind;
use nex_proto::control::ErrorCode;
use serde::Serialize;

/// Failures the CLI itself detects.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// A name on the command line that nodes would refuse.
    #[error(transparent)]
    Name(#[from] nex_proto::validate::NameError),
    /// `nex req`: nothing subscribes to the subject.
    #[error("no responders on {subject}: nothing subscribes to it")]
    NoResponders { subject: String },
    /// `nex req`: no reply in time.
    #[error("no reply on {subject} within {secs} s")]
    TimedOut { subject: String, secs: f64 },
    /// `nex req`: the function answered with a service error.
    #[error("service error {status}: {message}")]
    Service { status: String, message: String },
}

impl CliError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            CliError::Usage(_) | CliError::Name(_) => "usage",
            CliError::NoResponders { .. } => "no_responders",
            CliError::TimedOut { .. } => "timed_out",
            CliError::Service { .. } => "service_error",
        }
    }
}

/// What a failed command prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub code: &'static str,
    pub message: String,
    pub causes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Start a server, or point at one.
const START_A_SERVER: &str = "start a node with its own NATS server: `nex node up` (or `scripts/quickstart`), or point at your server with -s/--server URL (or NATS_URL)";
/// Is a node running?
const IS_A_NODE_RUNNING: &str = "is a node running and connected to this server? `nex node ls` lists the nodes that answer, `nex node probe` those running your workloads; start one with `nex node up`";

impl Report {
    /// The report of `e`: the first typed error in its chain decides the code and the hint.
    pub fn of(e: &anyhow::Error) -> Report {
        let message = e.to_string();
        let mut said = message.clone();
        let mut causes = Vec::new();
        for cause in e.chain().skip(1) {
            let text = cause.to_string();
            // Many errors put their source's message in their own: say each thing once.
            if !said.contains(&text) {
                said.push('\n');
                said.push_str(&text);
                causes.push(text);
            }
        }
        let (code, hint) = e
            .chain()
            .find_map(classify)
            .unwrap_or(("other", None::<String>));
        Report {
            code,
            message,
            causes,
            hint,
        }
    }

    /// The human form: `error: …`, one `  caused by: …` per cause, `  hint: …`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("error: {}", self.message)];
        lines.extend(self.causes.iter().map(|c| format!("  caused by: {c}")));
        if let Some(h) = &self.hint {
            lines.push(format!("  hint: {h}"));
        }
        lines
    }

    /// The `--json` form: one line.
    pub fn json(&self) -> String {
        serde_json::json!({ "error": self }).to_string()
    }
}

/// The code and next step of one error of a chain, when it is of a type we know.
fn classify(e: &(dyn std::error::Error + 'static)) -> Option<(&'static str, Option<String>)> {
    if let Some(e) = e.downcast_ref::<CliError>() {
        let hint = match e {
            CliError::NoResponders { .. } => Some(
                "is a function with this trigger subject deployed, and its node running? `nex node probe` lists the running workloads".into(),
            ),
            CliError::Usage(_) => Some("`nex help` lists the commands, `nex <command> --help` their flags".into()),
            _ => None,
        };
        return Some((e.code(), hint));
    }
    if let Some(e) = e.downcast_ref::<nex_client::Error>() {
        return Some((e.code(), client_hint(e)));
    }
    if let Some(e) = e.downcast_ref::<nex_client::connect::Error>() {
        return Some(match e {
            nex_client::connect::Error::Connect { kind, .. } => {
                use async_nats::ConnectErrorKind as K;
                let hint = match kind {
                    K::Io | K::MaxReconnects | K::TimedOut => Some(START_A_SERVER.to_owned()),
                    _ => None,
                };
                ("connection_failed", hint)
            }
            _ => ("bad_connection_settings", None),
        });
    }
    None
}

fn client_hint(e: &nex_client::Error) -> Option<String> {
    use nex_client::python::PythonError;
    match e {
        nex_client::Error::Python(PythonError::ToolMissing { .. }) => {
            return Some(format!(
                "componentize-py builds Python functions on this machine: `pip install componentize-py=={}` (in a checkout of nex, `scripts/ensure-tools` installs it)",
                nex_client::python::COMPONENTIZE_PY_VERSION
            ));
        }
        nex_client::Error::Python(PythonError::BuildFailed { .. }) => {
            return Some("fix the Python error above; nothing was deployed (docs/python.md shows a whole function)".into());
        }
        _ => {}
    }
    match e.kind() {
        ErrorKind::NoResponders | ErrorKind::TimedOut | ErrorKind::NoBid => {
            Some(IS_A_NODE_RUNNING.into())
        }
        ErrorKind::NotFound | ErrorKind::Ambiguous => Some(
            "`nex node ls` lists node ids, `nex node probe` workload names and ids; a unique prefix of an id is enough".into(),
        ),
        ErrorKind::TypeScriptSyntax | ErrorKind::TypeScriptUnsupported => Some(
            "nex strips a .ts file's types and deploys the JavaScript left, without compiling or type-checking it; docs/javascript.md (TypeScript) lists what is accepted".into(),
        ),
        ErrorKind::Refused => match e.refusal_code() {
            Some(ErrorCode::Unauthorized) => Some(format!(
                "nex signs deploys and stops with the issuer key in {} (NEX_HOME moves it; created on first use); the node must trust that issuer (`valid_issuers`), and a token is accepted only briefly, so this machine's clock and the node's must agree",
                nex_client::keys::default_dir().join("issuer.nk").display()
            )),
            Some(ErrorCode::Forbidden) => Some(
                "only the issuer that deployed a workload may stop or replace it; node operations need an operator key".into(),
            ),
            Some(ErrorCode::NotFound) => {
                Some("`nex node probe` lists the workloads running in this namespace".into())
            }
            Some(ErrorCode::LameDuck) => {
                Some("this node is draining: deploy to another (`nex node ls`)".into())
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_cause_already_in_the_message_is_not_printed_again() {
        // As a thiserror `#[error("...: {0}")]` with `#[source]` shows itself.
        let e = anyhow::anyhow!("connection refused")
            .context("cannot reach the node: connection refused");
        assert_eq!(
            Report::of(&e).lines(),
            ["error: cannot reach the node: connection refused"]
        );
        let e = anyhow::anyhow!("connection refused").context("deploying echo");
        assert_eq!(
            Report::of(&e).lines(),
            ["error: deploying echo", "  caused by: connection refused"]
        );
    }

    #[test]
    fn a_typed_error_anywhere_in_the_chain_gives_the_code_and_hint() {
        let e: Result<(), nex_client::Error> = Err(nex_client::Error::NoResponders {
            subject: "$NEX.INFO.default.NX".into(),
        });
        let e = e.context("showing node NX").unwrap_err();
        let r = Report::of(&e);
        assert_eq!(r.code, "no_responders");
        assert!(
            r.hint.as_deref().unwrap().contains("nex node probe"),
            "{r:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["error"]["code"], "no_responders");
        assert_eq!(v["error"]["message"], "showing node NX");
        assert_eq!(
            v["error"]["causes"][0],
            "no node answered on $NEX.INFO.default.NX: nothing listens there"
        );

        let plain = Report::of(&anyhow::anyhow!("something"));
        assert_eq!((plain.code, plain.hint.as_deref()), ("other", None));
        let v: serde_json::Value = serde_json::from_str(&plain.json()).unwrap();
        assert!(v["error"].get("hint").is_none());
    }
}
