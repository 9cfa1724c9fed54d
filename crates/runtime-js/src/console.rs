//! `console.*`: lines as Node prints them. Plain strings and numbers are joined with spaces in
//! a few lines of JavaScript; anything else (objects, `%` substitutions, symbols, ...) goes
//! through `inspect.js` (Node's `util.format`/`util.inspect`), evaluated on first such use, so
//! a function that logs only strings never pays for it. Each line goes to the embedder's
//! [`ConsoleSink`] tagged with the current call's id.

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::function::Func;
use rquickjs::{Ctx, Function, Object};

use crate::{ConsoleLevel, ConsoleSink};

/// Evaluates to a function that returns `format(args) -> string`, Node's `util.format`.
const INSPECT: &str = include_str!("inspect.js");

/// The console object over `emit(level, text)`.
const CONSOLE: &str = r#"(function (emit, inspector) {
  let format = null;
  const text = (args) => {
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      const t = typeof a;
      if ((t === 'object' && a !== null) || t === 'function' || t === 'symbol' || t === 'bigint' ||
          (t === 'number' && a === 0 && 1 / a < 0) || (i === 0 && t === 'string' && args.length > 1 && a.includes('%'))) {
        if (format === null) format = inspector();
        return format(args);
      }
    }
    return args.length === 1 && typeof args[0] === 'string' ? args[0] : args.map(String).join(' ');
  };
  const line = (level) => (...args) => emit(level, text(args));
  return {
    log: line(1), info: line(1), debug: line(0), trace: line(0), warn: line(2), error: line(3),
    dir: (value) => { if (format === null) format = inspector(); emit(1, format(['%O', value])); },
    assert: (condition, ...args) => {
      if (condition) return;
      emit(3, args.length ? 'Assertion failed: ' + text(args) : 'Assertion failed');
    },
  };
})"#;

fn level(n: u8) -> ConsoleLevel {
    match n {
        0 => ConsoleLevel::Debug,
        1 => ConsoleLevel::Info,
        2 => ConsoleLevel::Warn,
        _ => ConsoleLevel::Error,
    }
}

fn inspector<'js>(ctx: Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    let build: Function = ctx.eval(INSPECT)?;
    build.call(())
}

/// Defines `console` on `ctx`; lines go to `sink` with the id `current` holds.
pub(crate) fn install<'js>(
    ctx: &Ctx<'js>,
    sink: Rc<ConsoleSink>,
    current: Rc<Cell<u64>>,
) -> rquickjs::Result<()> {
    let emit = Func::from(move |n: u8, text: String| sink(current.get(), level(n), text));
    let build: Function = ctx.eval(CONSOLE)?;
    let console: Object = build.call((emit, Func::from(inspector)))?;
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
