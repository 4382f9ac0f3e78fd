// `just lsan` builds with `--cfg lsan` (the workspace declares only `asan` and `tsan`, which hakmem
// itself uses); declare it here so `cfg!(lsan)` in this crate is not an unexpected cfg.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(lsan)");
}
