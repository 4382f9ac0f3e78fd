// Which sanitizer runtime this build links, read from the flags cargo passes to rustc, so the
// control tests expect a report whenever the sanitizer is there, whether or not hakmem was built
// with its poisoning (`--cfg asan`). A build with `-Zsanitizer=address` but without `--cfg asan`
// is exactly "the poisoning is off", and the ASan controls must then fail.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(san_address, san_thread, san_leak)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    // Both `-Zsanitizer=x` and `-Z sanitizer=x`.
    let mut sanitizers = vec![];
    for (i, f) in flags.iter().enumerate() {
        let v = f.strip_prefix("-Z").map(str::trim).filter(|v| !v.is_empty()).or_else(|| (*f == "-Z").then(|| flags.get(i + 1).copied()).flatten());
        if let Some(list) = v.and_then(|v| v.strip_prefix("sanitizer=")) {
            sanitizers.extend(list.split(',').map(str::to_owned));
        }
    }
    for (name, cfg) in [("address", "san_address"), ("thread", "san_thread"), ("leak", "san_leak")] {
        if sanitizers.iter().any(|s| s == name) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
