//! `scripts/check-msrv.py`, which `.ci/run` runs on the locked graph, fails when a dependency
//! that users compile declares a newer `rust-version` than the crate, and only then.

use std::process::Command;

/// A `cargo metadata` shape: the root with `root_msrv`, a normal dependency `a` (whose build
/// dependency `c` needs 1.86), and a dev-dependency `b` that needs 1.99 (users never build it).
fn metadata(root_msrv: &str) -> String {
    let package = |name: &str, msrv: &str, source: &str| {
        format!(
            r#"{{"id":"{name}","name":"{name}","version":"1.0.0","rust_version":"{msrv}","source":{source}}}"#
        )
    };
    let edge =
        |pkg: &str, kind: &str| format!(r#"{{"pkg":"{pkg}","dep_kinds":[{{"kind":{kind}}}]}}"#);
    format!(
        r#"{{"packages":[{},{},{},{}],"resolve":{{"nodes":[
            {{"id":"zenml-otel","deps":[{},{}]}},
            {{"id":"a","deps":[{}]}}, {{"id":"b","deps":[]}}, {{"id":"c","deps":[]}}]}}}}"#,
        package("zenml-otel", root_msrv, "null"),
        package("a", "1.85", r#""registry""#),
        package("b", "1.99", r#""registry""#),
        package("c", "1.86", r#""registry""#),
        edge("a", "null"),
        edge("b", r#""dev""#),
        edge("c", r#""build""#),
    )
}

fn check(root_msrv: &str) -> (Option<i32>, String) {
    let path = std::env::temp_dir().join(format!(
        "zenml-otel-msrv-{}-{root_msrv}.json",
        std::process::id()
    ));
    std::fs::write(&path, metadata(root_msrv)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-msrv.py");
    let out = Command::new("python3")
        .args([script, "--metadata"])
        .arg(&path)
        .output()
        .expect("python3 runs the check");
    let _ = std::fs::remove_file(path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_dependency_needing_a_newer_rust_fails_the_check() {
    let (code, out) = check("1.80");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("required rust-version = 1.86"), "{out}");
    assert!(
        out.contains("c ") && !out.contains("b "),
        "dev-dependencies do not count: {out}"
    );
}

#[test]
fn a_true_declaration_passes() {
    let (code, out) = check("1.86");
    assert_eq!(code, Some(0), "{out}");
}
