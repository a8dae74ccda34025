//! The host's module graph stays one-way: no cycles between the top-level modules of
//! `host/src`, and only the storage backend touches its engine. Reads the source, so
//! anyone can rerun it: `cargo test --workspace --test module_graph -- --nocapture`
//! prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read host/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its inline test modules: a `#[cfg(test)]` before a
/// `mod NAME {` starts the tests, which sit at the end of the file; one before
/// `mod NAME;` only declares a test file, which is itself skipped.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let next = text[at + "#[cfg(test)]".len()..].trim_start();
        let declares_file = next.starts_with("mod ")
            && next
                .find(';')
                .is_some_and(|s| next.find('{').is_none_or(|b| s < b));
        if !declares_file {
            return text[..at].to_string();
        }
        from = at + 1;
    }
    text
}

/// The top-level modules each top-level module names through `crate::`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if module == "lib"
            || module == "main"
            || module == "bin"
            || name == "tests.rs"
            || name == "proptests.rs"
            || rel.starts_with("ingress/testdata")
        {
            continue;
        }
        let deps = graph.entry(module.clone()).or_default();
        // Comments may name modules freely; only code counts.
        let text: String = code(&file)
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            // `crate::{a, b::c}` names several modules at once.
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .filter_map(|p| p.trim().split("::").next().map(str::to_string))
                    .collect()
            } else {
                vec![
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect(),
                ]
            };
            for name in names {
                // Items of lib.rs (`crate::Host`) are not modules.
                if !name.is_empty()
                    && name != module
                    && name.starts_with(|c: char| c.is_lowercase())
                {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = graph(&src());
    for (module, deps) in &graph {
        println!(
            "{module} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(
        graph.contains_key("store") && graph["ingress"].contains("store"),
        "the scan found the modules: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&graph).map(|c| c.len()), Some(4));
}

#[test]
fn only_the_storage_backend_touches_its_engine() {
    let src = src();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let backend = src.join("store").join("redb");
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(&backend))
        .filter(|f| {
            // `redb::RedbStore` is the store module naming its own backend module.
            code(f)
                .match_indices("redb::")
                .any(|(i, _)| !code(f)[i..].starts_with("redb::RedbStore"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "redb used outside store/redb: {offenders:?}"
    );
}

#[test]
fn only_the_nats_backend_touches_nats() {
    let src = src();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let backend = src.join("store").join("nats");
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(&backend))
        .filter(|f| code(f).contains("async_nats"))
        .collect();
    assert!(
        offenders.is_empty(),
        "async_nats used outside store/nats: {offenders:?}"
    );
}
