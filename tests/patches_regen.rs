//! scripts/patches-regen (patches/ as `git format-patch` output, generated
//! from the pristine base trees) and scripts/xen-series (the one reader of
//! patches/versions), each run on a scratch copy of scripts/ and patches/
//! so that the repository is never touched.
//!
//! The regeneration tests need the release trees, given as for
//! tests/xen_versions.rs: `REMUS_CKPT_XEN_TREES="$(scripts/xen-trees)"`.
//! Without them they print `SKIPPED: <why>`, and fail instead when
//! `REMUS_CKPT_XEN_TREES_REQUIRE=1` (CI).  That the committed patches are
//! what the script writes is checked by `scripts/patches-regen --check`
//! in scripts/test.

use std::env;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch project with the repository's scripts/ and patches/.
fn scratch_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["scripts", "patches"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(repo().join(sub))
            .arg(dir.path().join(sub))
            .status()
            .expect("cp");
        assert!(status.success(), "copying {sub}/");
    }
    dir
}

fn run(project: &Path, script: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(project.join("scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The trees, or None after printing why the test is skipped (a failure
/// under REMUS_CKPT_XEN_TREES_REQUIRE=1).
fn trees(test: &str) -> Option<String> {
    match env::var("REMUS_CKPT_XEN_TREES") {
        Ok(t) if !t.trim().is_empty() => Some(t),
        _ => {
            assert!(
                env::var("REMUS_CKPT_XEN_TREES_REQUIRE").as_deref() != Ok("1"),
                "{test}: REMUS_CKPT_XEN_TREES_REQUIRE=1 but REMUS_CKPT_XEN_TREES is unset \
                 (scripts/xen-trees prints the trees)"
            );
            // Straight to fd 2: the harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {test}: no Xen release trees (REMUS_CKPT_XEN_TREES)"
            );
            None
        }
    }
}

/// The check passes on an unchanged copy and fails, naming the script,
/// when one byte of one committed patch differs from what it generates.
#[test]
fn check_fails_on_a_changed_patch() {
    let Some(trees) = trees("check_fails_on_a_changed_patch") else {
        return;
    };
    let project = scratch_project();
    let p = project.path();
    let check = || {
        Command::new("bash")
            .arg(p.join("scripts/patches-regen"))
            .args(["--check", "xen-4.17"])
            .env("REMUS_CKPT_XEN_TREES", &trees)
            .output()
            .expect("run scripts/patches-regen")
    };
    let out = check();
    assert!(out.status.success(), "unchanged copy: {}", text(&out));

    let series = p.join("patches/xen-4.17");
    let first = fs::read_to_string(series.join("series"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let patch = series.join(&first);
    let body = fs::read_to_string(&patch).unwrap();
    // Hand-edited the way a regeneration never writes: no diffstat.
    let edited = body.replacen(" 2 files changed", " 2 files  changed", 1);
    assert_ne!(edited, body, "{first}: no diffstat line to edit");
    fs::write(&patch, edited).unwrap();
    let out = check();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("patches/xen-4.17/{first}")),
        "names the patch: {all}"
    );
    assert!(
        all.contains("run scripts/patches-regen"),
        "names the script: {all}"
    );
}

/// A patch added in the old form (From/Date/Subject header, body, `---`,
/// a plain unified diff without `diff --git`) comes out as `git
/// format-patch` output, and a second run leaves every file as it is.
#[test]
fn a_new_plain_patch_is_converted_and_regeneration_is_stable() {
    let Some(trees) = trees("a_new_plain_patch_is_converted_and_regeneration_is_stable") else {
        return;
    };
    let project = scratch_project();
    let p = project.path();
    let series = p.join("patches/xen-4.17");
    // A one-line change in the file patch 0001 touches, on top of the series.
    let name = "0006-tools-libs-guest-test-patch.patch";
    fs::write(
        series.join(name),
        "From: Test Author <test@example.org>\n\
         Date: Mon, 2 Feb 2026 10:20:30 +0100\n\
         Subject: [PATCH] tools/libs/guest: a test patch\n\
         \n\
         Why: to see the script convert it.\n\
         # a line starting with a hash stays in the body\n\
         ---\n\
         --- a/tools/libs/guest/Makefile.common\n\
         +++ b/tools/libs/guest/Makefile.common\n\
         @@ -18,4 +18,5 @@\n \
         OBJS-y += xg_sr_restore.o\n \
         OBJS-y += xg_sr_save.o\n \
         OBJS-y += remus_ckpt.o\n\
         +# test\n \
         OBJS-y += xg_offline_page.o\n",
    )
    .unwrap();
    let list = fs::read_to_string(series.join("series")).unwrap();
    fs::write(series.join("series"), format!("{list}{name}\n")).unwrap();

    let regen = || {
        let out = Command::new("bash")
            .arg(p.join("scripts/patches-regen"))
            .arg("xen-4.17")
            .env("REMUS_CKPT_XEN_TREES", &trees)
            .output()
            .expect("run scripts/patches-regen");
        assert!(out.status.success(), "{}", text(&out));
    };
    regen();
    let first: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&series)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let data = fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    let made = fs::read_to_string(series.join(name)).unwrap();
    assert!(
        made.starts_with(
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        ),
        "{made}"
    );
    for want in [
        "\nFrom: Test Author <test@example.org>\n",
        "\nDate: Mon, 2 Feb 2026 10:20:30 +0100\n",
        "\nSubject: [PATCH 6/6] tools/libs/guest: a test patch\n",
        "\n# a line starting with a hash stays in the body\n",
        "\n tools/libs/guest/Makefile.common | 1 +\n",
        "\ndiff --git a/tools/libs/guest/Makefile.common b/tools/libs/guest/Makefile.common\n",
        "\n+# test\n",
    ] {
        assert!(made.contains(want), "no {want:?} in:\n{made}");
    }
    regen();
    for (path, data) in first {
        assert_eq!(
            fs::read(&path).unwrap(),
            data,
            "{} changed on the second run",
            path.display()
        );
    }
}

/// scripts/xen-series refuses what the other readers used to skip or
/// misread: a line with a missing column, overlapping lines, a base
/// release outside its line.
#[test]
fn xen_series_refuses_malformed_versions() {
    let project = scratch_project();
    let p = project.path();
    let versions = p.join("patches/versions");
    let good = run(p, "xen-series", &["lines"]);
    assert!(good.status.success(), "{}", text(&good));
    let for_420 = run(p, "xen-series", &["for", "4.20"]);
    assert!(
        String::from_utf8_lossy(&for_420.stdout).contains(" series=xen-4.17 "),
        "{}",
        text(&for_420)
    );
    for (bad, why) in [
        (
            "4.1 4.1 xen-4.1 tools/libxc/xc_domain_save.c no\n",
            "expected 6 columns",
        ),
        (
            "4.1 4.3 xen-4.1 tools/libxc/xc_domain_save.c no 4.1.2\n\
             4.2 4.5 xen-4.2 tools/libxc/xc_domain_save.c no 4.2.0\n",
            "overlaps the line of xen-4.1",
        ),
        (
            "4.2 4.5 xen-4.2 tools/libxc/xc_domain_save.c no 4.6.0\n",
            "base release is outside first..last",
        ),
        (
            "4.2 4.5 xen-4.2 tools/libxc/xc_domain_save.c maybe 4.2.0\n",
            "full-build column is yes or no",
        ),
    ] {
        fs::write(&versions, bad).unwrap();
        let out = run(p, "xen-series", &["for", "4.2"]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{bad}: {}",
            text(&out)
        );
    }
}

/// docs/xen-versions.md explains every pair of neighbouring series of
/// patches/versions: a new series without its row fails here.
#[test]
fn docs_explain_every_neighbouring_pair() {
    let out = run(&repo(), "xen-series", &["lines"]);
    assert!(out.status.success(), "{}", text(&out));
    let series: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("series="))
                .map(str::to_string)
        })
        .collect();
    assert!(series.len() > 1, "{series:?}");
    let doc =
        fs::read_to_string(repo().join("docs/xen-versions.md")).expect("docs/xen-versions.md");
    for pair in series.windows(2) {
        let row = format!("| {} → {} |", pair[0], pair[1]);
        assert!(
            doc.contains(&row),
            "docs/xen-versions.md has no row `{row}` in \"What differs between neighbouring series\""
        );
    }
}
