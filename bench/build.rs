//! Compiles every C program in bench/c/ into an executable for the C suite (`--suite c`).
//!
//! Why the build script and not `just bench`'s shell script: the programs are then always those
//! of this checkout (cargo rebuilds them when a file in bench/c/ changes), `cargo run -p
//! hakmem-bench` needs no script to find them (their directory is compiled in as
//! HAKMEM_C_PROGRAMS), and the `cc` crate picks the same C compiler and honours the same CC and
//! CFLAGS as the peers' crates (mimalloc, jemalloc) do. The cost is a few seconds of gcc when a C
//! file changes.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("c-programs");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/c-programs");
    println!("cargo:rerun-if-changed=c");
    let compiler = cc::Build::new()
        .opt_level(2)
        .debug(false)
        .warnings(true)
        .extra_warnings(true)
        .cargo_metadata(false)
        .get_compiler();
    let mut sources: Vec<PathBuf> = std::fs::read_dir("c")
        .expect("read bench/c")
        .map(|e| e.expect("read bench/c").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    for src in sources {
        let name = src.file_stem().expect("a .c file has a stem");
        let mut cmd: Command = compiler.to_command();
        cmd.arg("-pthread").arg("-o").arg(dir.join(name)).arg(&src);
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler ({cmd:?}): {e}"));
        // Warnings would otherwise vanish with the build script's output.
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        assert!(
            output.status.success(),
            "compiling {} failed: {cmd:?}",
            src.display()
        );
    }
    println!("cargo:rustc-env=HAKMEM_C_PROGRAMS={}", dir.display());
}
