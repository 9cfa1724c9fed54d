//! TypeScript functions: the CLI turns a `.ts` file into the JavaScript a node runs by
//! *stripping* its types, as Node.js does. This crate wraps `swc_ts_fast_strip` (the stripper
//! behind Node's `amaro`) in strip-only mode, and owns nothing else.
//!
//! Stripping replaces each type annotation, interface, type alias, `as`/`satisfies` clause,
//! generic parameter list and `import type` with whitespace and keeps every line break, so line
//! and column of any JavaScript token are those it had in the `.ts` file. A runtime error's
//! `name.js:12:5` is line 12, column 5 of the `.ts` file, with no source map to ship or apply.
//!
//! What cannot be stripped because it *generates* code is refused with its position and what to
//! write instead ([`Error::Unsupported`], one [`Construct`] each): `enum`, a `namespace` holding
//! values, parameter properties, `import x = …`, `export =`, the `<T>expr` assertion. A source
//! that does not parse is [`Error::Syntax`], with the parser's first error.
//!
//! No I/O: the caller reads the file and names it, for the messages.

use std::sync::{Arc, Mutex, PoisonError};

use swc_common::errors::{DiagnosticBuilder, DiagnosticId, Emitter, Handler};
use swc_common::sync::Lrc;
use swc_common::{GLOBALS, SourceMap, Span};
use swc_ts_fast_strip::{ErrorCode, Mode, Options};

/// Why a TypeScript source cannot become JavaScript. Lines and columns count from 1; a column
/// counts characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The source does not parse as TypeScript.
    #[error("{file}:{line}:{column}: TypeScript syntax error: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        /// The parser's words.
        message: String,
    },
    /// A construct that compiles to code of its own, which stripping types cannot produce.
    #[error(
        "{file}:{line}:{column}: {} is not supported (nex strips types and does not compile TypeScript, so positions stay exact): {}",
        .construct.what(),
        .construct.instead()
    )]
    Unsupported {
        file: String,
        line: usize,
        column: usize,
        construct: Construct,
    },
}

/// The TypeScript constructs that need a compiler rather than a stripper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Construct {
    /// `enum Color { Red }` (a `declare enum` is only a type, and is stripped).
    Enum,
    /// `namespace N { export const x = 1 }` (one holding only types is stripped).
    Namespace,
    /// `import x = N.y` or `import fs = require('fs')`.
    ImportEquals,
    /// `export = value`.
    ExportAssignment,
    /// `constructor(private x: number)`.
    ParameterProperty,
    /// `<T>value`.
    AngleBracketAssertion,
    /// `-x ** 2` once the types around it are gone.
    UnaryExponentiation,
    /// One the stripper refuses that this list does not know yet: its own words.
    Other(String),
}

impl Construct {
    /// What was found, for the message.
    pub fn what(&self) -> &str {
        match self {
            Construct::Enum => "a TypeScript `enum`",
            Construct::Namespace => "a `namespace` with values",
            Construct::ImportEquals => "`import … =`",
            Construct::ExportAssignment => "`export =`",
            Construct::ParameterProperty => "a parameter property",
            Construct::AngleBracketAssertion => "a `<T>value` type assertion",
            Construct::UnaryExponentiation => "a unary expression on the left of `**`",
            Construct::Other(words) => words,
        }
    }

    /// What to write instead, for the message.
    pub fn instead(&self) -> &'static str {
        match self {
            Construct::Enum => {
                "use an object and a union type instead: `const Color = { Red: 'red', Blue: 'blue' } as const; type Color = (typeof Color)[keyof typeof Color];`"
            }
            Construct::Namespace => {
                "use module-level declarations or an object; a namespace of types only is fine"
            }
            Construct::ImportEquals => {
                "use `const x = N.y;` (a nex function is one file, so it imports nothing)"
            }
            Construct::ExportAssignment => "use `export default value`",
            Construct::ParameterProperty => {
                "declare the field in the class body and assign it in the constructor: `x: number; constructor(x: number) { this.x = x; }`"
            }
            Construct::AngleBracketAssertion => "write `value as T`",
            Construct::UnaryExponentiation => "put the left side in parentheses: `(-x) ** 2`",
            Construct::Other(_) => "rewrite it as plain JavaScript with type annotations",
        }
    }

    /// The construct the stripper's message is about. Its diagnostics carry a code
    /// (`UnsupportedSyntax`) but name the construct only in words: the unit tests hold this
    /// mapping to the version we build.
    fn from_message(message: &str) -> Construct {
        let m = message.to_ascii_lowercase();
        if m.contains("enum") {
            Construct::Enum
        } else if m.contains("namespace") || m.contains("`module`") {
            Construct::Namespace
        } else if m.contains("import equals") {
            Construct::ImportEquals
        } else if m.contains("export assignment") {
            Construct::ExportAssignment
        } else if m.contains("parameter property") {
            Construct::ParameterProperty
        } else if m.contains("angle-bracket") {
            Construct::AngleBracketAssertion
        } else if m.contains("`**`") {
            Construct::UnaryExponentiation
        } else {
            Construct::Other(message.to_owned())
        }
    }
}

impl Error {
    /// The `(line, column)` the error is at.
    pub fn position(&self) -> (usize, usize) {
        match self {
            Error::Syntax { line, column, .. } | Error::Unsupported { line, column, .. } => {
                (*line, *column)
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `file_name` names a TypeScript source: `.ts`, `.mts` or `.cts` (not `.tsx`: JSX
/// needs a transform).
pub fn is_typescript(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    [".ts", ".mts", ".cts"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// The JavaScript of the TypeScript `source`, every token at the line and column it has in
/// `source`. `file` names the source in errors.
pub fn strip(file: &str, source: &str) -> Result<String> {
    let found = Arc::new(Mutex::new(Vec::new()));
    let cm: Lrc<SourceMap> = Lrc::default();
    let handler = Handler::with_emitter(false, false, Box::new(Collect(found.clone())));
    let options = Options {
        filename: Some(file.to_owned()),
        mode: Mode::StripOnly,
        ..Options::default()
    };
    let stripped = GLOBALS.set(&Default::default(), || {
        swc_ts_fast_strip::operate(&cm, &handler, source.to_owned(), options)
    });
    let failure = match stripped {
        Ok(out) => return Ok(out.code),
        Err(e) => e,
    };
    let found = std::mem::take(&mut *found.lock().unwrap_or_else(PoisonError::into_inner));
    // The earliest in the file: the one to fix first (the parser reports its fatal error
    // before those it recovered from).
    let first = found
        .into_iter()
        .min_by_key(|f| f.span.map_or(u32::MAX, |s| s.lo.0));
    let (line, column) = first
        .as_ref()
        .and_then(|f| f.span)
        .and_then(|s| cm.try_lookup_char_pos(s.lo).ok())
        .map_or((1, 1), |loc| (loc.line, loc.col.0 + 1));
    let file = file.to_owned();
    let unsupported = first
        .as_ref()
        .map_or(matches!(failure.code, ErrorCode::UnsupportedSyntax), |f| {
            f.unsupported
        });
    let message = first.map_or(failure.message, |f| f.message);
    Err(if unsupported {
        Error::Unsupported {
            file,
            line,
            column,
            construct: Construct::from_message(&message),
        }
    } else {
        Error::Syntax {
            file,
            line,
            column,
            message,
        }
    })
}

/// One diagnostic of the stripper.
struct Found {
    span: Option<Span>,
    message: String,
    /// Coded `UnsupportedSyntax` (otherwise a syntax error).
    unsupported: bool,
}

/// Keeps the diagnostics instead of printing them.
struct Collect(Arc<Mutex<Vec<Found>>>);

impl Emitter for Collect {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let unsupported =
            matches!(db.get_code(), Some(DiagnosticId::Error(code)) if code == "UnsupportedSyntax");
        let found = Found {
            span: db.span.primary_span(),
            message: db.message(),
            unsupported,
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(line, column)`, both from 1, of the first `needle` in `text`.
    fn at(text: &str, needle: &str) -> (usize, usize) {
        text.lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
    }

    const TYPED: &str = r#"import type { Other } from './other';
interface Greeting<T> {
  name: string;
  extra?: T;
}
type Reply = { text: string } | null;
declare const hidden: number;
declare enum Ambient { A }
namespace OnlyTypes { export type X = number; }
abstract class Base<T> implements Greeting<T> {
  name!: string;
  declare extra?: T;
  private readonly count: number = 0;
  abstract describe(): string;
}
function pick<T extends object, K extends keyof T>(o: T, k: K): T[K] { return o[k]; }
const handler = async (subject: string, payload: Uint8Array): Promise<Reply> => {
  const g = { name: subject } satisfies Greeting<number>;
  const n = (payload.length as number) + pick(g, 'name')!.length;
  if (n > 100) throw new Error(`too long: ${n}`);
  return { text: `${g.name}:${n}` };
};
"#;

    #[test]
    fn types_become_whitespace_and_every_token_keeps_its_place() {
        let js = strip("typed.ts", TYPED).unwrap();
        assert_eq!(js.lines().count(), TYPED.lines().count());
        for needle in [
            "abstract class",
            "function pick",
            "return o[k]",
            "const handler",
            "async (subject",
            "const g = { name: subject }",
            "pick(g, 'name')",
            "throw new Error",
            "return { text",
        ] {
            let needle = needle.replace("abstract ", "");
            assert_eq!(at(&js, &needle), at(TYPED, &needle), "{needle}\n{js}");
        }
        for gone in [
            "import",
            "interface",
            "type ",
            "declare",
            "Promise",
            ": string",
            "as number",
            "satisfies",
            "implements",
            "private",
            "abstract",
            "!.",
            "namespace",
        ] {
            assert!(!js.contains(gone), "{gone} left in:\n{js}");
        }
        assert!(
            js.contains("const handler = async (subject        , payload            )"),
            "{js}"
        );
    }

    #[test]
    fn a_syntax_error_gives_its_line_and_column_in_the_ts_file() {
        let src = "const f = (s: string) => {\n  let x: number = 1;\n  return x +;\n};\n";
        let e = strip("bad.ts", src).unwrap_err();
        let Error::Syntax {
            file, line, column, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!((file.as_str(), *line), ("bad.ts", 3));
        assert!((10..=13).contains(column), "{e}");
        assert!(e.to_string().starts_with("bad.ts:3:"), "{e}");
    }

    #[test]
    fn what_needs_a_compiler_is_refused_with_its_position() {
        let cases = [
            ("enum Color { Red, Blue }", Construct::Enum),
            ("const enum Size { S = 1 }", Construct::Enum),
            ("namespace N { export const x = 1; }", Construct::Namespace),
            (
                "class P { constructor(private x: number) {} }",
                Construct::ParameterProperty,
            ),
            ("import A = B.C;", Construct::ImportEquals),
            ("export = 42;", Construct::ExportAssignment),
            (
                "const n = <number>someValue;",
                Construct::AngleBracketAssertion,
            ),
        ];
        for (code, construct) in cases {
            let src = format!("// a function\nconst ok = 1;\n  {code}\n");
            match strip("f.ts", &src) {
                Err(Error::Unsupported {
                    file,
                    line,
                    column,
                    construct: found,
                }) => {
                    assert_eq!(found, construct, "{code}");
                    assert_eq!((file.as_str(), line), ("f.ts", 3), "{code}");
                    assert!((3..=40).contains(&column), "{code}: {column}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        let e = strip("f.ts", "enum E { A }").unwrap_err();
        assert_eq!(e.position(), (1, 1));
        assert!(e.to_string().contains("as const"), "{e}");
    }

    #[test]
    fn javascript_is_typescript_and_comes_back_unchanged() {
        let js = "(subject, payload) => {\n  // a < b > c\n  return payload;\n};\n";
        assert_eq!(strip("echo.ts", js).unwrap(), js);
    }

    #[test]
    fn typescript_file_names() {
        for name in ["f.ts", "F.TS", "f.mts", "f.cts", "dir.x/f.d.ts"] {
            assert!(is_typescript(name), "{name}");
        }
        for name in ["f.js", "f.tsx", "f.mjs", "ts", "f.wasm"] {
            assert!(!is_typescript(name), "{name}");
        }
    }
}
