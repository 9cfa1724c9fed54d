//! `wasi:logging/logging@0.1.0-draft` onto the function's log: one line per call, as
//! `console.log` is for JavaScript and stderr for modules.

use super::ComponentState;
use super::bindings::wasi::logging::logging::{self, Level};

impl logging::Host for ComponentState {
    /// `<level>: <context>: <message>`; `info` has no level prefix and an empty context none.
    fn log(&mut self, level: Level, context: String, message: String) {
        let level = match level {
            Level::Trace => "trace: ",
            Level::Debug => "debug: ",
            Level::Info => "",
            Level::Warn => "warn: ",
            Level::Error => "error: ",
            Level::Critical => "critical: ",
        };
        let context = if context.is_empty() {
            String::new()
        } else {
            format!("{context}: ")
        };
        self.log_line(&format!("{level}{context}{message}"));
    }
}
