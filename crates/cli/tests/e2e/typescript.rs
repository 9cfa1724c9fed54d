//! TypeScript functions end to end: `nex devrun f.ts` strips the types in the CLI and deploys
//! the JavaScript; syntax errors and constructs that need a compiler are refused before anything
//! is uploaded, with their line and column in the `.ts` file; a runtime error's position is the
//! `.ts` file's too.

use futures::StreamExt;

use crate::harness::*;

/// `nex devrun FILE --json --trigger_subject SUBJECT [extra]` that must fail: the `--json`
/// error report from stderr (`{"code", "message", "causes", ...}`).
fn devrun_refused(
    w: &World,
    file: &std::path::Path,
    subject: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "devrun",
        file.to_str().unwrap(),
        "--json",
        "--trigger_subject",
        subject,
    ];
    args.extend_from_slice(extra);
    let out = w.nex(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "devrun {file:?} should fail: {stderr}"
    );
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON error report: {stderr}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["error"].clone()
}

/// The names of the artifacts uploaded to `NEXCLIFILES` (none when it does not exist).
async fn uploaded(w: &World) -> Vec<String> {
    let js = async_nats::jetstream::new(w.client.clone());
    let Ok(store) = js.get_object_store(nex_proto::DEVRUN_BUCKET).await else {
        return Vec::new();
    };
    let mut list = store.list().await.unwrap();
    let mut names = Vec::new();
    while let Some(info) = list.next().await {
        names.push(info.unwrap().name);
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_function_deploys_as_javascript_and_answers() {
    let w = World::start().await;
    // The example, as the docs deploy it.
    let id = w.devrun(&example("greeter.ts"), &["ts.greet"], &[]);
    assert!(!id.is_empty());
    assert_eq!(w.call("ts.greet", b"Ada").await, b"Hello, Ada!");
    assert_eq!(
        w.call("ts.greet", br#"{"name":"Grace","lang":"fr"}"#).await,
        b"Bonjour, Grace!"
    );
    let m = w
        .request("ts.greet", br#"{"name":"X","lang":"xx"}"#)
        .await
        .unwrap();
    let (code, msg) = service_error(&m).expect("an unknown language throws");
    assert_eq!(code, "500");
    assert!(msg.contains("RangeError: no greeting in xx"), "{msg}");
    // The `throw` is on line 31 of greeter.ts (docs/javascript.md shows this message).
    assert!(msg.contains("greeter.js:31:"), "{msg}");

    // Everything that strips, in a module with a class and generics.
    let (_d, path) = temp_file(
        "shapes.ts",
        br#"import type { Missing } from './types';
interface Shape<K extends string = string> {
  readonly kind: K;
  area(): number;
}
type Summary = { subject: string; areas: Record<string, number>; largest: string };
namespace Units { export type Metres = number; }
declare const injected: Units.Metres;

abstract class Base<K extends string> implements Shape<K> {
  abstract readonly kind: K;
  abstract area(): number;
  protected round(n: number): number { return Math.round(n * 100) / 100; }
}
class Circle extends Base<'circle'> {
  readonly kind = 'circle' as const;
  private r!: Units.Metres;
  constructor(r: number) { super(); this.r = r; }
  area(): number { return this.round(Math.PI * this.r ** 2); }
}
class Square extends Base<'square'> {
  readonly kind = 'square';
  side: number;
  constructor(side: number) { super(); this.side = side; }
  area(): number { return this.side * this.side; }
}
function largest<T extends Shape>(items: readonly T[]): T | undefined {
  return items.reduce<T | undefined>((best, s) => (best && best.area() >= s.area() ? best : s), undefined);
}
export default (subject: string, payload: Uint8Array): Summary => {
  const sizes = JSON.parse(new TextDecoder().decode(payload)) as number[];
  const shapes: Shape[] = sizes.map((n, i) => (i % 2 ? new Square(n) : new Circle(n)));
  const areas = Object.fromEntries(shapes.map((s, i) => [`${s.kind}${i}`, s.area()])) satisfies Record<string, number>;
  return { subject, areas, largest: largest(shapes)!.kind };
};
"#,
    );
    w.devrun(&path, &["ts.shapes"], &[]);
    let v = json(w.call("ts.shapes", b"[2, 3, 3]").await);
    assert_eq!(
        v,
        serde_json::json!({
            "subject": "ts.shapes",
            "areas": { "circle0": 12.57, "square1": 9, "circle2": 28.27 },
            "largest": "circle",
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_syntax_error_is_refused_with_its_line_in_the_ts_file_and_nothing_is_deployed() {
    let w = World::start().await;
    // Something uploaded first, so the bucket exists and can be looked at.
    w.devrun(&example("greeter.ts"), &["ts.greet"], &[]);
    let before = uploaded(&w).await;
    assert_eq!(before.len(), 1, "{before:?}");

    let (_d, path) = temp_file(
        "broken.ts",
        b"interface In { n: number }\n\nexport default (subject: string, payload: Uint8Array) => {\n  const x: In = { n: payload.length };\n  return x.n +;\n};\n",
    );
    for extra in [&[][..], &["--replicas", "1"][..]] {
        let e = devrun_refused(&w, &path, "ts.broken", extra);
        assert_eq!(e["code"], "typescript_syntax", "{extra:?}: {e}");
        let cause = e["causes"][0].as_str().unwrap();
        assert!(
            cause.starts_with(&format!("{}:5:15: ", path.display())),
            "{extra:?}: {cause}"
        );
    }
    assert_eq!(uploaded(&w).await, before, "nothing was uploaded");
    assert!(
        w.request("ts.broken", b"").await.is_err(),
        "nothing answers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enum_is_refused_as_unsupported_with_its_line() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "colors.ts",
        b"// Colours\ntype Name = string;\n\nexport enum Color { Red, Green }\n\nexport default (s: Name) => Color.Red;\n",
    );
    let e = devrun_refused(&w, &path, "ts.colors", &[]);
    assert_eq!(e["code"], "typescript_unsupported", "{e}");
    let cause = e["causes"][0].as_str().unwrap();
    assert!(
        cause.starts_with(&format!("{}:4:8: ", path.display())),
        "{cause}"
    );
    assert!(
        cause.contains("as const"),
        "says what to write instead: {cause}"
    );
    assert!(
        e["hint"].as_str().unwrap().contains("docs/javascript.md"),
        "{e}"
    );
    assert!(uploaded(&w).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_error_points_at_its_line_in_the_ts_file() {
    let w = World::start().await;
    let (_d, path) = temp_file(
        "thrower.ts",
        b"interface Order {\n  id: string;\n  qty: number;\n}\n\nexport default (subject: string, payload: Uint8Array): string => {\n  const order = JSON.parse(new TextDecoder().decode(payload)) as Order;\n  if (order.qty <= 0) throw new RangeError(`order ${order.id}: bad quantity`);\n  return order.id;\n};\n",
    );
    w.devrun(&path, &["ts.orders"], &[]);
    assert_eq!(w.call("ts.orders", br#"{"id":"a1","qty":2}"#).await, b"a1");
    let m = w
        .request("ts.orders", br#"{"id":"a2","qty":0}"#)
        .await
        .unwrap();
    let (code, msg) = service_error(&m).unwrap();
    assert_eq!(code, "500");
    assert!(msg.contains("RangeError: order a2: bad quantity"), "{msg}");
    // Line 8 of thrower.ts (the runtime names the script after the workload).
    assert!(msg.contains("thrower.js:8:"), "{msg}");
}
