//! Build facts for the binary:
//! - rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the files at compile time, and
//!   cargo does not otherwise notice a new file there (what `sqlx migrate build-script` generates);
//! - the git commit `filegate --version` reports (`FILEGATE_GIT_COMMIT` overrides it, for builds from a
//!   source tree without `.git`, such as a container build context).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=FILEGATE_GIT_COMMIT");
    for moving in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(moving).exists() {
            println!("cargo:rerun-if-changed={moving}");
        }
    }
    let commit = std::env::var("FILEGATE_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        let dirty = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
        (out.status.success() && !commit.is_empty()).then(|| if dirty { format!("{commit}-modified") } else { commit })
    });
    println!("cargo:rustc-env=FILEGATE_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
