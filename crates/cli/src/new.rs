//! `nex new`: a function from a template, with its README, a test and the deploy line.
//!
//! The templates live in `crates/cli/templates/<kind>/` and are compiled into the binary; the
//! component template also gets nex's WIT (`wit/`), the same files the node serves.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::Cli;
use crate::error::CliError;

/// What `nex new` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// JavaScript: `(subject, payload) => reply`.
    Js,
    /// TypeScript: the same, typed; `nex devrun` strips the types.
    Ts,
    /// Rust, a WASI command (`wasm32-wasip1`): argv[1] = subject, stdin = payload, stdout = reply.
    Rust,
    /// Rust, a handler module (`wasm32-wasip1`, `nex_guest::handler!`): one instance answers
    /// call after call; host services through `nex_guest` (copied in, with the host API).
    RustHandler,
    /// Rust, a handler component (`wasm32-wasip2`) counting in its bucket through `wasi:keyvalue`.
    Component,
    /// Python, a handler component built by `nex devrun app.py` (componentize-py).
    Python,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The template.
    pub template: Template,
    /// The function's name (letters, digits, `_`, `-`): the workload name, the subject the
    /// README deploys it on, and the directory made for it.
    pub name: String,
    /// Where to make it (default: `./NAME`). Must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One file of a template: its path (`{{name}}` is replaced in it) and its text.
type File = (&'static str, &'static str);

macro_rules! template {
    ($($path:literal => $source:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../templates/", $source)))),*]
    };
}

const JS: &[File] = template! {
    "{{name}}.js" => "js/function.js",
    "test.sh" => "js/test.sh",
    "README.md" => "js/README.md",
};

const TS: &[File] = template! {
    "{{name}}.ts" => "ts/function.ts",
    "test.sh" => "js/test.sh",
    "README.md" => "ts/README.md",
};

const RUST: &[File] = template! {
    "Cargo.toml" => "rust/Cargo.toml",
    "src/main.rs" => "rust/src/main.rs",
    "test.sh" => "rust/test.sh",
    "README.md" => "rust/README.md",
};

const RUST_HANDLER: &[File] = template! {
    "Cargo.toml" => "rust-handler/Cargo.toml",
    "src/lib.rs" => "rust-handler/src/lib.rs",
    "test.sh" => "rust-handler/test.sh",
    "README.md" => "rust-handler/README.md",
    "nex/guest/Cargo.toml" => "rust-handler/nex/guest.Cargo.toml",
    "nex/hostapi/Cargo.toml" => "rust-handler/nex/hostapi.Cargo.toml",
};

/// nex's guest library and the typed host API it shares with the node, as they are in this
/// build (not on crates.io yet): copied as they are, never filled in.
const GUEST_LIBRARY: &[File] = &[
    (
        "nex/guest/src/lib.rs",
        include_str!("../../../guests/nex-guest/src/lib.rs"),
    ),
    (
        "nex/hostapi/src/lib.rs",
        include_str!("../../hostapi/src/lib.rs"),
    ),
    (
        "nex/hostapi/src/bytes.rs",
        include_str!("../../hostapi/src/bytes.rs"),
    ),
    (
        "nex/hostapi/src/error.rs",
        include_str!("../../hostapi/src/error.rs"),
    ),
    (
        "nex/hostapi/src/http.rs",
        include_str!("../../hostapi/src/http.rs"),
    ),
    (
        "nex/hostapi/src/kv.rs",
        include_str!("../../hostapi/src/kv.rs"),
    ),
    (
        "nex/hostapi/src/messaging.rs",
        include_str!("../../hostapi/src/messaging.rs"),
    ),
    (
        "nex/hostapi/src/object_store.rs",
        include_str!("../../hostapi/src/object_store.rs"),
    ),
    (
        "nex/hostapi/src/rate.rs",
        include_str!("../../hostapi/src/rate.rs"),
    ),
];

const COMPONENT: &[File] = template! {
    "Cargo.toml" => "component/Cargo.toml",
    "src/lib.rs" => "component/src/lib.rs",
    "test.sh" => "component/test.sh",
    "README.md" => "component/README.md",
};

const PYTHON: &[File] = template! {
    "app.py" => "python/app.py",
    "test.sh" => "python/test.sh",
    "README.md" => "python/README.md",
};

/// nex's WIT as the node serves it, for components (`wit/` of the repository).
const WIT: &[File] = &[
    ("wit/nex.wit", include_str!("../../../wit/nex.wit")),
    (
        "wit/deps/blobstore/blobstore.wit",
        include_str!("../../../wit/deps/blobstore/blobstore.wit"),
    ),
    (
        "wit/deps/blobstore/container.wit",
        include_str!("../../../wit/deps/blobstore/container.wit"),
    ),
    (
        "wit/deps/blobstore/types.wit",
        include_str!("../../../wit/deps/blobstore/types.wit"),
    ),
    (
        "wit/deps/blobstore/world.wit",
        include_str!("../../../wit/deps/blobstore/world.wit"),
    ),
    (
        "wit/deps/io/error.wit",
        include_str!("../../../wit/deps/io/error.wit"),
    ),
    (
        "wit/deps/io/poll.wit",
        include_str!("../../../wit/deps/io/poll.wit"),
    ),
    (
        "wit/deps/io/streams.wit",
        include_str!("../../../wit/deps/io/streams.wit"),
    ),
    (
        "wit/deps/io/world.wit",
        include_str!("../../../wit/deps/io/world.wit"),
    ),
    (
        "wit/deps/keyvalue/atomic.wit",
        include_str!("../../../wit/deps/keyvalue/atomic.wit"),
    ),
    (
        "wit/deps/keyvalue/batch.wit",
        include_str!("../../../wit/deps/keyvalue/batch.wit"),
    ),
    (
        "wit/deps/keyvalue/store.wit",
        include_str!("../../../wit/deps/keyvalue/store.wit"),
    ),
    (
        "wit/deps/keyvalue/watch.wit",
        include_str!("../../../wit/deps/keyvalue/watch.wit"),
    ),
    (
        "wit/deps/keyvalue/world.wit",
        include_str!("../../../wit/deps/keyvalue/world.wit"),
    ),
    (
        "wit/deps/logging/logging.wit",
        include_str!("../../../wit/deps/logging/logging.wit"),
    ),
    (
        "wit/deps/logging/world.wit",
        include_str!("../../../wit/deps/logging/world.wit"),
    ),
    (
        "wit/deps/messaging/guest.wit",
        include_str!("../../../wit/deps/messaging/guest.wit"),
    ),
    (
        "wit/deps/messaging/messaging.wit",
        include_str!("../../../wit/deps/messaging/messaging.wit"),
    ),
    (
        "wit/deps/messaging/producer.wit",
        include_str!("../../../wit/deps/messaging/producer.wit"),
    ),
    (
        "wit/deps/messaging/request-reply.wit",
        include_str!("../../../wit/deps/messaging/request-reply.wit"),
    ),
    (
        "wit/deps/messaging/types.wit",
        include_str!("../../../wit/deps/messaging/types.wit"),
    ),
];

impl Template {
    fn files(self) -> Vec<File> {
        match self {
            Template::Js => JS.to_vec(),
            Template::Ts => TS.to_vec(),
            Template::Rust => RUST.to_vec(),
            Template::RustHandler => RUST_HANDLER.to_vec(),
            Template::Component => COMPONENT.iter().chain(WIT).copied().collect(),
            Template::Python => PYTHON.to_vec(),
        }
    }

    /// The command that deploys what the template makes, from its directory.
    fn deploy_line(self, name: &str) -> String {
        let crate_name = name.replace('-', "_");
        match self {
            Template::Js => format!("nex devrun {name}.js --trigger_subject {name}"),
            Template::Ts => format!("nex devrun {name}.ts --trigger_subject {name}"),
            Template::Rust => format!(
                "cargo build --release --target wasm32-wasip1 && \
                 nex devrun target/wasm32-wasip1/release/{name}.wasm --trigger_subject {name}"
            ),
            Template::RustHandler => format!(
                "cargo build --release --target wasm32-wasip1 && \
                 nex devrun target/wasm32-wasip1/release/{crate_name}.wasm --trigger_subject {name}"
            ),
            Template::Component => format!(
                "cargo build --release --target wasm32-wasip2 && \
                 nex devrun target/wasm32-wasip2/release/{crate_name}.wasm --trigger_subject {name}"
            ),
            Template::Python => {
                format!("nex devrun app.py --name {name} --trigger_subject {name}")
            }
        }
    }
}

/// `{{name}}`, `{{crate}}` (the name as a Rust crate name) and `{{source}}` (the function's
/// file, for the scripts JavaScript and TypeScript share) in `text`.
fn fill(text: &str, name: &str, source: &str) -> String {
    text.replace("{{source}}", source)
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
}

/// Writes the template's files for `name` into `dir`, which must not exist or be empty. Returns
/// the paths written.
pub fn make(template: Template, name: &str, dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    nex_proto::validate::name("function name", name)?;
    if matches!(
        template,
        Template::Rust | Template::RustHandler | Template::Component
    ) && name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(CliError::Usage(format!(
            "function name `{name}` starts with a digit, which a Rust crate name cannot"
        )));
    }
    let io = |path: &Path, e: std::io::Error| CliError::Usage(format!("{}: {e}", path.display()));
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        if entries.next().is_some() {
            return Err(CliError::Usage(format!(
                "{} already exists and is not empty: pick another name or --dir",
                dir.display()
            )));
        }
    }
    let source = match template {
        Template::Ts => format!("{name}.ts"),
        Template::Python => "app.py".to_owned(),
        _ => format!("{name}.js"),
    };
    let mut written = Vec::new();
    for (path, text) in template.files() {
        let path = dir.join(fill(path, name, &source));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&path, fill(text, name, &source)).map_err(|e| io(&path, e))?;
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io(&path, e))?;
        }
        written.push(path);
    }
    if template == Template::RustHandler {
        for (path, text) in GUEST_LIBRARY {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            // The host API's own tests stay in the nex repository.
            let text = text.replace("#[cfg(test)]\nmod tests;\n", "");
            std::fs::write(&path, text).map_err(|e| io(&path, e))?;
            written.push(path);
        }
    }
    Ok(written)
}

pub fn run(cli: &Cli, args: &NewArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let written = make(args.template, &args.name, &dir)?;
    let deploy = args.template.deploy_line(&args.name);
    if cli.json {
        return crate::common::print_json(&serde_json::json!({
            "dir": dir, "files": written, "deploy": deploy,
        }));
    }
    println!("Made {} in {}:", args.name, dir.display());
    for path in &written {
        if !path.starts_with(dir.join("wit")) && !path.starts_with(dir.join("nex")) {
            println!("  {}", path.display());
        }
    }
    println!("Deploy it (from {}), then call it:", dir.display());
    println!("  {deploy}");
    println!("  nex req {} you", args.name);
    println!("Test it on a running node: {}/test.sh", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_fills_its_name_and_leaves_no_placeholder() {
        for template in [
            Template::Js,
            Template::Ts,
            Template::Rust,
            Template::RustHandler,
            Template::Component,
            Template::Python,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("f");
            let written = make(template, "my-fn", &out).unwrap();
            assert!(written.iter().any(|p| p.ends_with("README.md")));
            assert!(written.iter().any(|p| p.ends_with("test.sh")));
            for path in written {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains("{{"),
                    "{} keeps a placeholder",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn a_bad_name_or_a_full_directory_is_a_usage_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = make(Template::Js, "a b", &dir.path().join("x")).unwrap_err();
        assert!(
            matches!(
                err,
                CliError::Name(nex_proto::validate::NameError::Character { found: ' ', .. })
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "usage");
        assert!(!dir.path().join("x").exists());
        let err = make(Template::Rust, "1st", &dir.path().join("y")).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{err:?}");
        std::fs::write(dir.path().join("keep"), "mine").unwrap();
        let err = make(Template::Js, "f", dir.path()).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{err:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep")).unwrap(),
            "mine"
        );
    }
}
