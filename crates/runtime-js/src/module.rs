//! The ES module form of a function: `export default (subject, payload) => …`,
//! `export default async function …`, or `export default { async handle(subject, payload) … }`,
//! beside the bare expression. A function is one file: every `import` (static or dynamic) is
//! refused, a static one at load with [`LoadError::Import`].

use std::cell::RefCell;
use std::rc::Rc;

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{CatchResultExt, Ctx, Function, Module, Object, Value};

use crate::{LoadError, describe, type_name};

/// Whether `source` is a module: a line of it begins with an `export` or `import` declaration
/// (a bare expression cannot hold one).
pub(crate) fn is_module(source: &str) -> bool {
    source.lines().any(|line| {
        let l = line.trim_start();
        let after = |kw: &str| {
            l.strip_prefix(kw)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| c.is_whitespace() || "{*'\"".contains(c))
        };
        after("export") || after("import")
    })
}

/// The resolver and loader of a function's runtime: they refuse every module, and remember
/// the first name asked for so the load error can say which.
pub(crate) struct NoImports(pub(crate) Rc<RefCell<Option<String>>>);

impl NoImports {
    fn refuse(&self, base: &str, name: &str) -> rquickjs::Error {
        self.0.borrow_mut().get_or_insert_with(|| name.to_owned());
        rquickjs::Error::new_resolving_message(
            base,
            name,
            "imports are not supported: a nex function is one file",
        )
    }
}

impl Resolver for NoImports {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        Err(self.refuse(base, name))
    }
}

impl Loader for NoImports {
    fn load<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        Err(self.refuse("", name))
    }
}

/// Evaluates the module `source` (running its top level, awaiting a top-level `await`) and
/// returns the function to call and, for the `{ handle }` form, the object it is called on.
pub(crate) fn evaluate<'js>(
    ctx: &Ctx<'js>,
    file: &str,
    source: &str,
    refused: &Rc<RefCell<Option<String>>>,
) -> Result<(Function<'js>, Option<Object<'js>>), LoadError> {
    let failed = |ctx: &Ctx<'js>, e| match refused.borrow().clone() {
        Some(name) => LoadError::Import(name),
        None => LoadError::Eval(describe(ctx, e)),
    };
    let declared = Module::declare(ctx.clone(), file, source)
        .catch(ctx)
        .map_err(|e| failed(ctx, e))?;
    let (module, done) = declared.eval().catch(ctx).map_err(|e| failed(ctx, e))?;
    loop {
        if let Some(r) = done.result::<Value>() {
            r.catch(ctx).map_err(|e| failed(ctx, e))?;
            break;
        }
        if !ctx.execute_pending_job() {
            return Err(LoadError::Eval(
                "the module's top-level await never settles".into(),
            ));
        }
    }
    let default: Value = module
        .get("default")
        .catch(ctx)
        .map_err(|e| failed(ctx, e))?;
    if let Some(f) = default.as_function() {
        return Ok((f.clone(), None));
    }
    if let Some(obj) = default.as_object()
        && let Ok(Some(handle)) = obj.get::<_, Option<Function>>("handle")
    {
        return Ok((handle, Some(obj.clone())));
    }
    Err(LoadError::NoDefault(type_name(&default)))
}

#[cfg(test)]
mod tests {
    use super::is_module;
    use crate::{JsConfig, JsFunction, LoadError};

    fn call(src: &str, payload: &[u8]) -> String {
        let mut config = JsConfig::default();
        config.env.insert("K".into(), "v".into());
        let f = JsFunction::load(src, config, Box::new(|_, _, _| {}), None).unwrap();
        String::from_utf8(f.invoke(1, "subj", payload).result.unwrap()).unwrap()
    }

    #[test]
    fn module_forms_are_recognised() {
        assert!(is_module("export default (s, p) => p;"));
        assert!(is_module("const x = 1;\n  export default {handle() {}}"));
        assert!(is_module("import fs from 'fs';"));
        assert!(is_module("import{a}from'b'"));
        assert!(!is_module("(s, p) => p"));
        assert!(!is_module("(s, p) => import('x')"));
        assert!(!is_module(
            "(s, p) => { const exported = 1; return exported; }"
        ));
    }

    #[test]
    fn every_default_export_form_is_called() {
        assert_eq!(
            call(
                "export default (subject, payload) => subject + ':' + payload.length;",
                b"ab"
            ),
            "subj:2"
        );
        assert_eq!(
            call(
                "const greet = (s) => 'hi ' + s;\nexport default async function (subject) { await null; return greet(subject) + ' ' + process.env.K; }",
                b""
            ),
            "hi subj v"
        );
        assert_eq!(
            call(
                "export default {\n  prefix: 'obj',\n  async handle(subject, payload) { return this.prefix + ':' + new TextDecoder().decode(payload) + ':' + env.K; },\n};",
                b"x"
            ),
            "obj:x:v"
        );
        // Top-level await runs at load.
        assert_eq!(
            call(
                "const n = await Promise.resolve(41);\nexport default () => String(n + 1);",
                b""
            ),
            "42"
        );
        // The bare expression still works, and `this` there is nex's.
        assert_eq!(call("(s) => this.env.K", b""), "v");
    }

    #[test]
    fn imports_and_missing_defaults_are_refused_at_load() {
        let load = |src: &str| {
            JsFunction::load(src, JsConfig::default(), Box::new(|_, _, _| {}), None)
                .err()
                .unwrap()
        };
        let e = load("import fs from 'fs';\nexport default () => fs.readFileSync('/etc/passwd');");
        assert!(matches!(&e, LoadError::Import(n) if n == "fs"), "{e:?}");
        assert_eq!(
            e.to_string(),
            "imports are not supported: the module imports 'fs' (a nex function is one file)"
        );
        let e = load("import { x } from './helper.js';\nexport default () => x;");
        assert!(
            matches!(&e, LoadError::Import(n) if n == "./helper.js"),
            "{e:?}"
        );
        let e = load("export const handler = () => 1;");
        assert!(matches!(e, LoadError::NoDefault(_)), "{e:?}");
        let e = load("export default {\n  handle(s) { return s +; }\n};");
        assert!(e.to_string().contains("SyntaxError"), "{e}");
        assert!(e.to_string().contains("function.js:2:"), "{e}");
        // A dynamic import inside a call is refused when it runs; the function keeps working.
        let f = JsFunction::load(
            "export default async (s) => s === 'imp' ? import('fs').then(() => 'loaded', (e) => 'refused') : 'ok';",
            JsConfig::default(),
            Box::new(|_, _, _| {}),
            None,
        )
        .unwrap();
        assert_eq!(f.invoke(1, "imp", b"").result.unwrap(), b"refused");
        assert_eq!(f.invoke(2, "x", b"").result.unwrap(), b"ok");
    }
}
