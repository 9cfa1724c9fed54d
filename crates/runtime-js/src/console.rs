//! `console.*`: lines as Node prints them. A line of plain strings, numbers, booleans, `null`
//! and `undefined` is joined here, in Rust, with no JavaScript run (the echo's path); anything
//! else (objects, `%` substitutions, symbols, `-0`, ...) goes through `inspect.js` (Node's
//! `util.format`/`util.inspect`), evaluated on the first such line and kept on the global
//! object under a hidden name, so a function that logs only plain values never pays for it.
//! Each line goes to the embedder's [`ConsoleSink`] tagged with the current call's id.

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::function::Rest;
use rquickjs::object::Property;
use rquickjs::{Array, Coerced, Ctx, Function, Object, Value};

use crate::{ConsoleLevel, ConsoleSink};

/// Evaluates to a function that returns `format(args) -> string`, Node's `util.format`.
const INSPECT: &str = include_str!("inspect.js");

/// Where the formatter is kept once evaluated (non-enumerable, on the global object).
const FORMATTER: &str = "__nexFormat";

/// The text of `v` when it needs no formatter: what Node prints for it alone.
fn plain(v: &Value<'_>) -> Option<String> {
    if let Some(s) = v.as_string() {
        return s.to_string().ok();
    }
    if v.is_undefined() {
        return Some("undefined".into());
    }
    if v.is_null() {
        return Some("null".into());
    }
    if let Some(b) = v.as_bool() {
        return Some(b.to_string());
    }
    if let Some(i) = v.as_int() {
        return Some(i.to_string());
    }
    match v.as_float() {
        // JavaScript's own number-to-string (`1e+21`, `0.1`), but not -0, which Node shows.
        Some(f) if !(f == 0.0 && f.is_sign_negative()) => {
            v.get::<Coerced<String>>().ok().map(|c| c.0)
        }
        _ => None,
    }
}

/// The formatter of `inspect.js`, evaluated on first use.
fn formatter<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    let globals = ctx.globals();
    if let Ok(Some(f)) = globals.get::<_, Option<Function>>(FORMATTER) {
        return Ok(f);
    }
    let build: Function = ctx.eval(INSPECT)?;
    let f: Function = build.call(())?;
    globals.prop(FORMATTER, Property::from(f.clone()).configurable())?;
    Ok(f)
}

/// `util.format(...args)`, through the formatter.
fn format<'js>(ctx: &Ctx<'js>, args: &[Value<'js>]) -> rquickjs::Result<String> {
    let list = Array::new(ctx.clone())?;
    for (i, v) in args.iter().enumerate() {
        list.set(i, v.clone())?;
    }
    formatter(ctx)?.call((list,))
}

/// The line for `args`: plain values joined with spaces, the rest as Node formats it.
fn text<'js>(ctx: &Ctx<'js>, args: &[Value<'js>]) -> rquickjs::Result<String> {
    // One plain value (`console.log(subject)`): its text is the line, with no list to join.
    if let [only] = args
        && let Some(line) = plain(only)
    {
        return Ok(line);
    }
    let substitutes = args.len() > 1
        && args[0]
            .as_string()
            .and_then(|s| s.to_string().ok())
            .is_some_and(|s| s.contains('%'));
    if !substitutes {
        let parts: Option<Vec<String>> = args.iter().map(plain).collect();
        if let Some(parts) = parts {
            return Ok(parts.join(" "));
        }
    }
    format(ctx, args)
}

/// Defines `console` on `ctx`; lines go to `sink` with the id `current` holds.
pub(crate) fn install<'js>(
    ctx: &Ctx<'js>,
    sink: Rc<ConsoleSink>,
    current: Rc<Cell<u64>>,
) -> rquickjs::Result<()> {
    let console = Object::new(ctx.clone())?;
    for (name, level) in [
        ("log", ConsoleLevel::Info),
        ("info", ConsoleLevel::Info),
        ("debug", ConsoleLevel::Debug),
        ("trace", ConsoleLevel::Debug),
        ("warn", ConsoleLevel::Warn),
        ("error", ConsoleLevel::Error),
    ] {
        let (sink, current) = (sink.clone(), current.clone());
        let f = Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> rquickjs::Result<()> {
                sink(current.get(), level, text(&ctx, &args.0)?);
                Ok(())
            },
        )?;
        console.set(name, f)?;
    }
    let (s, c) = (sink.clone(), current.clone());
    let dir = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, value: Value<'js>| -> rquickjs::Result<()> {
            let pattern = rquickjs::String::from_str(ctx.clone(), "%O")?.into_value();
            s(
                c.get(),
                ConsoleLevel::Info,
                format(&ctx, &[pattern, value])?,
            );
            Ok(())
        },
    )?;
    console.set("dir", dir)?;
    let assert = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>,
              condition: Coerced<bool>,
              args: Rest<Value<'js>>|
              -> rquickjs::Result<()> {
            if !condition.0 {
                let line = if args.0.is_empty() {
                    "Assertion failed".to_owned()
                } else {
                    format!("Assertion failed: {}", text(&ctx, &args.0)?)
                };
                sink(current.get(), ConsoleLevel::Error, line);
            }
            Ok(())
        },
    )?;
    console.set("assert", assert)?;
    ctx.globals().set("console", console)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use crate::{ConsoleLevel, JsConfig, JsFunction};

    /// What `body` prints, one entry per console call.
    fn printed(body: &str) -> Vec<(ConsoleLevel, String)> {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        let f = JsFunction::load(
            &format!("(s, p) => {{ {body} }}"),
            JsConfig::default(),
            Box::new(move |_, l, t| s.borrow_mut().push((l, t))),
            None,
        )
        .unwrap();
        f.invoke(1, "s", b"").result.unwrap();
        seen.take()
    }

    use std::rc::Rc;

    fn lines(body: &str) -> String {
        printed(body)
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each expected line is what `node -e 'console.log(...)'` (Node 20) prints.
    #[test]
    fn values_print_as_node_prints_them() {
        assert_eq!(
            lines(
                r#"console.log([1,2,3,4,5,6,7]);
console.log({a:{b:{c:{}}}}, {s:"it's", n:-0, arr:['x']});
console.log(new Map([['a',1]]), new Set([1]), [undefined,null], {'a-b':1});
console.log('%s|%d|%i|%f|%j|%O|%%|%c.', 'x', 42.5, 42.5, '3.5', {a:1}, {a:1}, 'color: red');
console.log({f(){}, g: async () => 1, c: class A {}, s: Symbol('q'), b: 10n, d: new Date(0), r: /a/g, n: null, u: undefined, nested: [[1, [2, [3, [4]]]]], str: 'a\nb\'c', buf: new Uint8Array(3), ab: new ArrayBuffer(2), num: new Number(3)});
console.log(['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','cccccccccccccccccccccccccccccccccccccccccc', 'd']);
const o = {name: 'loop'}; o.self = o; console.log(o);
console.log('plain', 1, -0, true, null, undefined);
console.log(Array.from({length: 30}, (_, i) => i * 7));
console.log(new (class Point { constructor() { this.x = 1; } })(), Object.create(null), [,1]);
console.log({a: 'x'.repeat(30), b: 'y'.repeat(30), c: 'z'.repeat(30)});"#
            ),
            r#"[
  1, 2, 3, 4,
  5, 6, 7
]
{ a: { b: { c: {} } } } { s: "it's", n: -0, arr: [ 'x' ] }
Map(1) { 'a' => 1 } Set(1) { 1 } [ undefined, null ] { 'a-b': 1 }
x|42.5|42|3.5|{"a":1}|{ a: 1 }|%|.
{
  f: [Function: f],
  g: [AsyncFunction: g],
  c: [class A],
  s: Symbol(q),
  b: 10n,
  d: 1970-01-01T00:00:00.000Z,
  r: /a/g,
  n: null,
  u: undefined,
  nested: [ [ 1, [Array] ] ],
  str: "a\nb'c",
  buf: Uint8Array(3) [ 0, 0, 0 ],
  ab: ArrayBuffer { [Uint8Contents]: <00 00>, byteLength: 2 },
  num: [Number: 3]
}
[
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
  'cccccccccccccccccccccccccccccccccccccccccc',
  'd'
]
<ref *1> { name: 'loop', self: [Circular *1] }
plain 1 -0 true null undefined
[
    0,   7,  14,  21,  28,  35,  42,  49,
   56,  63,  70,  77,  84,  91,  98, 105,
  112, 119, 126, 133, 140, 147, 154, 161,
  168, 175, 182, 189, 196, 203
]
Point { x: 1 } [Object: null prototype] {} [ <1 empty item>, 1 ]
{
  a: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  b: 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy',
  c: 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz'
}"#
        );
    }

    #[test]
    fn errors_print_their_stack_and_levels_are_kept() {
        let got = printed(
            "const e = new TypeError('bad'); e.code = 'E1'; console.error(e); console.warn('%o', [1]); console.debug('d'); console.assert(1 === 2, 'math', {x: 1}); console.info({e: new Error('in')});",
        );
        let levels: Vec<ConsoleLevel> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            levels,
            [
                ConsoleLevel::Error,
                ConsoleLevel::Warn,
                ConsoleLevel::Debug,
                ConsoleLevel::Error,
                ConsoleLevel::Info
            ]
        );
        let err = &got[0].1;
        assert!(err.starts_with("TypeError: bad\n    at "), "{err}");
        assert!(err.ends_with(" {\n  code: 'E1'\n}"), "{err}");
        assert_eq!(got[1].1, "[ 1, [length]: 1 ]");
        assert_eq!(got[3].1, "Assertion failed: math { x: 1 }");
        assert!(
            got[4].1.starts_with("{\n  e: Error: in\n      at "),
            "{}",
            got[4].1
        );
    }
}
