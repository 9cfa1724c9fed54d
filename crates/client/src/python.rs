//! Python functions: `nex devrun app.py` builds the file into a WebAssembly component of nex's
//! `handler` world with [componentize-py](https://pypi.org/project/componentize-py/), on this
//! machine, before the upload; the node runs it as any handler component.
//!
//! - The WIT the tool needs (`wit/nex.wit` and the standard interfaces under `wit/deps/`) is
//!   built into this crate ([`WIT`]) and written to the build's own directory.
//! - The `.py` files under the directory of the `.py` file are the build's Python path (copied
//!   to the build's directory): the module, and what it imports from beside it, go into the
//!   component.
//! - Builds are cached in `$NEX_HOME/cache/python/<key>.wasm`, the key the SHA-256 of the
//!   inputs: the `.py` files under the app's directory, the WIT, the world and the tool's
//!   version; the [`KEEP`] newest are kept. componentize-py's output differs from run to run, so
//!   the cache also keeps the artifact's hash, and with it the node's compile cache, stable.
//! - A build takes 15-20 s of CPU (the tool compiles and pre-initializes CPython), so the
//!   callers run it off the async runtime ([`build_blocking`]).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// The componentize-py release nex builds with (`pip install componentize-py==0.25.1`).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The program run to build.
pub const TOOL: &str = "componentize-py";
/// The world of `wit/nex.wit` a Python function targets.
pub const WORLD: &str = "handler";
/// Builds kept in the cache, newest first.
pub const KEEP: usize = 8;
/// Most bytes of the tool's error output kept in [`PythonError::BuildFailed`].
const MAX_STDERR: usize = 8 * 1024;

macro_rules! wit_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../wit/", $path)))),*]
    };
}

/// nex's WIT, as `(path under wit/, text)`: the `handler` world and the standard interfaces.
pub const WIT: &[(&str, &str)] = wit_files![
    "nex.wit",
    "deps/blobstore/blobstore.wit",
    "deps/blobstore/container.wit",
    "deps/blobstore/types.wit",
    "deps/blobstore/world.wit",
    "deps/io/error.wit",
    "deps/io/poll.wit",
    "deps/io/streams.wit",
    "deps/io/world.wit",
    "deps/keyvalue/atomic.wit",
    "deps/keyvalue/batch.wit",
    "deps/keyvalue/store.wit",
    "deps/keyvalue/watch.wit",
    "deps/keyvalue/world.wit",
    "deps/logging/logging.wit",
    "deps/logging/world.wit",
    "deps/messaging/guest.wit",
    "deps/messaging/messaging.wit",
    "deps/messaging/producer.wit",
    "deps/messaging/request-reply.wit",
    "deps/messaging/types.wit",
];

/// Why a Python function could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// componentize-py is not installed, or another version is.
    #[error(
        "{found}: nex builds Python functions with componentize-py {COMPONENTIZE_PY_VERSION}; \
         install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}`"
    )]
    ToolMissing {
        /// What was found instead (`componentize-py is not on PATH`, another version).
        found: String,
    },
    /// The tool refused the function: a syntax error, an import that fails, no `WitWorld`.
    #[error("componentize-py could not build {}:\n{stderr}", .path.display())]
    BuildFailed {
        path: PathBuf,
        /// What the tool printed (the Python error), at most 8 KiB.
        stderr: String,
    },
    /// The file name is not an importable Python module name.
    #[error(
        "`{0}` is not a Python module name: name the file with letters, digits and `_` \
         (e.g. app.py)"
    )]
    ModuleName(String),
    /// A file of the function or of the cache cannot be read or written.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl PythonError {
    /// A stable, machine-readable code, as `nex --json` prints it.
    pub fn code(&self) -> &'static str {
        match self {
            PythonError::ToolMissing { .. } => "python_tool_missing",
            PythonError::BuildFailed { .. } | PythonError::ModuleName(_) => "python_build_failed",
            PythonError::Io { .. } => "local",
        }
    }
}

type Result<T, E = PythonError> = std::result::Result<T, E>;

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PythonError {
    let path = path.to_owned();
    move |source| PythonError::Io { what, path, source }
}

/// Whether `path` is a Python function (`.py`).
pub fn is_python(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("py"))
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component, in the cache.
    pub path: PathBuf,
    /// It was built before (no tool ran).
    pub cached: bool,
    /// Time the build (or the cache look-up) took.
    pub took: Duration,
}

/// Builds Python functions into a cache directory.
#[derive(Debug, Clone)]
pub struct PythonBuild {
    tool: PathBuf,
    cache_dir: PathBuf,
}

impl Default for PythonBuild {
    /// `componentize-py` from `PATH`, cached in `$NEX_HOME/cache/python` (`~/.nex/...`).
    fn default() -> Self {
        Self::new(crate::keys::default_dir().join("cache").join("python"))
    }
}

impl PythonBuild {
    /// Builds with `componentize-py` from `PATH` into `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            tool: PathBuf::from(TOOL),
            cache_dir: cache_dir.into(),
        }
    }

    /// The same, running `tool` instead of `componentize-py` from `PATH`.
    pub fn with_tool(mut self, tool: impl Into<PathBuf>) -> Self {
        self.tool = tool.into();
        self
    }

    /// Where the component of `app` is (or will be) cached, from its inputs.
    pub fn cache_path(&self, app: &Path) -> Result<PathBuf> {
        let key = cache_key(app)?;
        Ok(self.cache_dir.join(format!("{key}.wasm")))
    }

    /// The cached component of `app`, when its inputs were built before.
    pub fn cached(&self, app: &Path) -> Result<Option<PathBuf>> {
        let path = self.cache_path(app)?;
        Ok(path.is_file().then_some(path))
    }

    /// Builds `app` (a `.py` file) into a component, or takes the cached one. Blocks for the
    /// whole build (15-20 s of CPU); see [`build_blocking`] for async callers.
    pub fn build(&self, app: &Path) -> Result<Built> {
        let started = Instant::now();
        let module = module_name(app)?;
        let out = self.cache_path(app)?;
        if out.is_file() {
            // Newest first when the cache is pruned.
            if let Ok(f) = std::fs::File::options().write(true).open(&out) {
                let _ = f.set_modified(SystemTime::now());
            }
            return Ok(Built {
                path: out,
                cached: true,
                took: started.elapsed(),
            });
        }
        self.check_tool()?;
        std::fs::create_dir_all(&self.cache_dir).map_err(io_error(
            "cannot create the cache directory",
            &self.cache_dir,
        ))?;
        let work = tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&self.cache_dir)
            .map_err(io_error(
                "cannot make a build directory in",
                &self.cache_dir,
            ))?;
        let wit = work.path().join("wit");
        for (name, text) in WIT {
            let p = wit.join(name);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(io_error("cannot create", dir))?;
            }
            std::fs::write(&p, text).map_err(io_error("cannot write", &p))?;
        }
        // The build reads a copy of exactly the files the key covers (and the Python inside the
        // tool writes its `__pycache__` there, not beside the function).
        let dir = work.path().join("app");
        let from = app_dir(app);
        for rel in python_files(&from)? {
            let (src, dst) = (from.join(&rel), dir.join(&rel));
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(io_error("cannot create", parent))?;
            }
            std::fs::copy(&src, &dst).map_err(io_error("cannot copy", &src))?;
        }
        let built = work.path().join("out.wasm");
        let output = Command::new(&self.tool)
            .arg("-q")
            .arg("-d")
            .arg(&wit)
            .args(["-w", WORLD, "componentize", "-p"])
            .arg(&dir)
            .arg("-o")
            .arg(&built)
            .arg(&module)
            .current_dir(&dir)
            // The tool's own Rust backtrace says nothing about the function.
            .env("RUST_BACKTRACE", "0")
            .output()
            .map_err(|e| self.spawn_error(e))?;
        if !output.status.success() || !built.is_file() {
            return Err(PythonError::BuildFailed {
                path: app.to_owned(),
                stderr: tool_error(&output.stderr, &output.stdout),
            });
        }
        std::fs::rename(&built, &out).map_err(io_error("cannot write", &out))?;
        prune(&self.cache_dir, KEEP);
        Ok(Built {
            path: out,
            cached: false,
            took: started.elapsed(),
        })
    }

    /// Insists that the tool is there, in the pinned version.
    fn check_tool(&self) -> Result<()> {
        let out = Command::new(&self.tool)
            .arg("--version")
            .output()
            .map_err(|e| self.spawn_error(e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.trim().strip_prefix("componentize-py ").map(str::trim);
        match version {
            Some(v) if out.status.success() && v == COMPONENTIZE_PY_VERSION => Ok(()),
            Some(v) if out.status.success() => Err(PythonError::ToolMissing {
                found: format!("componentize-py {v} is installed"),
            }),
            _ => Err(PythonError::ToolMissing {
                found: format!(
                    "`{} --version` failed ({}): {}",
                    self.tool.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }),
        }
    }

    fn spawn_error(&self, e: io::Error) -> PythonError {
        match e.kind() {
            io::ErrorKind::NotFound => PythonError::ToolMissing {
                found: format!("{} is not on PATH", self.tool.display()),
            },
            _ => PythonError::Io {
                what: "cannot run",
                path: self.tool.clone(),
                source: e,
            },
        }
    }
}

/// [`PythonBuild::build`] on a blocking thread, for async callers.
pub async fn build_blocking(build: PythonBuild, app: PathBuf) -> Result<Built> {
    tokio::task::spawn_blocking(move || build.build(&app))
        .await
        .unwrap_or_else(|e| {
            Err(PythonError::Io {
                what: "the build stopped",
                path: PathBuf::new(),
                source: io::Error::other(e.to_string()),
            })
        })
}

/// The directory of `app` (`.` for a bare file name).
fn app_dir(app: &Path) -> PathBuf {
    match app.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The module componentize-py imports: the file's stem, a Python identifier.
fn module_name(app: &Path) -> Result<String> {
    let stem = app
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ok = stem
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        // The generated bindings' own top-level modules.
        && !["wit_world", "componentize_py_types", "componentize_py_runtime", "poll_loop"]
            .contains(&stem.as_str());
    if ok {
        Ok(stem)
    } else {
        Err(PythonError::ModuleName(stem))
    }
}

/// The SHA-256 hex of what a build of `app` depends on: a format tag, the tool's version, the
/// world, the module, nex's WIT, and every `.py` file under the app's directory (path and
/// contents; hidden directories and `__pycache__` skipped).
pub fn cache_key(app: &Path) -> Result<String> {
    let module = module_name(app)?;
    if !app.is_file() {
        return Err(PythonError::Io {
            what: "cannot read",
            path: app.to_owned(),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"nex python build 1");
    field(COMPONENTIZE_PY_VERSION.as_bytes());
    field(WORLD.as_bytes());
    field(module.as_bytes());
    for (name, text) in WIT {
        field(name.as_bytes());
        field(text.as_bytes());
    }
    let dir = app_dir(app);
    for rel in python_files(&dir)? {
        let p = dir.join(&rel);
        let bytes = std::fs::read(&p).map_err(io_error("cannot read", &p))?;
        field(rel.to_string_lossy().as_bytes());
        field(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// The `.py` files under `dir` (hidden directories and `__pycache__` skipped), relative to it,
/// sorted: what a build reads.
fn python_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io_error("cannot list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("cannot list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        let ty = entry.file_type().map_err(io_error("cannot read", &path))?;
        if ty.is_dir() {
            walk(root, &path, out)?;
        } else if is_python(&path) {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

/// What the tool said, without the noise of its own wrapper: the text from the Python error on
/// (the last [`MAX_STDERR`] bytes), or all of it.
fn tool_error(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut text = text.trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(stdout).trim().to_owned();
    }
    // The tool runs inside a Python script: its error comes as that script's traceback, whose
    // last frame is `sys.exit(script())`; the function's own error follows.
    if let Some(at) = text.find("AssertionError: ") {
        text = text[at + "AssertionError: ".len()..].to_owned();
    }
    if let Some(at) = text.find("Stack backtrace:") {
        text.truncate(at);
    }
    let text = text.trim();
    if text.len() <= MAX_STDERR {
        return text.to_owned();
    }
    let mut start = text.len() - MAX_STDERR;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

/// Removes all but the `keep` newest `.wasm` files of `dir` (best effort).
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in files.into_iter().skip(keep) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_wit_is_the_repositorys_and_names_the_handler_world() {
        assert_eq!(WIT.len(), 21);
        let nex = WIT.iter().find(|(n, _)| *n == "nex.wit").unwrap().1;
        assert!(nex.contains("world handler"));
        assert!(nex.contains("package nex:function@0.1.0"));
    }

    #[test]
    fn ensure_tools_installs_the_pinned_version() {
        let script = include_str!("../../../scripts/ensure-tools");
        assert!(
            script.contains(&format!("componentize_py={COMPONENTIZE_PY_VERSION}\n")),
            "scripts/ensure-tools pins another componentize-py"
        );
    }

    #[test]
    fn the_key_follows_the_python_files_of_the_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = app(dir.path(), "app.py", "x = 1\n");
        let k1 = cache_key(&a).unwrap();
        assert_eq!(k1, cache_key(&a).unwrap());
        std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
        std::fs::create_dir(dir.path().join("__pycache__")).unwrap();
        std::fs::write(dir.path().join("__pycache__/app.py"), "junk").unwrap();
        assert_eq!(k1, cache_key(&a).unwrap(), "only .py files count");
        app(dir.path(), "helper.py", "y = 2\n");
        let k2 = cache_key(&a).unwrap();
        assert_ne!(k1, k2, "a module beside the app is an input");
        app(dir.path(), "app.py", "x = 2\n");
        assert_ne!(k2, cache_key(&a).unwrap());
    }

    #[test]
    fn module_names_are_python_identifiers() {
        assert_eq!(module_name(Path::new("dir/app.py")).unwrap(), "app");
        assert_eq!(module_name(Path::new("my_fn2.py")).unwrap(), "my_fn2");
        for bad in ["my-app.py", "2app.py", "wit_world.py", ".py"] {
            let e = module_name(Path::new(bad)).unwrap_err();
            assert_eq!(e.code(), "python_build_failed", "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_tool_is_its_own_error_naming_the_pip_command() {
        let dir = tempfile::tempdir().unwrap();
        let a = app(dir.path(), "app.py", "x = 1\n");
        let b =
            PythonBuild::new(dir.path().join("cache")).with_tool("/nonexistent/componentize-py");
        let e = b.build(&a).unwrap_err();
        assert!(matches!(e, PythonError::ToolMissing { .. }), "{e}");
        assert_eq!(e.code(), "python_tool_missing");
        assert!(
            e.to_string()
                .contains("pip install componentize-py==0.25.1"),
            "{e}"
        );
    }

    #[test]
    fn a_cached_build_runs_no_tool_and_the_cache_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let a = app(dir.path(), "app.py", "x = 1\n");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let b = PythonBuild::new(&cache).with_tool("/nonexistent/componentize-py");
        let path = b.cache_path(&a).unwrap();
        std::fs::write(&path, b"\0asm").unwrap();
        let built = b.build(&a).unwrap();
        assert!(built.cached);
        assert_eq!(built.path, path);

        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..10 {
            let p = cache.join(format!("{i}.wasm"));
            std::fs::write(&p, b"").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(old + Duration::from_secs(i)).unwrap();
        }
        // The cached build is the newest.
        b.build(&a).unwrap();
        prune(&cache, 3);
        let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(left.len(), 3);
        assert!(path.is_file());
    }

    #[test]
    fn the_tool_error_is_the_python_error() {
        let stderr = b"Traceback (most recent call last):\n  File \"/x/componentize-py\", line 8, in <module>\n    sys.exit(script())\nAssertionError:   File \"/0/app.py\", line 4\n    def f()\n           ^\nSyntaxError: expected ':'\n\nCaused by:\n    SyntaxError: expected ':' (app.py, line 4)\n\nStack backtrace:\n   0: x\n";
        let e = tool_error(stderr, b"");
        assert!(e.starts_with("File \"/0/app.py\", line 4"), "{e}");
        assert!(
            e.ends_with("SyntaxError: expected ':' (app.py, line 4)"),
            "{e}"
        );
        assert_eq!(tool_error(b"", b"out"), "out");
        let long = "é".repeat(MAX_STDERR);
        assert!(tool_error(long.as_bytes(), b"").len() <= MAX_STDERR + 3);
    }
}
