//! Build script: compiles csrc/ (the C library that also ships inside
//! libxenguest) into this crate and generates its Rust bindings, so that
//! `cargo test` drives exactly the C code Xen runs.

use std::env;
use std::path::PathBuf;

/// Optional patched libxenguest for Xen 4.17 (only with REMUS_CKPT_XEN_SRC).
#[path = "build/xen.rs"]
mod xen;

fn main() {
    println!("cargo:rerun-if-changed=csrc/remus_ckpt.h");
    println!("cargo:rerun-if-changed=csrc/remus_ckpt.c");

    // Same warning discipline as Xen's tools build: warnings are errors.
    cc::Build::new()
        .file("csrc/remus_ckpt.c")
        .std("c99")
        .define("_GNU_SOURCE", None)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("remus_ckpt");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindgen::Builder::default()
        .header("csrc/remus_ckpt.h")
        .allowlist_function("remus_ckpt_.*")
        .allowlist_type("remus_ckpt_.*")
        .allowlist_var("REMUS_CKPT_.*")
        .derive_default(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen failed on csrc/remus_ckpt.h: {e}\n\
                 (bindgen needs libclang: apt-get install libclang-dev)"
            )
        })
        .write_to_file(out_dir.join("remus_ckpt_bindings.rs"))
        .expect("write bindings to OUT_DIR");

    xen::main();
}
