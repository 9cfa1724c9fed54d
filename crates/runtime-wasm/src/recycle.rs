//! Recycling a WASI command's instance: after a call that ended normally, the instance is put
//! back into exactly the state a fresh instance starts in, and the next call runs in it.
//!
//! A command gets a fresh instance per call (the seed's model), and most of what that costs is
//! wasmtime's instance lifecycle: taking a slot from the pool, building the instance, and on
//! drop resetting and returning the slot. What makes an instance "fresh" is small and fully
//! known for most modules: its linear memory's contents, its mutable globals, its memory's
//! size, its tables and its data/element segments. When the module cannot change its tables or
//! segments (no `table.set/grow/fill/copy/init`, `elem.drop`, `data.drop`), has no start
//! function and imports no memory, table or global, the rest can be put back directly:
//!
//! - **memory**: the kernel reports which pages the call dirtied (`PAGEMAP_SCAN`, Linux 6.7+,
//!   the same query wasmtime's own slot reset makes), and exactly those pages get their
//!   initial bytes back from a snapshot of a fresh instance (a zero page or a copy);
//! - **globals**: each mutable global is exported under a reserved name by rewriting the
//!   module's export section at load (no code changes), read once from a fresh instance and
//!   written back after every call;
//! - a call that grew the memory, dirtied more than [`MAX_DIRTY_BYTES`], trapped, or timed out
//!   is not recycled: its instance is dropped and the next call gets a new one, as before.
//!
//! Modules outside these rules, and kernels without `PAGEMAP_SCAN`, keep the fresh instance
//! per call. Either way the guest cannot tell: every call starts from the same bytes.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef, ValType};

/// A call that dirtied more than this is not recycled (copying it back would cost more than a
/// new instance): 2 MiB, wasmtime's own `linear_memory_keep_resident` here.
pub(crate) const MAX_DIRTY_BYTES: usize = 2 << 20;

/// Bumped whenever what [`plan`] does to a module's bytes changes: compiled modules cached on
/// disk carry it in their key.
pub(crate) const REWRITE_VERSION: u32 = 1;

/// The prefix of the export names given to a module's mutable globals.
const GLOBAL_EXPORT_PREFIX: &str = "nex:recycle:global:";

/// What recycling needs to know of a module, decided once at load.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Export names of the mutable globals, in index order.
    pub globals: Vec<String>,
    /// The active data segments, in order: a fresh memory is zeros with these written over.
    /// (Taking them from the module rather than from a fresh instance's memory leaves that
    /// memory's untouched pages unmapped, and so cheap for the kernel to scan.)
    data: Vec<(usize, Vec<u8>)>,
}

/// Decides whether instances of `bytes` can be recycled. Returns the plan and, when the module
/// has mutable globals, the module with those globals exported (the bytes to compile).
/// `None` when the module must keep a fresh instance per call; the reason is for the log.
pub(crate) fn plan(bytes: &[u8]) -> Result<(Plan, Option<Vec<u8>>), &'static str> {
    let mut mutable_globals = Vec::new();
    let mut memories = 0;
    let mut export_section = None;
    let mut export_names = Vec::new();
    let mut data = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|_| "the module does not parse")?;
        match &payload {
            Payload::ImportSection(imports) => {
                for import in imports.clone().into_imports() {
                    let import = import.map_err(|_| "the module does not parse")?;
                    match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {}
                        _ => return Err("it imports a memory, table, global or tag"),
                    }
                }
            }
            Payload::MemorySection(section) => {
                for memory in section.clone() {
                    let memory = memory.map_err(|_| "the module does not parse")?;
                    if memory.shared {
                        return Err("its memory is shared");
                    }
                    memories += 1;
                }
            }
            Payload::GlobalSection(section) => {
                for (index, global) in section.clone().into_iter().enumerate() {
                    let global = global.map_err(|_| "the module does not parse")?;
                    if !global.ty.mutable {
                        continue;
                    }
                    match global.ty.content_type {
                        ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 => {
                            mutable_globals.push(index as u32)
                        }
                        _ => return Err("it has a mutable global of a reference or vector type"),
                    }
                }
            }
            Payload::StartSection { .. } => return Err("it has a start function"),
            Payload::DataSection(section) => {
                for segment in section.clone() {
                    let segment = segment.map_err(|_| "the module does not parse")?;
                    let DataKind::Active { offset_expr, .. } = segment.kind else {
                        continue;
                    };
                    let mut ops = offset_expr.get_operators_reader();
                    let offset = match (ops.read(), ops.read()) {
                        (Ok(Operator::I32Const { value }), Ok(Operator::End)) => {
                            value as u32 as usize
                        }
                        (Ok(Operator::I64Const { value }), Ok(Operator::End)) => value as usize,
                        _ => return Err("a data segment's offset is not a constant"),
                    };
                    data.push((offset, segment.data.to_vec()));
                }
            }
            Payload::ExportSection(section) => {
                export_section = Some(section.range());
                for export in section.clone() {
                    let export = export.map_err(|_| "the module does not parse")?;
                    export_names.push(export.name.to_owned());
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut ops = body
                    .get_operators_reader()
                    .map_err(|_| "the module does not parse")?;
                while !ops.eof() {
                    match ops.read().map_err(|_| "the module does not parse")? {
                        Operator::TableSet { .. }
                        | Operator::TableGrow { .. }
                        | Operator::TableFill { .. }
                        | Operator::TableCopy { .. }
                        | Operator::TableInit { .. }
                        | Operator::ElemDrop { .. }
                        | Operator::DataDrop { .. } => {
                            return Err("its code changes a table or drops a segment");
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if memories != 1 {
        return Err("it does not define exactly one memory");
    }
    let globals: Vec<String> = mutable_globals
        .iter()
        .map(|i| format!("{GLOBAL_EXPORT_PREFIX}{i}"))
        .collect();
    if globals.iter().any(|g| export_names.contains(g)) {
        return Err("it already exports a name nex reserves");
    }
    if globals.is_empty() {
        return Ok((Plan { globals, data }, None));
    }
    let rewritten = export_globals(bytes, export_section, &mutable_globals)?;
    Ok((Plan { globals, data }, Some(rewritten)))
}

/// Copies `bytes` with its export section extended by one export per global in `globals`
/// (a new export section after the memory/global sections if it had none).
fn export_globals(
    bytes: &[u8],
    export_section: Option<std::ops::Range<usize>>,
    globals: &[u32],
) -> Result<Vec<u8>, &'static str> {
    let mut extra = Vec::new();
    for index in globals {
        let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
        leb128(&mut extra, name.len() as u64);
        extra.extend_from_slice(name.as_bytes());
        extra.push(0x03); // global
        leb128(&mut extra, u64::from(*index));
    }
    let mut out = Vec::with_capacity(bytes.len() + extra.len() + 16);
    out.extend_from_slice(&bytes[..8]);
    let mut written = false;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|_| "the module does not parse")?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        // Sections come in a fixed order; the export section (7) sits before start (8),
        // element (9), data count (12), code (10) and data (11).
        let after_exports = matches!(id, 8..=12);
        if !written && export_section.is_none() && after_exports {
            section(&mut out, 7, &[&count(globals.len()), &extra]);
            written = true;
        }
        if Some(&range) == export_section.as_ref() {
            let mut reader = wasmparser::BinaryReader::new(&bytes[range.clone()], range.start);
            let existing = reader
                .read_var_u32()
                .map_err(|_| "the module does not parse")?;
            let rest = &bytes[reader.original_position()..range.end];
            let total = count(existing as usize + globals.len());
            section(&mut out, 7, &[&total, rest, &extra]);
            written = true;
        } else {
            section(&mut out, id, &[&bytes[range]]);
        }
    }
    if !written {
        section(&mut out, 7, &[&count(globals.len()), &extra]);
    }
    Ok(out)
}

fn count(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    leb128(&mut v, n as u64);
    v
}

fn section(out: &mut Vec<u8>, id: u8, parts: &[&[u8]]) {
    out.push(id);
    leb128(out, parts.iter().map(|p| p.len() as u64).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A fresh instance's memory and globals: the memory from the module's data segments, the
/// globals from the first instance before it ran.
pub(crate) struct Snapshot {
    /// The memory's size in bytes.
    pub memory_size: usize,
    /// One entry per host page: `None` for a page of zeros, else its bytes.
    pages: Vec<Option<Box<[u8]>>>,
    /// The mutable globals' initial values, in [`Plan::globals`] order.
    pub globals: Vec<wasmtime::Val>,
}

impl Snapshot {
    pub fn new(plan: &Plan, memory_size: usize, globals: Vec<wasmtime::Val>) -> Self {
        let page = page_size();
        let mut pages: Vec<Option<Box<[u8]>>> = vec![None; memory_size.div_ceil(page)];
        for (offset, bytes) in &plan.data {
            let mut at = *offset;
            let mut rest = &bytes[..];
            // Instantiation checked that every segment fits.
            while !rest.is_empty() && at < memory_size {
                let (index, within) = (at / page, at % page);
                let n = rest.len().min(page - within);
                let target = pages[index].get_or_insert_with(|| vec![0; page].into());
                target[within..within + n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                at += n;
            }
        }
        Self {
            memory_size,
            pages,
            globals,
        }
    }

    /// Puts the pages the kernel reports as written back to their initial bytes. Returns
    /// `false` when the memory changed size or more than [`MAX_DIRTY_BYTES`] were written: then
    /// the instance must not be reused.
    pub fn restore_memory(&self, memory: &mut [u8]) -> bool {
        if memory.len() != self.memory_size {
            return false;
        }
        let page = page_size();
        let base = memory.as_ptr() as usize;
        let restored = dirty_regions(base, memory.len(), MAX_DIRTY_BYTES, |start, end| {
            for at in (start - base..end - base).step_by(page) {
                let bytes = &mut memory[at..at + page];
                match &self.pages[at / page] {
                    Some(initial) => bytes.copy_from_slice(initial),
                    None => bytes.fill(0),
                }
            }
        });
        restored.is_some()
    }
}

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| rustix::param::page_size().max(4096))
}

/// `/proc/self/pagemap`, opened before the sandbox closes the file system.
static PAGEMAP: OnceLock<Option<File>> = OnceLock::new();

/// Whether the kernel can report dirty pages (`PAGEMAP_SCAN`); opens what that needs. Call
/// before a sandbox takes the file system away.
pub(crate) fn available() -> bool {
    PAGEMAP
        .get_or_init(|| {
            let file = File::open("/proc/self/pagemap").ok()?;
            let mut probe = ScanArg::new(0, 0, 0, 0);
            // SAFETY: an empty range with no output vector: the kernel only checks the
            // arguments (an older kernel answers ENOTTY).
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN, &mut probe) };
            (rc >= 0).then_some(file)
        })
        .is_some()
}

// The kernel's PAGEMAP_SCAN interface (include/uapi/linux/fs.h).
const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610; // _IOWR('f', 16, struct pm_scan_arg)
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

#[repr(C)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

impl ScanArg {
    fn new(start: u64, end: u64, vec: u64, vec_len: u64) -> Self {
        Self {
            size: size_of::<ScanArg>() as u64,
            flags: 0,
            start,
            end,
            walk_end: 0,
            vec,
            vec_len,
            max_pages: 0,
            // Pages that are neither the shared zero page nor the file (the memory image)
            // behind the mapping, and are present or swapped out: what the guest wrote.
            // (wasmtime's own reset asks for present pages only; a written page swapped out
            // under memory pressure must be restored too.)
            category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
            category_mask: PAGE_IS_PFNZERO | PAGE_IS_FILE,
            category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            return_mask: 0,
        }
    }
}

/// Calls `each(start, end)` for every run of pages in the `len` bytes mapped at `base` written
/// since they were last mapped or reset, and returns the bytes reported, or `None` when the
/// kernel cannot say or more than `limit` bytes were written.
fn dirty_regions(
    base: usize,
    len: usize,
    limit: usize,
    mut each: impl FnMut(usize, usize),
) -> Option<usize> {
    let file = PAGEMAP.get()?.as_ref()?;
    let page = page_size();
    let end = (base + len) as u64;
    let mut start = base as u64;
    let mut total = 0usize;
    let mut regions = [PageRegion::default(); 32];
    while start < end {
        let mut arg = ScanArg::new(
            start,
            end,
            regions.as_mut_ptr() as u64,
            regions.len() as u64,
        );
        // One page over the limit tells "more than the limit" from "exactly the limit".
        arg.max_pages = ((limit - total) / page + 1) as u64;
        // SAFETY: the kernel only reads the page tables of the range (any address is fine) and
        // fills at most `regions.len()` entries of `regions`.
        let n = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
        if n < 0 {
            return None;
        }
        for r in &regions[..n as usize] {
            total += (r.end - r.start) as usize;
            if total > limit {
                return None;
            }
            each(r.start as usize, r.end as usize);
        }
        if arg.walk_end <= start {
            return None;
        }
        start = arg.walk_end;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_encodes_like_the_spec() {
        let enc = |v| {
            let mut out = Vec::new();
            leb128(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(624_485), [0xe5, 0x8e, 0x26]);
    }

    fn module(sections: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        for (id, body) in sections {
            section(&mut m, *id, &[body]);
        }
        m
    }

    const VOID: (u8, &[u8]) = (1, &[1, 0x60, 0, 0]);
    const ONE_FUNC: (u8, &[u8]) = (3, &[1, 0]);
    const MEMORY: (u8, &[u8]) = (5, &[1, 0, 1]);

    #[test]
    fn modules_that_change_what_a_reset_does_not_restore_keep_fresh_instances() {
        let start = module(&[VOID, ONE_FUNC, MEMORY, (8, &[0]), (10, &[1, 2, 0, 0x0b])]);
        assert_eq!(plan(&start).err(), Some("it has a start function"));
        // ref.null func; i32.const 1; table.grow 0; drop
        let grow: &[u8] = &[1, 9, 0, 0xd0, 0x70, 0x41, 1, 0xfc, 0x0f, 0, 0x1a, 0x0b];
        let table = module(&[VOID, ONE_FUNC, (4, &[1, 0x70, 0, 1]), MEMORY, (10, grow)]);
        assert_eq!(
            plan(&table).err(),
            Some("its code changes a table or drops a segment")
        );
        let no_memory = module(&[VOID, ONE_FUNC, (10, &[1, 2, 0, 0x0b])]);
        assert_eq!(
            plan(&no_memory).err(),
            Some("it does not define exactly one memory")
        );
    }

    #[test]
    fn mutable_globals_are_exported_and_nothing_else_changes() {
        // Two globals, the second mutable; no export section: one is added before the code.
        let globals: &[u8] = &[2, 0x7f, 0, 0x41, 1, 0x0b, 0x7e, 1, 0x42, 2, 0x0b];
        let code: &[u8] = &[1, 2, 0, 0x0b];
        let bytes = module(&[VOID, ONE_FUNC, MEMORY, (6, globals), (10, code)]);
        let (plan, rewritten) = plan(&bytes).unwrap();
        assert_eq!(plan.globals, ["nex:recycle:global:1"]);
        let rewritten = rewritten.unwrap();
        let mut exports = Vec::new();
        let mut sections = Vec::new();
        for payload in Parser::new(0).parse_all(&rewritten) {
            let payload = payload.unwrap();
            if let Payload::ExportSection(s) = &payload {
                for e in s.clone() {
                    let e = e.unwrap();
                    exports.push((e.name.to_owned(), e.index));
                }
            }
            if let Some((id, range)) = payload.as_section() {
                sections.push((id, rewritten[range].to_vec()));
            }
        }
        assert_eq!(exports, [("nex:recycle:global:1".to_owned(), 1)]);
        let ids: Vec<u8> = sections.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 3, 5, 6, 7, 10]);
        assert_eq!(sections[3].1, globals);
        assert_eq!(sections[5].1, code);
    }

    #[test]
    fn the_seed_echofunction_qualifies_and_corrupt_modules_never_panic() {
        let bytes = std::fs::read(nex_test_support::guest("echofunction")).unwrap();
        let (plan_of_seed, rewritten) = plan(&bytes).unwrap();
        // Rust's stack pointer is its one mutable global.
        assert_eq!(plan_of_seed.globals.len(), 1);
        let rewritten = rewritten.unwrap();
        assert!(Parser::new(0).parse_all(&rewritten).all(|p| p.is_ok()));
        // The analysis runs on untrusted bytes before wasmtime sees them: truncated and
        // corrupted copies of a real module get an answer, never a panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..400 {
            let cut = (next() as usize) % bytes.len();
            let _ = plan(&bytes[..cut]);
            let mut corrupt = bytes.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % corrupt.len();
                corrupt[at] = next() as u8;
            }
            if let Ok((_, Some(rewritten))) = plan(&corrupt) {
                assert!(Parser::new(0).parse_all(&rewritten).all(|p| p.is_ok()));
            }
        }
    }

    #[test]
    fn the_kernel_reports_exactly_the_pages_written() {
        if !available() {
            eprintln!("PAGEMAP_SCAN is not available here; nothing to check");
            return;
        }
        let page = page_size();
        // SAFETY: a fresh private anonymous mapping, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                64 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the mapping above is 64 pages, readable and writable, and ours alone.
        let memory = unsafe { std::slice::from_raw_parts_mut(base.cast::<u8>(), 64 * page) };
        // Read some pages (mapped to the zero page), write others.
        let _ = std::hint::black_box(memory[10 * page]);
        memory[3 * page] = 1;
        memory[4 * page + 7] = 1;
        memory[40 * page] = 1;
        let mut seen = Vec::new();
        let base = memory.as_ptr() as usize;
        let len = memory.len();
        let total = dirty_regions(base, len, 1 << 20, |s, e| {
            seen.push(((s - base) / page, (e - base) / page))
        });
        assert_eq!(total, Some(3 * page));
        assert_eq!(seen, [(3, 5), (40, 41)]);
        // Over the limit: no answer.
        assert_eq!(dirty_regions(base, len, 2 * page, |_, _| {}), None);
        // SAFETY: unmapping what we mapped; `memory` is not used after this.
        unsafe { libc::munmap(base as *mut libc::c_void, 64 * page) };
    }
}
