//! The core's modules form layers: no module names one that (directly or not) names it back.
//! Each file's `crate::<module>` paths outside comments and its `#[cfg(test)]` module are its
//! imports; the test fails with the circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // Only the modules lib.rs compiles.
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    assert!(modules.len() > 10, "found only {modules:?} in lib.rs");
    let mut graph = BTreeMap::new();
    for m in &modules {
        let text = std::fs::read_to_string(src.join(format!("{m}.rs"))).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut names = BTreeSet::new();
        for line in code.lines() {
            let line = line.split("//").next().unwrap();
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if modules.contains(&name) && name != *m {
                    names.insert(name);
                }
            }
        }
        graph.insert(m.clone(), names);
    }
    graph
}

/// A circle through `at`, if the walk from it finds one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, at: &str, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == at) {
        let mut c = path[i..].to_vec();
        c.push(at.to_string());
        return Some(c);
    }
    if !done.insert(at.to_string()) {
        return None;
    }
    path.push(at.to_string());
    for next in &graph[at] {
        if let Some(c) = circle(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn no_module_imports_one_above_it() {
    let graph = imports();
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        let mut path = Vec::new();
        // `done` only skips modules whose every path was walked without a circle.
        let mut fresh = BTreeSet::new();
        if let Some(c) = circle(&graph, m, &mut path, &mut fresh) {
            panic!("the core's imports go round in a circle: {}", c.join(" -> "));
        }
        done.extend(fresh);
    }
    // The layering this test keeps, bottom first, for readers: each imports only earlier ones.
    let order = ["sync", "list", "report", "policy", "os", "lock", "asan", "size_class", "layout", "slab", "batch", "region", "guard", "check", "heap", "cache", "verify", "global"];
    for (i, m) in order.iter().enumerate() {
        for dep in &graph[*m] {
            let j = order.iter().position(|o| o == dep).unwrap_or_else(|| panic!("{dep} is missing from the order"));
            assert!(j < i, "{m} imports {dep}, which is above it in the layers");
        }
    }
}
