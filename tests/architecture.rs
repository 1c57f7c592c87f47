//! The architecture, held: reads the crate's own imports (`use crate::…`, `super::…`, paths written inline,
//! `pub use` re-exports followed to the file that defines the name) and fails on a loop between files, on
//! an import from a lower layer to a higher one, and on an HTTP surface importing another.
//!
//! Test code is not part of the architecture: `#[cfg(test)]` items and files declared under
//! `#[cfg(test)]` are left out (the in-process harness reaches `app`, as a test must).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;

/// The layers, top to bottom: a room may import its own layer's rooms (without a loop) and those below.
/// `config` sits beside the ports because it parses their settings (bucket URLs, part sizes); `telemetry`
/// and `outage` serve every port.
const LAYERS: &[&[&str]] = &[
    &["main", "cli"],
    &["app"],
    &["http"],
    &["services"],
    &["config", "meta", "blob"],
    &["telemetry", "outage"],
    &["domain", "wire", "hash", "error"],
];

/// The HTTP surfaces: each stands alone on its API family's dialect (`http::dialect`), which imports none of
/// them; only the route table (`http::routes`), the OpenAPI document and the router pick between them.
const SURFACES: &[&str] = &["gemini", "import", "openai", "model", "caches", "batches", "webhooks", "console"];

/// Imports the layers allow that a port must still not make: storage is measured by its callers, so a
/// store stays a store (`services::ingest` times parts; the blob layer knows nothing of telemetry).
const APART: &[(&str, &str)] = &[("blob", "telemetry"), ("meta", "telemetry")];

type Module = Vec<String>;

#[test]
fn no_file_imports_another_in_a_loop_no_layer_reaches_up_and_no_surface_into_another() {
    let crate_ = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let edges = crate_.edges();

    let mut upward = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if layer(from) > layer(to) {
                upward.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(upward.is_empty(), "imports from a lower layer to a higher one:\n{}", upward.join("\n"));

    let apart: Vec<String> = edges
        .iter()
        .flat_map(|(from, targets)| targets.iter().map(move |to| (from, to)))
        .filter(|(from, to)| {
            APART.iter().any(|(a, b)| from.first().is_some_and(|r| r == a) && to.first().is_some_and(|r| r == b))
        })
        .map(|(from, to)| format!("{} -> {}", name(from), name(to)))
        .collect();
    assert!(apart.is_empty(), "a port reaching what it must not:\n{}", apart.join("\n"));

    let mut across = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            let (from_surface, to_surface) = (surface(from), surface(to));
            let shared = from.get(1).is_some_and(|room| room == "dialect");
            if to_surface.is_some() && to_surface != from_surface && (from_surface.is_some() || shared) {
                across.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(across.is_empty(), "a surface or a dialect importing another surface:\n{}", across.join("\n"));

    let loops: Vec<String> = strongly_connected(&edges)
        .iter()
        .map(|scc| describe_loop(&scc.iter().map(name).collect::<Vec<_>>(), &edges))
        .collect();
    assert!(loops.is_empty(), "files that import each other in a loop:\n{}", loops.join("\n"));
}

/// What a store can do is asked of the blob port's capabilities (`Blobs::is_shared`, `part_granule`,
/// `delete_orphan`), never by matching on its kind: only the blob layer and the ingest session, which is
/// the one writer of every store, name a writer's kind.
#[test]
fn only_the_blob_layer_and_the_ingest_session_match_on_a_stores_kind() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut matching = Vec::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let allowed = relative.starts_with("blob/") || relative == "services/ingest.rs";
            let text = std::fs::read_to_string(&path).unwrap();
            if !allowed && (text.contains("Writer::Positional") || text.contains("Writer::Parts")) {
                matching.push(relative);
            }
        }
    }
    assert!(matching.is_empty(), "files matching on a store's kind instead of asking its capabilities: {matching:?}");
}

/// The architecture test itself sees the imports it must: a check on a small crate written here.
#[test]
fn the_reader_follows_uses_inline_paths_supers_and_re_exports() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a; mod b; mod c; #[cfg(test)] mod harness;");
    write("a/mod.rs", "mod inner; pub use inner::Thing; pub fn f() { crate::c::g(); }");
    write("a/inner.rs", "pub struct Thing; fn h() { let _ = super::super::b::B {}; }");
    write("b.rs", "use crate::{a::Thing, c};\npub struct B {}\n#[cfg(test)] mod tests { use crate::c::T; }");
    write("c.rs", "pub fn g() {}");
    write("harness.rs", "use crate::a::f;");
    let edges = Crate::read(dir.path()).edges();
    let of =
        |m: &str| -> Vec<String> { edges.get(&module(m)).map(|t| t.iter().map(name).collect()).unwrap_or_default() };
    assert_eq!(of("a"), ["c"], "an inline path; re-exporting a child's item is no use of it");
    assert_eq!(of("a::inner"), ["b"], "super::super");
    assert_eq!(of("b"), ["a::inner", "c"], "a brace use; the re-export followed; test code left out");
    assert_eq!(of("harness"), Vec::<String>::new(), "a file declared under cfg(test) is left out");
    let loops = strongly_connected(&edges);
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0].iter().map(name).collect::<Vec<_>>(), ["a::inner", "b"]);
}

/// The crate's files, parsed, by module path.
struct Crate {
    files: BTreeMap<Module, syn::File>,
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut pending = vec![(Vec::new(), src.join("lib.rs"))];
        if src.join("main.rs").exists() {
            pending.push((module("main"), src.join("main.rs")));
        }
        while let Some((module, path)) = pending.pop() {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A module file `x.rs` keeps its children in `x/`; `mod.rs`, `lib.rs` and `main.rs` beside them.
            let stem = path.file_stem().unwrap().to_str().unwrap();
            let children_dir = if matches!(stem, "mod" | "lib" | "main") {
                path.parent().unwrap().to_owned()
            } else {
                path.with_extension("")
            };
            for item in &file.items {
                if let syn::Item::Mod(declared) = item {
                    if declared.content.is_some() || is_test_only(&declared.attrs) {
                        continue;
                    }
                    let child = declared.ident.to_string();
                    let mut child_module = module.clone();
                    child_module.push(child.clone());
                    let as_file = children_dir.join(format!("{child}.rs"));
                    let path = if as_file.exists() { as_file } else { children_dir.join(&child).join("mod.rs") };
                    pending.push((child_module, path));
                }
            }
            files.insert(module, file);
        }
        Self { files }
    }

    /// For each file, the files it imports from.
    fn edges(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut edges = BTreeMap::new();
        for (module, file) in &self.files {
            let mut targets = BTreeSet::new();
            for (path, re_export) in references(file) {
                let Some(target) = self.resolve(module, &path, 0) else { continue };
                // A module re-exporting its own children's items is their facade, not their user.
                let facade = re_export && target.starts_with(module);
                if &target != module && !target.is_empty() && !facade {
                    targets.insert(target);
                }
            }
            edges.insert(module.clone(), targets);
        }
        edges
    }

    /// The file that defines what `path` (as written in `from`) names: the longest module prefix, followed
    /// through that module's `pub use` when the next segment is re-exported there.
    fn resolve(&self, from: &Module, path: &[String], depth: u32) -> Option<Module> {
        // `use child::X` names a child module relative to the file, as `self::child::X` does.
        let names_child = path.first().is_some_and(|first| {
            let mut child = from.clone();
            child.push(first.clone());
            self.files.contains_key(&child)
        });
        let relative: Vec<String>;
        let path = if names_child {
            relative = std::iter::once("self".to_owned()).chain(path.iter().cloned()).collect();
            &relative
        } else {
            path
        };
        let absolute = absolute(from, path)?;
        let known = (0..=absolute.len()).rev().find(|&n| self.files.contains_key(&absolute[..n]))?;
        let module = absolute[..known].to_vec();
        if let Some(next) = absolute.get(known) {
            if depth < 8 {
                if let Some(target) = self.re_export(&module, next) {
                    if let Some(defined) = self.resolve(&module, &target, depth + 1) {
                        return Some(defined);
                    }
                }
            }
        }
        Some(module)
    }

    /// What `module` re-exports under `name`, as a path written in `module`.
    fn re_export(&self, module: &Module, name: &str) -> Option<Vec<String>> {
        self.files[module].items.iter().find_map(|item| match item {
            syn::Item::Use(used) if !matches!(used.vis, syn::Visibility::Inherited) => {
                use_paths(&used.tree).into_iter().find(|(_, alias)| alias == name).map(|(path, _)| path)
            }
            _ => None,
        })
    }
}

/// `path` as written in module `from`, made absolute; `None` for a path outside the crate.
fn absolute(from: &Module, path: &[String]) -> Option<Module> {
    let (first, rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => from.clone(),
        "super" => from[..from.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    let mut rest = rest;
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every crate-relative path a file writes outside its test code, each with whether it is a re-export
/// (`pub use`): its `use` trees, and `crate::`, `self::` and `super::` paths anywhere in its tokens
/// (attributes and macro arguments included).
fn references(file: &syn::File) -> Vec<(Vec<String>, bool)> {
    let mut paths = Vec::new();
    for item in &file.items {
        if item_attrs(item).is_some_and(|attrs| is_test_only(attrs)) {
            continue;
        }
        match item {
            syn::Item::Use(used) => {
                let re_export = !matches!(used.vis, syn::Visibility::Inherited);
                paths.extend(use_paths(&used.tree).into_iter().map(|(path, _)| (path, re_export)));
            }
            syn::Item::Mod(declared) if declared.content.is_none() => {}
            _ => {
                let mut found = Vec::new();
                scan(item.to_token_stream(), &mut found);
                paths.extend(found.into_iter().map(|path| (path, false)));
            }
        }
    }
    paths
}

/// The paths (with the name each is imported as) of a `use` tree: `a::{b, c as d, e::*}`.
fn use_paths(tree: &syn::UseTree) -> Vec<(Vec<String>, String)> {
    fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) if n.ident == "self" => {
                out.push((prefix.clone(), prefix.last().cloned().unwrap_or_default()));
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                path.push(n.ident.to_string());
                out.push((path, n.ident.to_string()));
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                out.push((path, r.rename.to_string()));
            }
            syn::UseTree::Glob(_) => out.push((prefix.clone(), "*".into())),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, prefix, out)),
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

/// Finds `crate :: a :: b`, `self :: …` and `super :: …` in a token stream, descending into groups.
fn scan(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if let TokenTree::Group(group) = &tokens[i] {
            scan(group.stream(), out);
        }
        let starts_path = matches!(&tokens[i], TokenTree::Ident(id) if id == "crate" || id == "self" || id == "super");
        let after_colons = i >= 2 && is_colon(&tokens[i - 1]) && is_colon(&tokens[i - 2]);
        if starts_path && !after_colons {
            let mut path = vec![tokens[i].to_string()];
            let mut j = i + 1;
            while j + 2 < tokens.len()
                && is_colon(&tokens[j])
                && is_colon(&tokens[j + 1])
                && matches!(tokens[j + 2], TokenTree::Ident(_))
            {
                path.push(tokens[j + 2].to_string());
                j += 3;
            }
            if path.len() > 1 {
                out.push(path);
            }
            i = j;
            continue;
        }
        i += 1;
    }
}

fn is_colon(token: &TokenTree) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == ':')
}

fn item_attrs(item: &syn::Item) -> Option<&Vec<syn::Attribute>> {
    Some(match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => return None,
    })
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.meta.to_token_stream().to_string().contains("test"))
}

/// The strongly connected components of more than one file (Tarjan's algorithm), each sorted.
fn strongly_connected(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(state: &mut State<'a>, v: &'a Module) {
        let n = state.index.len();
        state.index.insert(v, (n, n));
        state.stack.push(v);
        state.on_stack.insert(v);
        for w in state.edges.get(v).into_iter().flatten() {
            if !state.index.contains_key(w) {
                visit(state, w);
                let low = state.index[v].1.min(state.index[w].1);
                state.index.get_mut(v).unwrap().1 = low;
            } else if state.on_stack.contains(w) {
                let low = state.index[v].1.min(state.index[w].0);
                state.index.get_mut(v).unwrap().1 = low;
            }
        }
        if state.index[v].0 == state.index[v].1 {
            let mut component = Vec::new();
            loop {
                let w = state.stack.pop().unwrap();
                state.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state =
        State { edges, index: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), found: Vec::new() };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found.sort();
    state.found
}

/// A loop's files and, for each, what it imports inside the loop: enough to see where to cut.
fn describe_loop(files: &[String], edges: &BTreeMap<Module, BTreeSet<Module>>) -> String {
    let inside: BTreeSet<&String> = files.iter().collect();
    let mut lines = vec![format!("  {:?}", files)];
    for file in files {
        let targets: Vec<String> = edges[&module(file)].iter().map(name).filter(|t| inside.contains(t)).collect();
        lines.push(format!("    {file} -> {}", targets.join(", ")));
    }
    lines.join("\n")
}

fn layer(module: &Module) -> usize {
    let room = module.first().map_or("lib", String::as_str);
    LAYERS.iter().position(|rooms| rooms.contains(&room)).unwrap_or_else(|| {
        assert_eq!(room, "lib", "the top-level module `{room}` has no layer in LAYERS");
        0
    })
}

/// The HTTP surface a module belongs to, if any.
fn surface(module: &Module) -> Option<&str> {
    match module.as_slice() {
        [http, room, ..] if http == "http" && SURFACES.contains(&room.as_str()) => Some(room),
        _ => None,
    }
}

fn module(name: &str) -> Module {
    name.split("::").map(str::to_owned).collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() { "lib".into() } else { module.join("::") }
}
