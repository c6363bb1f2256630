//! Wasm instrumentation: export what the simulator needs to drive and snapshot a canister.
//!
//! The IC invokes callbacks through the module's function table and must be able to roll
//! back *all* mutable state of a message, including globals the module does not export.
//! We therefore re-encode the export section, adding:
//! - `__sim_memory`: memory 0,
//! - `__sim_table`: table 0 (if any),
//! - `__sim_global_<i>`: every mutable numeric global `i`.
//!
//! Every other section is copied byte for byte, so code, data and names are unchanged.

use anyhow::{bail, Context, Result};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

pub(crate) const MEMORY_EXPORT: &str = "__sim_memory";
pub(crate) const TABLE_EXPORT: &str = "__sim_table";
pub(crate) const GLOBAL_PREFIX: &str = "__sim_global_";

pub(crate) struct Instrumented {
    pub bytes: Vec<u8>,
    /// Export names of the mutable globals (for snapshot / restore).
    pub global_exports: Vec<String>,
    pub has_memory: bool,
    pub has_table: bool,
}

const EXPORT_SECTION: u8 = 7;

/// Position of a section id in the canonical module order (custom sections excluded).
fn order(id: u8) -> u32 {
    match id {
        1 => 1,   // type
        2 => 2,   // import
        3 => 3,   // function
        4 => 4,   // table
        5 => 5,   // memory
        13 => 6,  // tag
        6 => 7,   // global
        7 => 8,   // export
        8 => 9,   // start
        9 => 10,  // element
        12 => 11, // data count
        10 => 12, // code
        11 => 13, // data
        _ => 0,
    }
}

fn leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let mut b = (v & 0x7f) as u8;
        v >>= 7;
        if v != 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            break;
        }
    }
}

fn push_section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
    out.push(id);
    leb_u32(out, body.len() as u32);
    out.extend_from_slice(body);
}

/// Largest (uncompressed) Wasm module: 100 MiB. Source: dfinity/ic `rs/config/src/embedders.rs`,
/// `WASM_MAX_SIZE`.
pub(crate) const WASM_MAX_SIZE: usize = 100 << 20;

/// The module as the replica decodes it: raw Wasm, or gzip whose footer gives the size, which
/// must not exceed `WASM_MAX_SIZE` and must match what the stream inflates to (dfinity/ic
/// `rs/embedders/src/wasm_utils/decoding.rs`, `decode_wasm`).
pub(crate) fn decode(module: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read;
    if module.starts_with(b"\0asm") {
        if module.len() > WASM_MAX_SIZE {
            bail!(
                "Wasm module is too large: {} bytes, allowed {WASM_MAX_SIZE}",
                module.len()
            );
        }
        return Ok(module.into());
    }
    if !module.starts_with(b"\x1f\x8b\x08") {
        bail!("unsupported canister module format");
    }
    if module.len() < 16 {
        bail!("invalid Wasm module: gzip stream is too short");
    }
    let size = u32::from_le_bytes(module[module.len() - 4..].try_into().unwrap()) as usize;
    if size > WASM_MAX_SIZE {
        bail!("Wasm module is too large: {size} bytes, allowed {WASM_MAX_SIZE}");
    }
    let mut buf = Vec::with_capacity(size);
    flate2::read::GzDecoder::new(module)
        .take(size as u64 + 1)
        .read_to_end(&mut buf)
        .context("failed to decode compressed Wasm module")?;
    if buf.len() != size {
        bail!(
            "specified uncompressed size {size} does not match extracted size {}",
            buf.len()
        );
    }
    Ok(buf.into())
}

pub(crate) fn instrument(wasm: &[u8]) -> Result<Instrumented> {
    let wasm = &*decode(wasm)?;
    if !wasm.starts_with(b"\0asm") {
        bail!("not a Wasm binary module (missing \\0asm magic)");
    }
    let mut imported_globals = 0u32;
    let mut imported_tables = 0u32;
    let mut imported_memories = 0u32;
    let mut defined_tables = 0u32;
    let mut defined_memories = 0u32;
    let mut mutable_globals: Vec<u32> = Vec::new();
    let mut existing_exports: Vec<(String, u8, u32)> = Vec::new();
    let mut sections: Vec<(u8, std::ops::Range<usize>)> = Vec::new();

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.context("invalid Wasm module")?;
        match &payload {
            Payload::Version { encoding, .. } if *encoding != wasmparser::Encoding::Module => {
                bail!("Wasm components are not supported; expected a core module");
            }
            Payload::ImportSection(r) => {
                for imp in r.clone().into_imports() {
                    let imp = imp?;
                    match imp.ty {
                        TypeRef::Global(_) => imported_globals += 1,
                        TypeRef::Table(_) => imported_tables += 1,
                        TypeRef::Memory(m) => {
                            if m.memory64 {
                                bail!("64-bit Wasm memories are not supported by the simulator");
                            }
                            imported_memories += 1
                        }
                        _ => {}
                    }
                }
            }
            Payload::TableSection(r) => defined_tables += r.count(),
            Payload::MemorySection(r) => {
                for m in r.clone() {
                    if m?.memory64 {
                        bail!("64-bit Wasm memories (wasm64) are not supported by the simulator");
                    }
                }
                defined_memories += r.count()
            }
            Payload::GlobalSection(r) => {
                for (i, g) in r.clone().into_iter().enumerate() {
                    let g = g?;
                    let numeric = matches!(
                        g.ty.content_type,
                        ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 | ValType::V128
                    );
                    if g.ty.mutable {
                        if !numeric {
                            bail!("mutable reference-typed globals are not supported");
                        }
                        mutable_globals.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(r) => {
                for e in r.clone() {
                    let e = e?;
                    let kind = match e.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => 0,
                        ExternalKind::Table => 1,
                        ExternalKind::Memory => 2,
                        ExternalKind::Global => 3,
                        ExternalKind::Tag => 4,
                    };
                    existing_exports.push((e.name.to_string(), kind, e.index));
                }
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
    }
    if imported_globals > 0 {
        // Imported mutable globals would live outside the instance; the IC imports none.
        bail!("modules importing globals are not supported");
    }

    let has_memory = imported_memories + defined_memories > 0;
    let has_table = imported_tables + defined_tables > 0;
    let mut exports = existing_exports;
    if has_memory {
        exports.push((MEMORY_EXPORT.to_string(), 2, 0));
    }
    if has_table {
        exports.push((TABLE_EXPORT.to_string(), 1, 0));
    }
    let mut global_exports = Vec::new();
    for g in &mutable_globals {
        let name = format!("{GLOBAL_PREFIX}{g}");
        exports.push((name.clone(), 3, *g));
        global_exports.push(name);
    }
    let mut export_body = Vec::new();
    leb_u32(&mut export_body, exports.len() as u32);
    for (name, kind, index) in &exports {
        leb_u32(&mut export_body, name.len() as u32);
        export_body.extend_from_slice(name.as_bytes());
        export_body.push(*kind);
        leb_u32(&mut export_body, *index);
    }

    let mut out = Vec::with_capacity(wasm.len() + export_body.len() + 16);
    out.extend_from_slice(&wasm[..8]);
    let mut emitted = false;
    for (id, range) in sections {
        if id == EXPORT_SECTION {
            push_section(&mut out, EXPORT_SECTION, &export_body);
            emitted = true;
            continue;
        }
        if !emitted && id != 0 && order(id) > order(EXPORT_SECTION) {
            push_section(&mut out, EXPORT_SECTION, &export_body);
            emitted = true;
        }
        push_section(&mut out, id, &wasm[range]);
    }
    if !emitted {
        push_section(&mut out, EXPORT_SECTION, &export_body);
    }
    Ok(Instrumented {
        bytes: out,
        global_exports,
        has_memory,
        has_table,
    })
}
